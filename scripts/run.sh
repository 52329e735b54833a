#!/usr/bin/env bash
# Builds and starts kalamdb-server with the data directory ./data.
# Extra arguments go to the server (e.g. --config kalamdb.toml).
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
exec cargo run --bin kalamdb-server -- "$@"
