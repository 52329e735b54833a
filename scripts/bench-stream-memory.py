#!/usr/bin/env python3
"""Sustained STREAM-table writes with no reader; prints the server's RSS.

  KALAMDB_DATA_DIR=/tmp/mem KALAMDB_LISTEN=127.0.0.1:18090 KALAMDB_ROOT_PASSWORD=pw \
      target/release/kalamdb-server &
  scripts/bench-stream-memory.py --port 18090 --password pw --pid $! --seconds 90

20 users each push 500-row INSERTs (100-byte bodies) into a STREAM table
with retention '1 hour' and max_buffer 1,000,000 while nobody subscribes.
"""
import argparse
import json
import time
import urllib.request


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--port", type=int, default=18090)
    parser.add_argument("--password", default="pw")
    parser.add_argument("--pid", type=int, required=True)
    parser.add_argument("--seconds", type=int, default=90)
    args = parser.parse_args()
    base = f"http://127.0.0.1:{args.port}"

    def post(path, body, token=None):
        headers = {"content-type": "application/json"}
        if token:
            headers["authorization"] = "Bearer " + token
        request = urllib.request.Request(
            base + path, data=json.dumps(body).encode(), headers=headers
        )
        return json.loads(urllib.request.urlopen(request).read())

    def login(user, password):
        return post("/api/auth/login", {"username": user, "password": password})["access_token"]

    def sql(text, token):
        return post("/api/sql", {"sql": text}, token)

    def rss_mib():
        with open(f"/proc/{args.pid}/status") as status:
            for line in status:
                if line.startswith("VmRSS"):
                    return int(line.split()[1]) // 1024
        return -1

    root = login("root", args.password)
    sql(
        "CREATE NAMESPACE IF NOT EXISTS m; CREATE STREAM TABLE IF NOT EXISTS m.ev "
        "(room INT, body TEXT) WITH (retention = '1 hour', max_buffer = 1000000)",
        root,
    )
    writers = []
    for i in range(20):
        sql(f"CREATE USER IF NOT EXISTS 'w{i}' WITH PASSWORD 'pw' ROLE user", root)
        writers.append(login(f"w{i}", "pw"))
    body = "z" * 100
    values = ", ".join(f"({k}, '{body}')" for k in range(500))
    started, statements, last = time.time(), 0, 0.0
    while time.time() - started < args.seconds:
        sql(f"INSERT INTO m.ev (room, body) VALUES {values}", writers[statements % len(writers)])
        statements += 1
        if time.time() - last > 5:
            last = time.time()
            print(f"t={last - started:5.1f}s events={statements * 500:>9} rss={rss_mib()} MiB", flush=True)
    print(f"events={statements * 500} in {time.time() - started:.1f}s rss={rss_mib()} MiB")


if __name__ == "__main__":
    main()
