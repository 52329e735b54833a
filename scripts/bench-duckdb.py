#!/usr/bin/env python3
"""The cold-tier range query run by DuckDB on KalamDB's own Parquet files.

Run after `cargo bench --workspace --bench cold_tier` (or use
scripts/bench-cold.sh, which runs both): that bench leaves the 20 Parquet
files of `bench.events` (user alice, 1,000,000 rows) in
target/bench-cold-data, lists them in target/bench-cold-files.txt and writes
its own timings to target/bench-cold-results.json.

This script runs, on those files, the same 30-day window as the bench:

    SELECT id, created, kind, n FROM read_parquet([...])
    WHERE _deleted = false AND created >= ... AND created < ...

warm, over the same number of runs, fetching every row into Python with
`.fetchall()`; and the `count(*)`, `sum(n)` variant. It prints p50/mean/min
and the ratio KalamDB / DuckDB of the medians.

DuckDB (the PyPI package `duckdb`) is installed into the venv
target/bench-venv on first use.
"""

import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
TARGET = ROOT / "target"
VENV = TARGET / "bench-venv"
FILES = TARGET / "bench-cold-files.txt"
RESULTS = TARGET / "bench-cold-results.json"

WINDOW_FROM = "2026-03-01 00:00:00+00"
WINDOW_TO = "2026-03-31 00:00:00+00"
WARMUP = 2


def ensure_venv():
    """Re-runs this script with the venv's Python, creating it if needed."""
    python = VENV / "bin" / "python"
    if Path(sys.prefix).resolve() == VENV.resolve():
        return
    if not python.exists():
        subprocess.check_call([sys.executable, "-m", "venv", str(VENV)])
    probe = subprocess.run([str(python), "-c", "import duckdb"], capture_output=True)
    if probe.returncode != 0:
        subprocess.check_call([str(python), "-m", "pip", "install", "--quiet", "duckdb"])
    os.execv(str(python), [str(python), __file__, *sys.argv[1:]])


def timed(con, sql, runs):
    """Warm-up runs, then `runs` timed runs; each fetches the whole result."""
    result = None
    for _ in range(WARMUP):
        con.execute(sql).fetchall()
    samples = []
    for _ in range(runs):
        started = time.perf_counter()
        result = con.execute(sql).fetchall()
        samples.append(time.perf_counter() - started)
    samples.sort()
    stats = {
        "p50_ms": statistics.median(samples) * 1e3,
        "mean_ms": statistics.fmean(samples) * 1e3,
        "min_ms": samples[0] * 1e3,
    }
    return stats, result


def main():
    ensure_venv()
    import duckdb

    if not FILES.exists():
        sys.exit(f"{FILES} is missing: run `cargo bench --workspace --bench cold_tier` first")
    files = [line for line in FILES.read_text().splitlines() if line.strip()]
    kalam = json.loads(RESULTS.read_text()) if RESULTS.exists() else None
    runs = kalam["range_samples"] if kalam else 20

    con = duckdb.connect()
    threads = con.execute("SELECT current_setting('threads')").fetchone()[0]
    source = "read_parquet([" + ", ".join(f"'{f}'" for f in files) + "])"
    where = (
        f"_deleted = false AND created >= TIMESTAMPTZ '{WINDOW_FROM}' "
        f"AND created < TIMESTAMPTZ '{WINDOW_TO}'"
    )
    rows_sql = f"SELECT id, created, kind, n FROM {source} WHERE {where}"
    agg_sql = f"SELECT count(*), sum(n) FROM {source} WHERE {where}"
    total = con.execute(f"SELECT count(*) FROM {source}").fetchone()[0]

    print(
        f"duckdb {duckdb.__version__}: {len(files)} Parquet files, {total} rows, "
        f"threads={threads}, {runs} runs after {WARMUP} warm-up"
    )
    rows_stats, rows = timed(con, rows_sql, runs)
    agg_stats, agg = timed(con, agg_sql, runs)
    count, total_n = agg[0]
    print(
        f"duckdb: 30-day range (rows, {len(rows)} rows, fetchall): "
        f"p50 {rows_stats['p50_ms']:.1f} ms  mean {rows_stats['mean_ms']:.1f} ms  "
        f"min {rows_stats['min_ms']:.1f} ms"
    )
    print(
        f"duckdb: 30-day range (count/sum = {count}/{total_n}): "
        f"p50 {agg_stats['p50_ms']:.1f} ms  mean {agg_stats['mean_ms']:.1f} ms  "
        f"min {agg_stats['min_ms']:.1f} ms"
    )

    if kalam is None:
        print(f"{RESULTS} is missing: no KalamDB figures to compare with")
        return
    if len(rows) != kalam["range_matched_rows"] or count != kalam["range_matched_rows"]:
        sys.exit(
            f"row counts differ: DuckDB {len(rows)}/{count}, "
            f"KalamDB {kalam['range_matched_rows']}"
        )
    if total_n != kalam["range_sum_n"]:
        sys.exit(f"sum(n) differs: DuckDB {total_n}, KalamDB {kalam['range_sum_n']}")
    for what, duck in (("range_rows", rows_stats), ("range_count_sum", agg_stats)):
        for tier in ("parquet", "rocksdb"):
            ours = kalam[tier][what]["p50_ms"]
            print(
                f"ratio KalamDB ({tier}) / DuckDB, {what} p50: "
                f"{ours:.1f} ms / {duck['p50_ms']:.1f} ms = {ours / duck['p50_ms']:.2f}x"
            )
    kalam["duckdb"] = {
        "version": duckdb.__version__,
        "threads": threads,
        "range_rows": rows_stats,
        "range_count_sum": agg_stats,
    }
    RESULTS.write_text(json.dumps(kalam, indent=2))


if __name__ == "__main__":
    main()
