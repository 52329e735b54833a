#!/usr/bin/env python3
"""KalamDB's Postgres wire listener next to Postgres, through the same client (psycopg 3).

The yardstick in ../shared/bench drives KalamDB over HTTP (aiohttp) and Postgres over its own
protocol (psycopg), so its ratios include the difference between the two clients. This script
drives both servers with psycopg, the same statements and parameters, one after the other:

  * one client: single-row INSERT, then SELECT by key (rows spread over 100 owners: KalamDB
    users of a USER table, each with its own connection; Postgres an (owner, id) key);
  * C clients, each its own connection and owner, single-row INSERTs for D seconds.

  scripts/bench-pgwire.py --kalamdb 'host=127.0.0.1 port=5433 user=root password=...' \\
      [--pg postgresql://postgres:pg@127.0.0.1/postgres] [--rows 2000] [--clients 16] [--seconds 10]
"""
import argparse
import asyncio
import random
import statistics
import time
import uuid

import psycopg


def summary(name, lat_ms):
    lat = sorted(lat_ms)
    q = lambda p: lat[min(len(lat) - 1, int(p * len(lat)))]
    print(f"{name}: n={len(lat)} p50={q(0.5):.3f}ms p95={q(0.95):.3f}ms p99={q(0.99):.3f}ms mean={statistics.mean(lat):.3f}ms")


def dsn_with(dsn, **fields):
    return psycopg.conninfo.make_conninfo(dsn, **fields)


async def latency_pg(a):
    async with await psycopg.AsyncConnection.connect(a.pg, autocommit=True) as c:
        await c.execute("DROP TABLE IF EXISTS pw_msgs")
        await c.execute("CREATE TABLE pw_msgs (owner text, id bigint, body text, PRIMARY KEY (owner, id))")
        ins, sel = [], []
        for i in range(a.rows):
            t0 = time.perf_counter()
            await c.execute("INSERT INTO pw_msgs (owner, id, body) VALUES (%s, %s, %s)", (f"u{i % 100}", i, f"m{i}"))
            ins.append((time.perf_counter() - t0) * 1000)
        for _ in range(a.rows):
            i = random.randrange(a.rows)
            t0 = time.perf_counter()
            cur = await c.execute("SELECT * FROM pw_msgs WHERE owner = %s AND id = %s", (f"u{i % 100}", i))
            await cur.fetchall()
            sel.append((time.perf_counter() - t0) * 1000)
    summary("postgres INSERT", ins)
    summary("postgres SELECT by key", sel)


async def kalamdb_users(a, ns, count):
    """Creates the namespace, table and `count` users; a connection per user."""
    async with await psycopg.AsyncConnection.connect(a.kalamdb, autocommit=True) as root:
        await root.execute(f"CREATE NAMESPACE {ns}")
        await root.execute(f"CREATE USER TABLE {ns}.msgs (id BIGINT PRIMARY KEY, body TEXT)")
        for k in range(count):
            await root.execute(f"CREATE USER '{ns}u{k}' WITH PASSWORD 'pw-{ns}u{k}-123456' ROLE user")
    return [
        await psycopg.AsyncConnection.connect(
            dsn_with(a.kalamdb, user=f"{ns}u{k}", password=f"pw-{ns}u{k}-123456", dbname=ns), autocommit=True
        )
        for k in range(count)
    ]


async def latency_kalamdb(a):
    ns = "pw" + uuid.uuid4().hex[:8]
    conns = await kalamdb_users(a, ns, 100)
    ins, sel = [], []
    for i in range(a.rows):
        t0 = time.perf_counter()
        await conns[i % 100].execute("INSERT INTO msgs (id, body) VALUES (%s, %s)", (i, f"m{i}"))
        ins.append((time.perf_counter() - t0) * 1000)
    for _ in range(a.rows):
        i = random.randrange(a.rows)
        t0 = time.perf_counter()
        cur = await conns[i % 100].execute("SELECT * FROM msgs WHERE id = %s", (i,))
        rows = await cur.fetchall()
        sel.append((time.perf_counter() - t0) * 1000)
        assert len(rows) == 1, (i, rows)
    for c in conns:
        await c.close()
    summary("kalamdb (postgres protocol) INSERT", ins)
    summary("kalamdb (postgres protocol) SELECT by key", sel)


async def throughput(name, conns, insert):
    counts, lat = [0] * len(conns), []
    stop = time.perf_counter() + ARGS.seconds

    async def worker(k):
        i = 0
        while time.perf_counter() < stop:
            t0 = time.perf_counter()
            await insert(conns[k], k, i)
            lat.append((time.perf_counter() - t0) * 1000)
            counts[k] += 1
            i += 1

    started = time.perf_counter()
    await asyncio.gather(*(worker(k) for k in range(len(conns))))
    secs = time.perf_counter() - started
    lat.sort()
    q = lambda p: lat[min(len(lat) - 1, int(p * len(lat)))]
    print(f"{name}: {sum(counts) / secs:,.0f} rows/s  p50={q(0.5):.3f}ms p99={q(0.99):.3f}ms  n={sum(counts)}")


async def throughput_pg(a):
    async with await psycopg.AsyncConnection.connect(a.pg, autocommit=True) as c:
        await c.execute("DROP TABLE IF EXISTS pw_tp")
        await c.execute("CREATE TABLE pw_tp (owner text, id bigint, body text, PRIMARY KEY (owner, id))")
    conns = [await psycopg.AsyncConnection.connect(a.pg, autocommit=True) for _ in range(a.clients)]

    async def insert(c, k, i):
        await c.execute("INSERT INTO pw_tp (owner, id, body) VALUES (%s, %s, %s)", (f"c{k}", i, "x"))

    await throughput(f"postgres INSERT clients={a.clients}", conns, insert)
    for c in conns:
        await c.close()


async def throughput_kalamdb(a):
    conns = await kalamdb_users(a, "pt" + uuid.uuid4().hex[:8], a.clients)

    async def insert(c, k, i):
        await c.execute("INSERT INTO msgs (id, body) VALUES (%s, %s)", (i, "x"))

    await throughput(f"kalamdb (postgres protocol) INSERT clients={a.clients}", conns, insert)
    for c in conns:
        await c.close()


async def main(a):
    print(f"== one client, {a.rows} rows, 100 owners")
    await latency_pg(a)
    await latency_kalamdb(a)
    print(f"== {a.clients} clients, {a.seconds} s")
    await throughput_pg(a)
    await throughput_kalamdb(a)


if __name__ == "__main__":
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--kalamdb", required=True, help="libpq connection string of KalamDB's listener (as root)")
    ap.add_argument("--pg", default="postgresql://postgres:pg@127.0.0.1/postgres")
    ap.add_argument("--rows", type=int, default=2000)
    ap.add_argument("--clients", type=int, default=16)
    ap.add_argument("--seconds", type=float, default=10)
    ARGS = ap.parse_args()
    asyncio.run(main(ARGS))
