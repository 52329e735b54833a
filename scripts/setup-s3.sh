#!/usr/bin/env bash
# Installs moto (a local S3-compatible server, from PyPI) into
# target/moto-venv for the S3 tests; the tests start it themselves on a free
# port (tests/tests/cold.rs). Does nothing when the pinned set is installed.
set -euo pipefail
cd "$(dirname "$0")/.."
VENV=target/moto-venv
REQ=tests/requirements-s3.txt

if [ ! -x "$VENV/bin/python" ]; then
  if ! python3 -m venv "$VENV" 2>/dev/null; then
    rm -rf "$VENV"
    sudo=""
    [ "$(id -u)" -ne 0 ] && sudo="sudo"
    $sudo apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq python3-venv >/dev/null
    python3 -m venv "$VENV"
  fi
fi
want=$(sha256sum "$REQ" | cut -d' ' -f1)
if [ "$(cat "$VENV/.requirements.sha256" 2>/dev/null)" != "$want" ]; then
  echo "setup-s3: pip install -r $REQ into $VENV"
  "$VENV/bin/pip" install --disable-pip-version-check -q -r "$REQ"
  echo "$want" >"$VENV/.requirements.sha256"
fi
test -x "$VENV/bin/moto_server"
