"""Schemathesis hooks for check 5 (loaded through `hooks` in
openapi/schemathesis.toml; test-clients.sh puts this folder on PYTHONPATH).

The request schema of POST /api/sql says only "sql is a string", so plain
schema-driven fuzzing sends random text that fails to parse and never reaches
the engine. This hook mixes in bodies built from SQL templates over the
tables test-clients.sh creates first (FUZZ_SETUP_SQL below), with fuzzed
literals, identifiers and `params` (any JSON value), so casts, parameter
binding, writes, reads and DDL all get exercised.

It also adds one check of the documented result shape: every row of a
successful result is an object whose keys are the result's column names, in
column order, and BIGINT values are strings (or null).
"""

import schemathesis
from hypothesis import strategies as st

# Run by test-clients.sh before schemathesis starts.
FUZZ_SETUP_SQL = (
    "CREATE NAMESPACE fuzz; "
    "CREATE USER TABLE fuzz.items (id BIGINT PRIMARY KEY, n INT, f DOUBLE, b BOOLEAN, "
    "t TEXT, j JSON, ts TIMESTAMP, d DATE); "
    "CREATE SHARED TABLE fuzz.rooms (name TEXT PRIMARY KEY, title TEXT NOT NULL); "
    "INSERT INTO fuzz.items (id, n, f, b, t, j, ts, d) VALUES "
    "(1, 1, 1.5, true, 'one', '{\"a\": 1}', '2024-05-06T07:08:09Z', '2024-05-06'), "
    "(2, NULL, NULL, NULL, NULL, NULL, NULL, NULL); "
    "INSERT INTO fuzz.rooms (name, title) VALUES ('lobby', 'Lobby')"
)

SQL_TYPES = ["BIGINT", "INT", "SMALLINT", "DOUBLE", "REAL", "BOOLEAN", "TEXT", "VARCHAR", "TIMESTAMP", "DATE"]

# Statements with $n placeholders; `params` are fuzzed.
WITH_PARAMS = [
    "SELECT $1",
    "SELECT $1, $2",
    "SELECT $1 + 1",
    "SELECT $1 || 'x'",
    *[f"SELECT CAST($1 AS {t})" for t in SQL_TYPES],
    "INSERT INTO fuzz.items (id, n, f, b, t, j, ts, d) VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
    "INSERT INTO fuzz.items (id, t) VALUES ($1, $2)",
    "INSERT INTO fuzz.items (id, n) VALUES ($1, $2)",
    "INSERT INTO fuzz.items (id, f) VALUES ($1, $2)",
    "INSERT INTO fuzz.items (id, b) VALUES ($1, $2)",
    "INSERT INTO fuzz.items (id, j) VALUES ($1, $2)",
    "INSERT INTO fuzz.items (id, ts) VALUES ($1, $2)",
    "INSERT INTO fuzz.items (id, d) VALUES ($1, $2)",
    "SELECT * FROM fuzz.items WHERE id = $1",
    "SELECT id, t FROM fuzz.items WHERE t = $1 OR n = $2 ORDER BY id LIMIT 3",
    "SELECT COUNT(*), MAX(ts), MIN(d), SUM(n), AVG(f) FROM fuzz.items WHERE id > $1",
    "UPDATE fuzz.items SET t = $2, n = $3 WHERE id = $1",
    "UPDATE fuzz.items SET ts = $2, d = $3 WHERE id = $1",
    "UPDATE fuzz.items SET j = $1 WHERE id IN (SELECT id FROM fuzz.items WHERE n = $2)",
    "DELETE FROM fuzz.items WHERE id = $1",
    "DELETE FROM fuzz.items WHERE id IN (SELECT id FROM fuzz.items WHERE t = $1)",
    "INSERT INTO fuzz.rooms (name, title) VALUES ($1, $2)",
    "SELECT name, title FROM fuzz.rooms WHERE name = $1",
    "UPDATE fuzz.rooms SET title = $2 WHERE name = $1",
    "SELECT name FROM system.namespaces WHERE name = $1",
    "SELECT user_id, role FROM system.users WHERE user_id = $1",
]

identifiers = st.from_regex(r"[A-Za-z_][A-Za-z0-9_]{0,70}", fullmatch=True) | st.text(max_size=12).map(
    lambda s: '"' + s.replace('"', '""') + '"'
)
texts = st.text(max_size=40) | st.sampled_from(
    ["", " ", "1", "-1", "1.5", "1e400", "NaN", "true", "null", "{}", "[1]", "{\"a\": [1, {}]}",
     "9223372036854775807", "9223372036854775808", "-9223372036854775809",
     "2024-05-06T07:08:09Z", "2024-05-06T07:08:09.123456789+14:00", "2024-02-30", "0000-01-01",
     "99999-12-31T00:00:00Z", "1970-01-01", "\u0000", "é", "😀", "'", "''", ";", "--", "$1"]
)
literals = texts.map(lambda s: "'" + s.replace("'", "''") + "'")
numbers = (
    st.integers().map(str)
    | st.floats(allow_nan=False, allow_infinity=False).map(repr)
    | st.sampled_from(["9223372036854775807", "9223372036854775808", "-9223372036854775808",
                       "1e400", "0.0000001", "-0", "2147483648"])
)
values = literals | numbers | st.sampled_from(["NULL", "TRUE", "FALSE", "NOW()", "CURRENT_USER()", "SNOWFLAKE_ID()"])

