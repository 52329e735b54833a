"""Small HTTP helper for test-clients.sh (standard library only, so a fresh
machine needs no curl).

  kalamdb_http.py login BASE_URL PASSWORD      prints an access token for root
  kalamdb_http.py fuzz-setup BASE_URL TOKEN    creates the tables fuzz_hooks.py uses
  kalamdb_http.py health BASE_URL              exits 0 when /health answers 200 {"status":"ok"}
"""

import json
import sys
import urllib.error
import urllib.request


def request(url: str, body=None, token: str | None = None) -> tuple[int, dict]:
    headers = {"content-type": "application/json"}
    if token:
        headers["authorization"] = f"Bearer {token}"
    data = None if body is None else json.dumps(body).encode()
    req = urllib.request.Request(url, data=data, headers=headers, method="GET" if body is None else "POST")
    try:
        with urllib.request.urlopen(req, timeout=30) as response:
            return response.status, json.load(response)
    except urllib.error.HTTPError as error:
        return error.code, json.load(error)


def main() -> int:
    command, base = sys.argv[1], sys.argv[2].rstrip("/")
    if command == "login":
        status, body = request(f"{base}/api/auth/login", {"username": "root", "password": sys.argv[3]})
        if status != 200:
            print(f"login failed: {status} {body}", file=sys.stderr)
            return 1
        print(body["access_token"])
    elif command == "fuzz-setup":
        from fuzz_hooks import FUZZ_SETUP_SQL

        status, body = request(f"{base}/api/sql", {"sql": FUZZ_SETUP_SQL}, token=sys.argv[3])
        if status != 200:
            print(f"fuzz setup failed: {status} {body}", file=sys.stderr)
            return 1
        print("created namespace fuzz with tables fuzz.items (USER) and fuzz.rooms (SHARED)")
    elif command == "health":
        try:
            status, body = request(f"{base}/health")
        except OSError as error:
            print(f"/health: {error}", file=sys.stderr)
            return 1
        print(f"/health: {status} {json.dumps(body)}")
        return 0 if status == 200 and body.get("status") == "ok" else 1
    else:
        print(__doc__, file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
