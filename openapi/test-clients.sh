#!/usr/bin/env bash
# Proves that clients built from openapi/openapi.json work against the real
# server. Installs what it needs (Debian's chromium, a Python venv under
# target/, the npm packages pinned in openapi/package-lock.json), starts
# target/debug/kalamdb-server on a free port with a temporary data directory,
# runs seven checks and stops the server again, also on failure:
#
#   1. spec          the document validates (openapi-spec-validator) and meets the
#                    quality rules of openapi/tests/check_spec.py; the server serves it
#   2. python-sdk    openapi-python-client generates a client; a round trip with it
#   3. ts-sdk        @hey-api/openapi-ts generates a client; tsc; a round trip in Node
#   4. swagger-ui    headless Chromium authorizes and runs POST /api/sql in Swagger UI
#   5. ts-client     clients/typescript (@kalamdb/client) builds from the document and
#                    its Node tests pass: live queries, reconnect and resume, errors
#                    (some start servers of their own from the same binary)
#   6. chat-example  examples/chat in two headless Chromium contexts: a message and
#                    the typing indicator go from one user to the other, also
#                    across a cut connection and KILL LIVE QUERY
#   7. fuzz          schemathesis against /api/openapi.json: no 5xx, no response
#                    outside the documented schema; /health still answers afterwards
#
#   openapi/test-clients.sh [CHECK…]     # only these, e.g. `ts-client chat-example`
#
# Output (generated SDKs, screenshots, reports, server log): target/client-tests/.
# Exits non-zero when any check fails; the last lines are the time taken and
# `N passed, M failed`.
#
# Environment:
#   KALAMDB_FUZZ_EXAMPLES   schemathesis examples per operation (default 2000;
#                           POST /api/auth/login is capped at 150 in schemathesis.toml)
#   KALAMDB_FUZZ_SEED       fixed schemathesis seed (default: random, printed)
#   KALAMDB_FUZZ_ARGS       more schemathesis options, e.g. --baseline-update
#   KALAMDB_SERVER_BIN      server binary (default target/debug/kalamdb-server)
#   KALAMDB_CLIENT_CHECKS   the checks to run, separated by spaces (as the arguments)
#   KALAMDB_TEST_SEED       seed of the ts-client workloads (default: random, printed)
set -uo pipefail
# Job control: each check runs as a background job in its own process group,
# so an interrupt can stop it (and whatever it started) at once.
set -m

