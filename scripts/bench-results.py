#!/usr/bin/env python3
"""Large results and Parquet key lookups over HTTP (issue 15's last two rows).

Creates a SHARED table of 150,000 rows (BIGINT key, TEXT, INT, DOUBLE, TIMESTAMP), flushes it
to Parquet, then measures `SELECT *` of every row (27.9 MB of JSON; the median of 9) and
point lookups by key at random (p50/p99). Raw bytes are read: client-side JSON parsing is not
counted.

  scripts/bench-results.py --url http://127.0.0.1:8080 --password ROOT_PASSWORD [--lookups 2000]
"""
import argparse
import asyncio
import random
import statistics
import time
import uuid

import aiohttp


async def main(a):
    async with aiohttp.ClientSession() as http:
        async with http.post(a.url + "/api/auth/login", json={"username": "root", "password": a.password}) as r:
            token = (await r.json())["access_token"]

        async def sql(q):
            async with http.post(a.url + "/api/sql", json={"sql": q}, headers={"Authorization": f"Bearer {token}"}) as r:
                body = await r.read()
                assert r.status == 200, body[:300]
                return body

        ns = "big" + uuid.uuid4().hex[:8]
        await sql(f"CREATE NAMESPACE {ns}; CREATE SHARED TABLE {ns}.big (id BIGINT PRIMARY KEY, body TEXT, n INT, score DOUBLE, at TIMESTAMP DEFAULT NOW())")
        for start in range(0, a.rows, 1000):
            values = ", ".join(f"({i}, 'body of row {i}', {i % 1000}, {i}.5)" for i in range(start, min(start + 1000, a.rows)))
            await sql(f"INSERT INTO {ns}.big (id, body, n, score) VALUES {values}")
        await sql(f"FLUSH TABLE {ns}.big")
        while b'"rows":[]' not in await sql(f"SELECT job_id FROM system.jobs WHERE status IN ('queued', 'running')"):
            await asyncio.sleep(0.2)
        times = []
        for _ in range(9):
            t0 = time.perf_counter()
            body = await sql(f"SELECT * FROM {ns}.big")
            times.append((time.perf_counter() - t0) * 1000)
        print(f"SELECT * of {a.rows:,} rows from Parquet: median {statistics.median(times):.1f} ms, {len(body) / 1e6:.1f} MB")
        times = []
        for _ in range(a.lookups):
            i = random.randrange(a.rows)
            t0 = time.perf_counter()
            body = await sql(f"SELECT * FROM {ns}.big WHERE id = {i}")
            times.append((time.perf_counter() - t0) * 1000)
            assert f'"id":"{i}"'.encode() in body, body[:300]
        times.sort()
        print(f"point lookup in Parquet: p50 {times[len(times) // 2]:.3f} ms, p99 {times[int(len(times) * 0.99)]:.3f} ms")
        await sql(f"DROP TABLE {ns}.big")


if __name__ == "__main__":
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--url", default="http://127.0.0.1:8080")
    ap.add_argument("--password", required=True)
    ap.add_argument("--rows", type=int, default=150_000)
    ap.add_argument("--lookups", type=int, default=2000)
    asyncio.run(main(ap.parse_args()))