WITH_VALUES = [
    "SELECT {v}",
    "SELECT {v}, {v}",
    "SELECT CAST({v} AS {type})",
    "SELECT {v} + {v}",
    "SELECT {v} / {v}",
    "SELECT {v} % {v}",
    "INSERT INTO fuzz.items (id, t) VALUES ({v}, {v})",
    "INSERT INTO fuzz.items (id, n, f, b, t, j, ts, d) VALUES ({v}, {v}, {v}, {v}, {v}, {v}, {v}, {v})",
    "INSERT INTO fuzz.items (id, ts) VALUES ({v}, {v})",
    "UPDATE fuzz.items SET n = {v} WHERE id = {v}",
    "DELETE FROM fuzz.items WHERE t = {v}",
    "SELECT * FROM fuzz.items WHERE {ident} = {v}",
    "SELECT {ident} FROM fuzz.items",
    "SELECT * FROM fuzz.{ident}",
    "SELECT * FROM {ident}.items",
    "SELECT * FROM system.{ident}",
    "SELECT * FROM fuzz.items ORDER BY {ident} LIMIT {v}",
    "SELECT * FROM fuzz.items LIMIT {v} OFFSET {v}",
    "DESCRIBE TABLE fuzz.{ident}",
    "DESCRIBE TABLE fuzz.items HISTORY",
    "SHOW TABLES IN {ident}",
    "SHOW NAMESPACES",
    "CREATE NAMESPACE IF NOT EXISTS {ident}",
    "ALTER NAMESPACE fuzz SET OPTIONS ({ident} = {v})",
    "CREATE USER TABLE IF NOT EXISTS fuzz.{ident} (id BIGINT PRIMARY KEY, {ident} {type})",
    "CREATE SHARED TABLE IF NOT EXISTS {ident}.{ident} ({ident} {type} PRIMARY KEY)",
    "EXECUTE AS USER {v} (SELECT CURRENT_USER())",
    "EXECUTE AS USER 'root' (INSERT INTO fuzz.items (id, t) VALUES ({v}, {v}))",
    "CREATE USER IF NOT EXISTS {v} WITH PASSWORD {v} ROLE user",
]


@st.composite
def fill(draw, template: str) -> str:
    out = []
    parts = template.split("{")
    out.append(parts[0])
    for part in parts[1:]:
        name, rest = part.split("}", 1)
        strategy = {"v": values, "ident": identifiers, "type": st.sampled_from(SQL_TYPES)}[name]
        out.append(draw(strategy))
        out.append(rest)
    return "".join(out)


json_scalars = (
    st.none()
    | st.booleans()
    | st.integers()
    | st.integers(min_value=-(2**63), max_value=2**63 - 1)
    | st.floats(allow_nan=False, allow_infinity=False)
    | texts
)
json_values = st.recursive(
    json_scalars,
    lambda children: st.lists(children, max_size=3) | st.dictionaries(st.text(max_size=5), children, max_size=3),
    max_leaves=6,
)

statements = st.sampled_from(WITH_VALUES).flatmap(fill)
param_statements = st.sampled_from(WITH_PARAMS)


@st.composite
def sql_bodies(draw) -> dict:
    if draw(st.booleans()):
        sql = draw(param_statements)
        count = sql.count("$")
        # Usually the right number of parameters, sometimes not.
        size = draw(st.sampled_from([count, count, count, 0, count + 1]))
        params = draw(st.lists(json_scalars | json_values, min_size=size, max_size=size))
        body = {"sql": sql, "params": params}
    else:
        # Mostly one statement; sometimes a batch (the first failure stops it).
        size = draw(st.sampled_from([1, 1, 1, 1, 2, 3]))
        sql = "; ".join(draw(st.lists(statements, min_size=size, max_size=size)))
        body = {"sql": sql}
    if draw(st.integers(0, 9)) == 0:
        body["namespace"] = draw(st.sampled_from(["fuzz", "system", "nope"]) | identifiers)
    return body


def is_valid_body(body) -> bool:
    """Whether `body` matches the SqlRequestBody schema; when it does not, it is a
    negative test case, which must reach the server as generated."""
    if not isinstance(body, dict) or not isinstance(body.get("sql"), str):
        return False
    params = body.get("params")
    if params is not None and not (
        isinstance(params, list) and all(p is None or isinstance(p, (str, int, float, bool)) for p in params)
    ):
        return False
    namespace = body.get("namespace")
    return namespace is None or isinstance(namespace, str)


@schemathesis.hook("flatmap_body").apply_to(operation_id="executeSql")
def sql_from_templates(context, body):
    if not is_valid_body(body):
        return st.just(body)  # a deliberately invalid body (negative testing): keep it
    # One in four keeps schemathesis' own body (usually text that is not SQL).
    return st.integers(0, 3).flatmap(lambda pick: st.just(body) if pick == 0 else sql_bodies())


@schemathesis.check
def rows_match_columns(ctx, response, case):
    """Successful results: row keys are the column names in order; BIGINT values are strings."""
    if response.status_code != 200 or "/api/sql" not in case.path:
        return None
    for index, result in enumerate(response.json().get("results", [])):
        names = [column["name"] for column in result["columns"]]
        bigints = {column["name"] for column in result["columns"] if column["type"] == "BIGINT"}
        for row in result["rows"]:
            if list(row.keys()) != names:
                raise AssertionError(f"result {index}: row keys {list(row.keys())} differ from the columns {names}")
            for name in bigints:
                if row[name] is not None and not isinstance(row[name], str):
                    raise AssertionError(f"result {index}: BIGINT column {name} holds {row[name]!r}, not a string")
    return None
