#!/usr/bin/env bash
# Cold-tier benchmark: KalamDB flush throughput, point lookups and a 30-day
# range query over 1,000,000 rows in 20 Parquet files vs all in RocksDB
# (kalamdb-engine/benches/cold_tier.rs), then the same range query run by
# DuckDB on the same Parquet files (scripts/bench-duckdb.py, which installs
# duckdb into target/bench-venv) and the ratio KalamDB / DuckDB.
# Figures: docs/benchmarks.md, "Cold tier (Parquet)".
set -euo pipefail
cd "$(dirname "$0")/.."
# --workspace keeps the feature set of `cargo build --release --workspace`.
cargo bench --workspace --bench cold_tier
python3 scripts/bench-duckdb.py
