#!/usr/bin/env python3
"""Figures for the operator statements, against a running server (start a
fresh one for each scenario, with manual flushes only):

  KALAMDB_DATA_DIR=/tmp/admin KALAMDB_LISTEN=127.0.0.1:18095 KALAMDB_ROOT_PASSWORD=pw \
  KALAMDB_FLUSH_ROWS=0 KALAMDB_FLUSH_INTERVAL_SECS=0 KALAMDB_COMPACT_MIN_FILES=0 \
      target/release/kalamdb-server &

  scripts/bench-admin.py schema [--users 1000 --rows-per-user 1000]
      The time of an ALTER TABLE on a table with 1,000 users and 1,000,000
      rows (flushed to Parquet) next to the same ALTER on an empty table,
      and the read cost of a partition whose Parquet files span three
      schema versions next to one whose files share one version, and after
      compaction.

  scripts/bench-admin.py backup [--users 100 --rows-per-user 10000]
      BACKUP DATABASE and RESTORE DATABASE throughput (rows/s, MB/s) for
      1,000,000 rows over 100 users, 70% flushed to Parquet and 30% still
      in RocksDB.

Times are client round trips over one keep-alive HTTP connection (median
of the runs); the server's own `execution_time_ms` is printed beside; job
durations are the jobs' own `duration_ms`.
"""
import argparse
import http.client
import json
import statistics
import time


class Client:
    def __init__(self, port):
        self.connection = http.client.HTTPConnection("127.0.0.1", port)

    def post(self, path, body, token=None):
        headers = {"content-type": "application/json"}
        if token:
            headers["authorization"] = "Bearer " + token
        self.connection.request("POST", path, json.dumps(body), headers)
        response = self.connection.getresponse()
        return response.status, json.loads(response.read())

    def login(self, user, password):
        return self.post("/api/auth/login", {"username": user, "password": password})[1][
            "access_token"
        ]

    def sql(self, token, text):
        status, body = self.post("/api/sql", {"sql": text}, token)
        if status != 200:
            raise SystemExit(f"{text[:80]}: {status} {body}")
        return body

    def timed(self, token, text):
        start = time.perf_counter()
        body = self.sql(token, text)
        return (time.perf_counter() - start) * 1000, body["execution_time_ms"]

    def wait_job(self, token, job_id):
        while True:
            rows = self.sql(token, f"SELECT status, error_message FROM system.jobs WHERE job_id = '{job_id}'")[
                "results"
            ][0]["rows"]
            if rows and rows[0]["status"] == "completed":
                return
            if rows and rows[0]["status"] == "failed":
                raise SystemExit(f"job {job_id} failed: {rows[0]}")
            time.sleep(0.2)

    def run_job(self, token, text):
        job = self.sql(token, text)["results"][0]["rows"][0]["job_id"]
        self.wait_job(token, job)
        row = self.sql(token, f"SELECT result FROM system.jobs WHERE job_id = '{job}'")["results"][0]["rows"][0]
        return json.loads(row["result"])


def rows(first, count):
    return ", ".join(f"({i}, 'body of row {i} with some text', {i % 1000})" for i in range(first, first + count))


def median_ms(client, token, text, runs):
    client.timed(token, text)  # warm caches
    times = [client.timed(token, text) for _ in range(runs)]
    return statistics.median(t[0] for t in times), statistics.median(t[1] for t in times)


def load(client, root, users, table, first_row, rows_per_user):
    """Creates users u0… (if needed) and gives each `rows_per_user` rows."""
    start = time.perf_counter()
    for u in range(users):
        for first in range(first_row, first_row + rows_per_user, 1000):
            count = min(1000, first_row + rows_per_user - first)
            client.sql(root, f"EXECUTE AS USER 'u{u}' (INSERT INTO {table} VALUES {rows(first, count)})")
    total = users * rows_per_user
    elapsed = time.perf_counter() - start
    print(f"inserted {total:,} rows into {table} in {elapsed:.1f} s ({total / elapsed:,.0f} rows/s)")


def create_users(client, root, users):
    start = time.perf_counter()
    for u in range(users):
        client.sql(root, f"CREATE USER 'u{u}' WITH PASSWORD 'pw-u{u}' ROLE user")
    print(f"created {users} users in {time.perf_counter() - start:.1f} s")


def backup(client, root, args):
    client.sql(root, "CREATE NAMESPACE IF NOT EXISTS bench")
    client.sql(root, "CREATE USER TABLE bench.msgs (id BIGINT PRIMARY KEY, body TEXT, n INT)")
    create_users(client, root, args.users)
    cold = args.rows_per_user * 7 // 10
    load(client, root, args.users, "bench.msgs", 0, cold)
    client.run_job(root, "FLUSH TABLE bench.msgs")
    load(client, root, args.users, "bench.msgs", cold, args.rows_per_user - cold)
    total = args.users * args.rows_per_user
    for label, statement in [
        ("BACKUP", "BACKUP DATABASE bench TO 'bench-backup'"),
        ("RESTORE", "RESTORE DATABASE bench FROM 'bench-backup' AS bench_copy"),
    ]:
        start = time.perf_counter()
        result = client.run_job(root, statement)
        wall = time.perf_counter() - start
        seconds = result["duration_ms"] / 1000
        mb = result["bytes"] / 1e6
        print(
            f"{label:<8} {result['rows']:,} rows, {result['files']} files, {mb:.1f} MB in {seconds:.2f} s"
            f" (job; {wall:.2f} s with queueing): {result['rows'] / seconds:,.0f} rows/s, {mb / seconds:.1f} MB/s"
        )
        assert result["rows"] >= total, result
    token = client.login("u1", "pw-u1")
    a = client.sql(token, "SELECT count(*) AS n, sum(n) AS s FROM bench.msgs")["results"][0]["rows"]
    b = client.sql(token, "SELECT count(*) AS n, sum(n) AS s FROM bench_copy.msgs")["results"][0]["rows"]
    print(f"u1 before/after: {a} / {b}")
    assert a == b