started=$SECONDS
cd "$(dirname "$0")/.."
ROOT=$PWD
OUT=$ROOT/target/client-tests
VENV=$ROOT/target/openapi-venv
NODE_DIR=$ROOT/openapi
SERVER_BIN=${KALAMDB_SERVER_BIN:-${CARGO_TARGET_DIR:-$ROOT/target}/debug/kalamdb-server}
TS_CLIENT_DIR=$ROOT/clients/typescript
FUZZ_EXAMPLES=${KALAMDB_FUZZ_EXAMPLES:-2000}
ALL_CHECKS=(spec python-sdk ts-sdk swagger-ui ts-client chat-example fuzz)
if [ $# -gt 0 ]; then
    CHECKS=("$@")
elif [ -n "${KALAMDB_CLIENT_CHECKS:-}" ]; then
    read -r -a CHECKS <<<"$KALAMDB_CLIENT_CHECKS"
else
    CHECKS=("${ALL_CHECKS[@]}")
fi
for name in "${CHECKS[@]}"; do
    if [[ " ${ALL_CHECKS[*]} " != *" $name "* ]]; then
        echo "unknown check $name; the checks are: ${ALL_CHECKS[*]}" >&2
        exit 2
    fi
done

say() { printf '\n==> %s\n' "$*"; }
die() {
    printf '\nclient tests could not start: %s\n' "$*" >&2
    printf 'client tests took %ds\n' "$((SECONDS - started))"
    printf '0 passed, %d failed\n' "${#CHECKS[@]}"
    exit 1
}

as_root() {
    if [ "$(id -u)" -eq 0 ]; then "$@"; elif command -v sudo >/dev/null; then sudo "$@"; else
        die "need root (or sudo) to run: $*"
    fi
}

apt_updated=false
apt_install() {
    if ! $apt_updated; then
        as_root env DEBIAN_FRONTEND=noninteractive apt-get update -qq || die "apt-get update failed"
        apt_updated=true
    fi
    as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "$@" \
        >"$OUT/apt-get.log" 2>&1 || { cat "$OUT/apt-get.log"; die "apt-get install $* failed"; }
}

hash_of() { sha256sum "$1" | cut -d' ' -f1; }

# ------------------------------------------------------------------ install

install_tools() {
    say "installing tools"
    if [ ! -x /usr/bin/chromium ]; then
        echo "installing Debian's chromium"
        apt_install chromium
    fi
    echo "chromium: $(/usr/bin/chromium --version 2>/dev/null)"

    command -v python3 >/dev/null || apt_install python3 python3-venv
    if [ ! -x "$VENV/bin/python" ]; then
        python3 -m venv "$VENV" 2>/dev/null || {
            rm -rf "$VENV"
            apt_install python3-venv
            python3 -m venv "$VENV"
        } || die "cannot create the Python venv $VENV"
    fi
    local want
    want=$(hash_of openapi/requirements.txt)
    if [ "$(cat "$VENV/.requirements.sha256" 2>/dev/null)" != "$want" ]; then
        echo "pip install -r openapi/requirements.txt into $VENV"
        "$VENV/bin/pip" install --disable-pip-version-check -q -r openapi/requirements.txt \
            || die "pip install failed"
        echo "$want" >"$VENV/.requirements.sha256"
    fi
    echo "python: $("$VENV/bin/python" --version), $("$VENV/bin/pip" list 2>/dev/null \
        | grep -Ei '^(openapi-spec-validator|openapi-python-client|schemathesis) ' | tr -s ' ' | paste -sd, - | sed 's/,/, /g')"

    command -v node >/dev/null && command -v npm >/dev/null || die "Node.js 20.19+ and npm are needed"
    node -e 'const [a,b]=process.versions.node.split(".").map(Number); process.exit(a>20||(a===20&&b>=19)?0:1)' \
        || die "Node.js $(node --version) is too old: @hey-api/openapi-ts needs 20.19+"
    want=$(hash_of openapi/package-lock.json)
    if [ "$(cat "$NODE_DIR/node_modules/.lock.sha256" 2>/dev/null)" != "$want" ]; then
        echo "npm ci in openapi/"
        (cd "$NODE_DIR" && npm ci --no-audit --no-fund --loglevel=error) || die "npm ci failed"
        echo "$want" >"$NODE_DIR/node_modules/.lock.sha256"
    fi
    want=$(hash_of clients/typescript/package-lock.json)
    if [ "$(cat "$TS_CLIENT_DIR/node_modules/.lock.sha256" 2>/dev/null)" != "$want" ]; then
        echo "npm ci in clients/typescript/"
        (cd "$TS_CLIENT_DIR" && npm ci --no-audit --no-fund --loglevel=error) || die "npm ci failed"
        echo "$want" >"$TS_CLIENT_DIR/node_modules/.lock.sha256"
    fi
    echo "node: $(node --version), npm packages from openapi/package-lock.json and clients/typescript/package-lock.json"
}

# ------------------------------------------------------------------ server

SERVER_PID=""
DATA_DIR=""
stop_server() {
    if [ -n "$SERVER_PID" ] && kill -0 "$SERVER_PID" 2>/dev/null; then
        kill -TERM "$SERVER_PID" 2>/dev/null
        for _ in $(seq 1 150); do
            kill -0 "$SERVER_PID" 2>/dev/null || break
            sleep 0.1
        done
        if kill -0 "$SERVER_PID" 2>/dev/null; then
            echo "server did not stop on SIGTERM; killing it" >&2
            kill -KILL "$SERVER_PID" 2>/dev/null
        fi
        wait "$SERVER_PID" 2>/dev/null
    fi
    SERVER_PID=""
    [ -n "$DATA_DIR" ] && rm -rf "$DATA_DIR"
    DATA_DIR=""
}
CHECK_PID=""
on_signal() {
    [ -n "$CHECK_PID" ] && kill -TERM -- "-$CHECK_PID" 2>/dev/null
    exit "$1"
}
trap stop_server EXIT
trap 'on_signal 130' INT
trap 'on_signal 143' TERM

start_server() {
    say "starting $SERVER_BIN"
    [ -x "$SERVER_BIN" ] || die "$SERVER_BIN is missing: run cargo build --workspace --bins"
    DATA_DIR=$(mktemp -d "${TMPDIR:-/tmp}/kalamdb-client-tests.XXXXXX")
    ROOT_PASSWORD="client-tests-$(od -An -tx1 -N8 /dev/urandom | tr -d ' \n')"
    KALAMDB_LISTEN=127.0.0.1:0 KALAMDB_DATA_DIR=$DATA_DIR KALAMDB_ROOT_PASSWORD=$ROOT_PASSWORD \
        "$SERVER_BIN" >"$OUT/server.stdout" 2>"$OUT/server.log" &
    SERVER_PID=$!
    for _ in $(seq 1 600); do
        BASE_URL=$(sed -n 's/^listening on \(http:.*\)$/\1/p' "$OUT/server.stdout" | head -n1)
        [ -n "$BASE_URL" ] && break
        kill -0 "$SERVER_PID" 2>/dev/null || die "the server exited: $(tail -n 5 "$OUT/server.log")"
        sleep 0.1
    done
    [ -n "$BASE_URL" ] || die "the server did not print 'listening on' within 60s"
    echo "server pid $SERVER_PID at $BASE_URL (log: $OUT/server.log)"
    TOKEN=$("$VENV/bin/python" openapi/tests/kalamdb_http.py login "$BASE_URL" "$ROOT_PASSWORD") \
        || die "cannot log in as root"
}

# ------------------------------------------------------------------ checks

check_spec() {
    "$VENV/bin/python" openapi/tests/check_spec.py openapi/openapi.json "$BASE_URL/api/openapi.json"
}

check_python_sdk() {
    local sdk=$OUT/python-sdk log=$OUT/python-sdk-generate.log
    rm -rf "$sdk"
    # The venv's bin/ on PATH: the generator formats its output with ruff from there.
    PATH="$VENV/bin:$PATH" openapi-python-client generate --path openapi/openapi.json \
        --config openapi/tests/openapi-python-client.yaml --output-path "$sdk" >"$log" 2>&1
    local status=$?
    cat "$log"
    if [ $status -ne 0 ] || [ ! -d "$sdk/kalamdb_client" ] || grep -qE '(Warning|Error)\(s\) encountered' "$log"; then
        echo "openapi-python-client did not generate a clean client"
        return 1
    fi
    PYTHONPATH="$sdk" "$VENV/bin/python" openapi/tests/python_sdk_test.py "$BASE_URL" "$ROOT_PASSWORD" py_app
}

check_ts_sdk() {
    local work=$OUT/ts bin=$NODE_DIR/node_modules/.bin
    rm -rf "$work"
    mkdir -p "$work/src"
    cp openapi/tests/ts/tsconfig.json "$work/"
    cp openapi/tests/ts/sdk_test.ts "$work/src/"
    echo '{"private": true, "type": "commonjs"}' >"$work/package.json"
    # An absolute path: openapi-ts reads "dir/file" as a Hey API registry name.
    "$bin/openapi-ts" --input "$ROOT/openapi/openapi.json" --output "$work/src/sdk" \
        --client @hey-api/client-fetch --no-log-file || return 1
    "$bin/tsc" --project "$work" || return 1
    echo "compiled with tsc $("$bin/tsc" --version | cut -d' ' -f2)"
    node "$work/dist/sdk_test.js" "$BASE_URL" "$ROOT_PASSWORD" ts_app
}

check_swagger_ui() {
    rm -f "$OUT"/swagger-ui*.png
    node openapi/tests/swagger_ui.mjs "$BASE_URL" "$TOKEN" "$OUT"
}

# Generates the wire types from openapi/openapi.json and compiles the client (dist/).
build_ts_client() {
    (cd "$TS_CLIENT_DIR" && npm run --silent build) || return 1
}

check_ts_client() {
    build_ts_client || return 1
    (cd "$TS_CLIENT_DIR" && npm run --silent build:test) || return 1
    echo "built @kalamdb/client with tsc $("$TS_CLIENT_DIR/node_modules/.bin/tsc" --version | cut -d' ' -f2)"
    KALAMDB_URL=$BASE_URL KALAMDB_ROOT_PASSWORD=$ROOT_PASSWORD KALAMDB_SERVER_BIN=$SERVER_BIN \
        node "$TS_CLIENT_DIR/scripts/run-tests.mjs" || return 1
    if grep -aq 'panicked' "$OUT/server.log"; then
        echo "the server panicked during the client's tests:"
        grep -a -A3 'panicked' "$OUT/server.log" | head -n 40
        return 1
    fi
}

check_chat_example() {
    build_ts_client || return 1
    rm -f "$OUT"/chat-*.png
    node openapi/tests/chat_example.mjs "$BASE_URL" "$ROOT_PASSWORD" "$OUT"
}

check_fuzz() {
    local reports=$OUT/schemathesis seed=() status
    rm -rf "$reports"
    "$VENV/bin/python" openapi/tests/kalamdb_http.py fuzz-setup "$BASE_URL" "$TOKEN" || return 1
    [ -n "${KALAMDB_FUZZ_SEED:-}" ] && seed=(--seed "$KALAMDB_FUZZ_SEED")
    echo "schemathesis: $FUZZ_EXAMPLES examples per operation"
    # Hypothesis keeps its example database (earlier failures are tried first) under target/.
    HYPOTHESIS_STORAGE_DIRECTORY=$ROOT/target/openapi-fuzz/hypothesis \
        timeout $((300 + FUZZ_EXAMPLES / 4)) "$VENV/bin/schemathesis" --config-file openapi/schemathesis.toml run \
        "$BASE_URL/api/openapi.json" \
        --header "Authorization: Bearer $TOKEN" \
        --max-examples "$FUZZ_EXAMPLES" "${seed[@]}" \
        --baseline openapi/schemathesis-baseline.json \
        --report junit,har --report-dir "$reports" \
        --output-truncate false ${KALAMDB_FUZZ_ARGS:-}
    status=$?
    echo "schemathesis exit code: $status (reports: $reports)"
    if ! kill -0 "$SERVER_PID" 2>/dev/null; then
        echo "the server is gone after fuzzing: $(tail -n 20 "$OUT/server.log")"
        return 1
    fi
    "$VENV/bin/python" openapi/tests/kalamdb_http.py health "$BASE_URL" || return 1
    if grep -aq 'ERROR' "$OUT/server.log"; then
        echo "the server logged errors while fuzzing:"
        grep -a 'ERROR' "$OUT/server.log" | head -n 20
    fi
    if grep -aq 'panicked' "$OUT/server.log"; then
        echo "the server panicked while fuzzing:"
        grep -a -A3 'panicked' "$OUT/server.log" | head -n 40
        return 1
    fi
    return $status
}

# ------------------------------------------------------------------ main

mkdir -p "$OUT"
install_tools
start_server

declare -A RESULT
passed=0
failed=0
for name in "${CHECKS[@]}"; do
    say "check $name"
    check_started=$SECONDS
    case $name in
        spec) check_spec ;;
        python-sdk) check_python_sdk ;;
        ts-sdk) check_ts_sdk ;;
        swagger-ui) check_swagger_ui ;;
        ts-client) check_ts_client ;;
        chat-example) check_chat_example ;;
        fuzz) check_fuzz ;;
    esac &
    CHECK_PID=$!
    wait "$CHECK_PID"
    status=$?
    CHECK_PID=""
    if [ $status -eq 0 ]; then
        RESULT[$name]="PASS"
        passed=$((passed + 1))
    else
        RESULT[$name]="FAIL"
        failed=$((failed + 1))
    fi
    echo "--- ${RESULT[$name]} $name ($((SECONDS - check_started))s)"
done

stop_server

say "client tests (output in $OUT)"
for name in "${CHECKS[@]}"; do
    printf '  %s  %s\n' "${RESULT[$name]}" "$name"
done
printf 'client tests took %ds\n' "$((SECONDS - started))"
printf '%d passed, %d failed\n' "$passed" "$failed"
[ "$failed" -eq 0 ]
