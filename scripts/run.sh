#!/usr/bin/env bash
# Builds and starts kalamdb-server with the data directory ./data.
# Extra arguments go to the server (e.g. --config kalamdb.toml).
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
# The same build as scripts/test.sh (workspace, all targets): cargo resolves
# features per command line, so building only the binary here would compile
# DataFusion and RocksDB a second time for the tests.
cargo build --workspace --all-targets
exec target/debug/kalamdb-server "$@"