def schema(client, root, args):
    client.sql(root, "CREATE NAMESPACE IF NOT EXISTS bench")
    client.sql(root, "CREATE USER TABLE bench.big (id BIGINT PRIMARY KEY, body TEXT, n INT)")
    client.sql(root, "CREATE USER TABLE bench.empty (id BIGINT PRIMARY KEY, body TEXT, n INT)")
    create_users(client, root, args.users)
    load(client, root, args.users, "bench.big", 0, args.rows_per_user)
    total = args.users * args.rows_per_user
    start = time.perf_counter()
    client.run_job(root, "FLUSH TABLE bench.big")
    print(f"flushed to {args.users} Parquet files in {time.perf_counter() - start:.1f} s")

    print("\nALTER TABLE (client ms / server ms), median of 5 each:")
    for table in ["bench.empty", "bench.big"]:
        figures = []
        for i in range(5):
            figures.append(client.timed(root, f"ALTER TABLE {table} ADD COLUMN c{i} TEXT DEFAULT 'x'"))
        for i in range(5):
            figures.append(client.timed(root, f"ALTER TABLE {table} RENAME COLUMN c{i} TO d{i}"))
        figures.append(client.timed(root, f"ALTER TABLE {table} MODIFY COLUMN n BIGINT"))
        for i in range(5):
            figures.append(client.timed(root, f"ALTER TABLE {table} DROP COLUMN d{i}"))
        label = f"{table} ({'empty' if table == 'bench.empty' else f'{total:,} rows, {args.users} users'})"
        print(
            f"  {label:<42} {statistics.median(f[0] for f in figures):6.2f} ms"
            f" / {statistics.median(f[1] for f in figures):6.2f} ms  (max {max(f[0] for f in figures):.2f} ms)"
        )
    # Reads over the big table after 16 versions: every file is version 1.
    token = client.login("u0", "pw-u0")
    big = median_ms(client, token, "SELECT count(*), sum(n) FROM bench.big", args.runs)
    print(f"  u0 count(*) on bench.big (files of v1, table at v17): {big[0]:.2f} / {big[1]:.2f} ms")

    print(f"\nReads of one partition ({3 * args.read_rows:,} rows in 3 Parquet files), client ms / server ms:")
    client.sql(root, "CREATE USER TABLE bench.one (id BIGINT PRIMARY KEY, body TEXT, n INT)")
    client.sql(root, "CREATE USER TABLE bench.three (id BIGINT PRIMARY KEY, body TEXT, n INT)")
    for step in range(3):
        if step > 0:
            client.sql(root, f"ALTER TABLE bench.three ADD COLUMN extra{step} INT DEFAULT {step}")
        for table in ["bench.one", "bench.three"]:
            for first in range(step * args.read_rows, (step + 1) * args.read_rows, 1000):
                client.sql(root, f"EXECUTE AS USER 'u0' (INSERT INTO {table} (id, body, n) VALUES {rows(first, 1000)})")
            client.run_job(root, f"FLUSH TABLE {table}")
    queries = [
        ("count", "SELECT count(*), sum(n) FROM {t}"),
        ("filter", "SELECT id, body FROM {t} WHERE n = 7"),
        ("point", "SELECT * FROM {t} WHERE id = 12345"),
        ("page", "SELECT * FROM {t} ORDER BY id DESC LIMIT 50"),
    ]
    results = {}
    for name, query in queries:
        for table in ["bench.one", "bench.three"]:
            results[(name, table)] = median_ms(client, token, query.format(t=table), args.runs)
    client.run_job(root, "COMPACT TABLE bench.three")
    for name, query in queries:
        results[(name, "compacted")] = median_ms(client, token, query.format(t="bench.three"), args.runs)
    print(f"  {'query':<8} {'1 version':>18} {'3 versions':>18} {'3 → compacted':>18}")
    for name, _ in queries:
        cells = [results[(name, k)] for k in ["bench.one", "bench.three", "compacted"]]
        print(f"  {name:<8} " + " ".join(f"{c[0]:8.2f} / {c[1]:7.2f}" for c in cells))


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("scenario", choices=["schema", "backup"])
    parser.add_argument("--port", type=int, default=18095)
    parser.add_argument("--password", default="pw")
    parser.add_argument("--users", type=int)
    parser.add_argument("--rows-per-user", type=int)
    parser.add_argument("--read-rows", type=int, default=20000, help="schema: rows per version in the read test")
    parser.add_argument("--runs", type=int, default=30)
    args = parser.parse_args()
    defaults = {"schema": (1000, 1000), "backup": (100, 10000)}[args.scenario]
    args.users = args.users or defaults[0]
    args.rows_per_user = args.rows_per_user or defaults[1]
    client = Client(args.port)
    root = client.login("root", args.password)
    {"schema": schema, "backup": backup}[args.scenario](client, root, args)


if __name__ == "__main__":
    main()
