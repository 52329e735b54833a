#!/usr/bin/env bash
# Regenerates openapi/openapi.json from the code. The file is replaced only
# when generation succeeds.
set -euo pipefail
cd "$(dirname "$0")/.."
tmp=$(mktemp openapi/.openapi.json.XXXXXX)
trap 'rm -f "$tmp"' EXIT
cargo run --quiet --bin kalamdb-server -- --print-openapi > "$tmp"
mv "$tmp" openapi/openapi.json
trap - EXIT
echo "wrote openapi/openapi.json"
