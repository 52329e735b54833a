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

warm, over the same number of runs, fetching every row in two ways:
`.fetchall()` (Python tuples; most of its time is spent making a tz-aware
datetime per row) and `.to_arrow_table()` (columnar, what the query engine
itself costs); and the `count(*)`, `sum(n)` variant. It prints p50/mean/min
and the ratios KalamDB / DuckDB of the medians, plus the p50/p99 of point
lookups `WHERE id = k` for comparison with KalamDB's.

DuckDB (the PyPI packages `duckdb`, `pytz`, which fetchall() needs for
TIMESTAMP WITH TIME ZONE values, and `pyarrow`) is installed into the venv
target/bench-venv on first use.
"""

import json
import os
import random
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
POINT_SAMPLES = 1000


def ensure_venv():
    """Re-runs this script with the venv's Python, creating it if needed."""
    python = VENV / "bin" / "python"
    if Path(sys.prefix).resolve() == VENV.resolve():
        return
    if not python.exists():
        subprocess.check_call([sys.executable, "-m", "venv", str(VENV)])
    # pytz: fetchall() turns TIMESTAMP WITH TIME ZONE values into aware
    # datetimes; pyarrow: to_arrow_table().
    packages = ["duckdb", "pytz", "pyarrow"]
    probe = subprocess.run(
        [str(python), "-c", "import " + ", ".join(packages)], capture_output=True
    )
    if probe.returncode != 0:
        subprocess.check_call([str(python), "-m", "pip", "install", "--quiet", *packages])
    os.execv(str(python), [str(python), __file__, *sys.argv[1:]])


def summary(samples):
    samples = sorted(samples)
    return {
        "p50_ms": statistics.median(samples) * 1e3,
        "p99_ms": samples[round((len(samples) - 1) * 0.99)] * 1e3,
        "mean_ms": statistics.fmean(samples) * 1e3,
        "min_ms": samples[0] * 1e3,
    }


def timed(run, runs):
    """Warm-up runs, then `runs` timed runs of `run()`, which fetches the
    whole result; returns the stats and the last result."""
    result = None
    for _ in range(WARMUP):
        run()
    samples = []
    for _ in range(runs):
        started = time.perf_counter()
        result = run()
        samples.append(time.perf_counter() - started)
    return summary(samples), result


def line(label, stats):
    print(
        f"duckdb: {label}: p50 {stats['p50_ms']:.1f} ms  mean {stats['mean_ms']:.1f} ms  "
        f"min {stats['min_ms']:.1f} ms"
    )


def main():
    ensure_venv()
    import duckdb

    if not FILES.exists():
        sys.exit(f"{FILES} is missing: run `cargo bench --workspace --bench cold_tier` first")
    files = [f for f in FILES.read_text().splitlines() if f.strip()]
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
    rows_stats, rows = timed(lambda: con.execute(rows_sql).fetchall(), runs)
    line(f"30-day range (rows, {len(rows)} rows, fetchall)", rows_stats)
    arrow_stats, table = timed(lambda: con.sql(rows_sql).to_arrow_table(), runs)
    line(f"30-day range (rows, {table.num_rows} rows, to_arrow_table)", arrow_stats)
    agg_stats, agg = timed(lambda: con.execute(agg_sql).fetchall(), runs)
    count, total_n = agg[0]
    line(f"30-day range (count/sum = {count}/{total_n})", agg_stats)

    # Point lookups, for comparison with KalamDB's (uniform random keys).
    keys = random.Random(1).sample(range(1, total + 1), POINT_SAMPLES)
    point_sql = f"SELECT id, created, kind, body, n FROM {source} WHERE _deleted = false AND id = $1"
    for key in keys[:20]:
        con.execute(point_sql, [key]).fetchall()
    samples = []
    for key in keys:
        started = time.perf_counter()
        found = con.execute(point_sql, [key]).fetchall()
        samples.append(time.perf_counter() - started)
        assert len(found) == 1 and found[0][0] == key, (key, found)
    point_stats = summary(samples)
    print(
        f"duckdb: point lookup WHERE id = k, {POINT_SAMPLES} keys: "
        f"p50 {point_stats['p50_ms']:.2f} ms  p99 {point_stats['p99_ms']:.2f} ms"
    )

    if kalam is None:
        print(f"{RESULTS} is missing: no KalamDB figures to compare with")
        return
    matched = kalam["range_matched_rows"]
    if len(rows) != matched or table.num_rows != matched or count != matched:
        sys.exit(
            f"row counts differ: DuckDB {len(rows)}/{table.num_rows}/{count}, "
            f"KalamDB {kalam['range_matched_rows']}"
        )
    if total_n != kalam["range_sum_n"]:
        sys.exit(f"sum(n) differs: DuckDB {total_n}, KalamDB {kalam['range_sum_n']}")
    comparisons = (
        ("range_rows", "rows, fetchall", rows_stats),
        ("range_rows", "rows, to_arrow_table", arrow_stats),
        ("range_count_sum", "count/sum", agg_stats),
        ("point_lookup", "point lookup", point_stats),
    )
    for what, label, duck in comparisons:
        for tier in ("parquet", "rocksdb"):
            ours = kalam[tier][what]["p50_ms"]
            print(
                f"ratio KalamDB ({tier}) / DuckDB, {label}, p50: "
                f"{ours:.2f} ms / {duck['p50_ms']:.2f} ms = {ours / duck['p50_ms']:.2f}x"
            )
    kalam["duckdb"] = {
        "version": duckdb.__version__,
        "threads": threads,
        "range_rows_fetchall": rows_stats,
        "range_rows_arrow": arrow_stats,
        "range_count_sum": agg_stats,
        "point_lookup": point_stats,
    }
    RESULTS.write_text(json.dumps(kalam, indent=2))


if __name__ == "__main__":
    main()
