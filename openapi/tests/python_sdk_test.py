"""Check 2: a round trip through the Python SDK generated from
openapi/openapi.json by openapi-python-client. Uses nothing but the generated
package `kalamdb_client` (and the standard library).

Usage: python_sdk_test.py BASE_URL ROOT_PASSWORD [NAMESPACE]
"""

import sys

from kalamdb_client import AuthenticatedClient, Client
from kalamdb_client.api.auth import login
from kalamdb_client.api.health import health
from kalamdb_client.api.sql import execute_sql
from kalamdb_client.models import (
    ErrorResponse,
    HealthResponse,
    LoginRequest,
    LoginResponse,
    SqlRequestBody,
    SqlResponse,
)

failures = 0


def check(condition: bool, what: str) -> None:
    global failures
    print(("ok   " if condition else "FAIL ") + what)
    if not condition:
        failures += 1


def main() -> int:
    base_url, password = sys.argv[1], sys.argv[2]
    ns = sys.argv[3] if len(sys.argv) > 3 else "py_app"

    public = Client(base_url=base_url, raise_on_unexpected_status=True)

    alive = health.sync(client=public)
    check(isinstance(alive, HealthResponse) and alive.status == "ok", "GET /health -> HealthResponse")

    session = login.sync(client=public, body=LoginRequest(username="root", password=password))
    check(isinstance(session, LoginResponse), "login -> LoginResponse")
    if not isinstance(session, LoginResponse):
        return 1
    check(session.token_type == "Bearer" and session.role == "system", "token type Bearer, role system")
    check(session.expires_in > 0, "expires_in is positive")

    client = AuthenticatedClient(
        base_url=base_url, token=session.access_token, raise_on_unexpected_status=True
    )

    def sql(text: str, params=None):
        body = SqlRequestBody(sql=text) if params is None else SqlRequestBody(sql=text, params=params)
        return execute_sql.sync_detailed(client=client, body=body)

    created = sql(
        f"CREATE NAMESPACE {ns}; "
        f"CREATE USER TABLE {ns}.messages (id BIGINT PRIMARY KEY, body TEXT NOT NULL)"
    )
    check(
        created.status_code == 200 and isinstance(created.parsed, SqlResponse),
        f"create namespace {ns} and USER table {ns}.messages -> 200 SqlResponse",
    )
    if isinstance(created.parsed, SqlResponse):
        check(created.parsed.status == "success", "status is success")
        check(len(created.parsed.results) == 2, "one result per statement")
        check(all(isinstance(r.message, str) for r in created.parsed.results), "DDL results carry a message")

    inserted = sql(f"INSERT INTO {ns}.messages (id, body) VALUES (1, 'hi')")
    check(isinstance(inserted.parsed, SqlResponse), "insert a row -> SqlResponse")
    if isinstance(inserted.parsed, SqlResponse):
        check(inserted.parsed.results[0].row_count == 1, "row_count 1")
    # Parameters bind $1, $2 of every statement; a BIGINT may be sent as a string.
    bound = sql(f"INSERT INTO {ns}.messages (id, body) VALUES ($1, $2)", params=["2", "there"])
    check(isinstance(bound.parsed, SqlResponse), "insert with $1/$2 parameters -> SqlResponse")

    selected = sql(f"SELECT id, body FROM {ns}.messages ORDER BY id")
    check(isinstance(selected.parsed, SqlResponse), "select -> SqlResponse")
    if isinstance(selected.parsed, SqlResponse):
        result = selected.parsed.results[0]
        check(
            [(c.name, c.type_) for c in result.columns] == [("id", "BIGINT"), ("body", "TEXT")],
            "columns id BIGINT, body TEXT",
        )
        rows = [row.to_dict() for row in result.rows]
        check(
            rows == [{"id": "1", "body": "hi"}, {"id": "2", "body": "there"}],
            f"rows come back with BIGINT as strings: {rows}",
        )
        check(result.row_count == 2, "row_count 2")
        check(bool(result.rows) and result.rows[0]["body"] == "hi", "a row is indexable by column name")

    missing = sql(f"SELECT id FROM {ns}.no_such_table")
    check(missing.status_code == 400, f"unknown table -> 400 (got {missing.status_code})")
    check(isinstance(missing.parsed, ErrorResponse), "the 400 body is parsed as ErrorResponse")
    if isinstance(missing.parsed, ErrorResponse):
        check(missing.parsed.status == "error", "status is error")
        check(bool(missing.parsed.error.code) and "no_such_table" in missing.parsed.error.message,
              f"error names the table: {missing.parsed.error.code}: {missing.parsed.error.message}")
        check(missing.parsed.error.statement == f"SELECT id FROM {ns}.no_such_table", "error names the statement")

    partial = sql(f"SELECT 1; INSERT INTO {ns}.messages (id, body) VALUES (1, 'again')")
    check(isinstance(partial.parsed, ErrorResponse), "duplicate key -> ErrorResponse")
    if isinstance(partial.parsed, ErrorResponse):
        check(len(partial.parsed.results) == 1, "results of the statements that ran before the failure")

    bad_token = AuthenticatedClient(base_url=base_url, token="not-a-jwt", raise_on_unexpected_status=True)
    denied = execute_sql.sync_detailed(client=bad_token, body=SqlRequestBody(sql="SELECT 1"))
    check(denied.status_code == 401 and isinstance(denied.parsed, ErrorResponse), "bad token -> 401 ErrorResponse")
    if isinstance(denied.parsed, ErrorResponse):
        check(denied.parsed.error.code == "UNAUTHORIZED", "code UNAUTHORIZED")

    wrong = login.sync_detailed(client=public, body=LoginRequest(username="root", password=password + "-wrong"))
    check(wrong.status_code == 401 and isinstance(wrong.parsed, ErrorResponse), "wrong password -> 401 ErrorResponse")

    print(f"python SDK: {failures} failure(s)")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
