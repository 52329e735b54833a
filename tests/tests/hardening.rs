//! Hardening against hostile or unlucky input, against the real server:
//!
//! - limits, exact at the boundary and leaving the server serving: expression
//!   depth (`+`, `AND`, `||` chains, OR filters in SELECT/UPDATE/DELETE, a
//!   20,000-term chain), nested `EXECUTE AS`, statements per request, SQL
//!   bytes, statement time (`STATEMENT_TIMEOUT`, earlier results kept), and
//!   over /ws the subscription SQL bytes and expression depth;
//! - a dropped and re-created user is a new identity: the old token stays
//!   dead (also over /ws and after a restart), the old rows (hot and cold)
//!   stay invisible, the old keys are free;
//! - dropping a user, changing their role or their password closes their
//!   WebSockets, and only theirs;
//! - DROP TABLE and the cleanup job never touch another table's Parquet
//!   files in a storage directory both share;
//! - storage paths cannot climb out with `..`; relative ones live in the
//!   data directory;
//! - what a plain user sees of system.jobs, users, storage_locations and
//!   live_queries;
//! - writes and reads of several clients racing constant flushes and
//!   compactions.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use futures::StreamExt;
use kalamdb_tests::ws::{Socket, connect, next, quiet, send, try_connect};
use kalamdb_tests::{MANUAL_ONLY, TestServer, parquet_files};
use serde_json::{Value, json};
use tokio_tungstenite::tungstenite::Message;

const DEPTH_VAR: &str = "KALAMDB_MAX_EXPRESSION_DEPTH";

fn message(body: &Value) -> &str {
    body["error"]["message"].as_str().unwrap_or("")
}

fn code(body: &Value) -> &str {
    body["error"]["code"].as_str().unwrap_or("")
}

/// A number or a BIGINT sent as a string.
fn as_i64(value: &Value) -> Option<i64> {
    value
        .as_i64()
        .or_else(|| value.as_str().and_then(|s| s.parse().ok()))
}

/// Rows of the first result.
fn rows(body: &Value) -> Vec<Value> {
    body["results"][0]["rows"]
        .as_array()
        .cloned()
        .unwrap_or_default()
}

/// `term op term op … term` with exactly `ops` operators.
fn chain(term: &str, op: &str, ops: usize) -> String {
    let separator = format!(" {op} ");
    vec![term; ops + 1].join(separator.as_str())
}

/// `id = 0 OR id = 1 OR …`: `terms` comparisons, 2·terms − 1 operators.
fn or_filter(terms: usize) -> String {
    (0..terms)
        .map(|i| format!("id = {i}"))
        .collect::<Vec<_>>()
        .join(" OR ")
}

fn assert_limit(status: u16, body: &Value, variable: &str, what: &str) {
    assert_eq!(status, 400, "{what}: {body}");
    assert_eq!(body["status"], "error", "{what}: {body}");
    assert_eq!(code(body), "LIMIT_EXCEEDED", "{what}: {body}");
    assert!(
        message(body).contains(variable),
        "{what}: the message must name {variable}: {body}"
    );
}

/// A server started with `env` where root has run `setup`; root's token.
/// `INSERT INTO table VALUES` the given rows in one statement.
async fn insert_rows(server: &TestServer, token: &str, table: &str, rows: Vec<String>) {
    let sql = format!("INSERT INTO {table} VALUES {}", rows.join(", "));
    server.query_ok(token, &sql).await;
}

async fn still_serving(server: &TestServer, token: &str) {
    let (status, body) = server.get("/health").await;
    assert_eq!(status, 200, "health: {body}");
    let rows = server.query_ok(token, "SELECT 1 AS one").await;
    assert_eq!(as_i64(&rows[0]["one"]), Some(1), "{rows:?}");
}

/// A request that must be answered within 30 s.
async fn sql_within_30s(server: &TestServer, token: &str, sql: &str) -> (u16, Value) {
    tokio::time::timeout(Duration::from_secs(30), server.sql(token, sql))
        .await
        .expect("an answer within 30 s")
}

/// Waits (up to `secs`) until `check` holds for the rows of `sql`.
async fn eventually(
    server: &TestServer,
    token: &str,
    sql: &str,
    secs: u64,
    check: impl Fn(&[Value]) -> bool,
) -> Vec<Value> {
    server
        .eventually(token, sql, Duration::from_secs(secs), check)
        .await
}

/// Connects, subscribes, reads `subscribed` and the initial data; returns
/// the socket and the `subscribed` message.
async fn subscribe(server: &TestServer, token: &str, id: &str, sql: &str) -> (Socket, Value) {
    let mut ws = connect(server, Some(token)).await;
    send(&mut ws, json!({"type": "subscribe", "id": id, "sql": sql})).await;
    let subscribed = next(&mut ws).await;
    assert_eq!(subscribed["type"], "subscribed", "{sql}: {subscribed}");
    let initial = next(&mut ws).await;
    assert_eq!(initial["type"], "initial_data", "{sql}: {initial}");
    (ws, subscribed)
}

async fn ping_pong(ws: &mut Socket, who: &str) {
    send(ws, json!({"type": "ping"})).await;
    assert_eq!(next(ws).await, json!({"type": "pong"}), "{who}: still open");
}

/// Asserts the server ends the connection within 5 s, with at most an
/// UNAUTHORIZED error before, and never a `change`.
async fn closed_within_5s(ws: &mut Socket, who: &str) {
    let deadline = Instant::now() + Duration::from_secs(5);
    let mut seen = Vec::new();
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        match tokio::time::timeout(left, ws.next()).await {
            Err(_) => panic!("{who}: socket still open after 5 s; got {seen:?}"),
            Ok(None) | Ok(Some(Err(_))) | Ok(Some(Ok(Message::Close(_)))) => return,
            Ok(Some(Ok(Message::Text(text)))) => {
                let value: Value = serde_json::from_str(&text).unwrap();
                assert_ne!(
                    value["type"], "change",
                    "{who}: change after the cut: {value}"
                );
                if value["type"] == "error" {
                    assert_eq!(value["code"], "UNAUTHORIZED", "{who}: {value}");
                }
                seen.push(value);
            }
            Ok(Some(Ok(_))) => {}
        }
    }
}

/// A subscribe that must be refused with LIMIT_EXCEEDED naming `variable`.
async fn subscribe_over_limit(ws: &mut Socket, id: &str, sql: &str, variable: &str) {
    send(ws, json!({"type": "subscribe", "id": id, "sql": sql})).await;
    let reply = next(ws).await;
    assert_eq!(reply["type"], "error", "{reply}");
    assert_eq!(reply["code"], "LIMIT_EXCEEDED", "{reply}");
    assert_eq!(reply["subscription_id"], id, "{reply}");
    let text = reply["message"].as_str().unwrap_or("");
    assert!(text.contains(variable), "must name {variable}: {reply}");
}

async fn live_count(server: &TestServer, token: &str) -> i64 {
    let rows = server
        .query_ok(token, "SELECT count(*) AS n FROM system.live_queries")
        .await;
    as_i64(&rows[0]["n"]).expect("count")
}

// ---------------------------------------------------------------- limits

#[tokio::test]
async fn expression_depth_limit_is_exact_and_leaves_the_server_serving() {
    let (server, root) = TestServer::prepared(
        &[],
        "CREATE NAMESPACE app; CREATE USER TABLE app.t (id BIGINT PRIMARY KEY, v TEXT)",
    )
    .await;
    let values = (0..10).map(|i| format!("({i}, 'v{i}')")).collect();
    insert_rows(&server, &root, "app.t", values).await;

    for (term, op) in [("1", "+"), ("true", "AND"), ("'a'", "||")] {
        let (status, body) = server
            .sql(&root, &format!("SELECT {} AS x", chain(term, op, 500)))
            .await;
        assert_eq!(status, 200, "500 `{op}` are allowed: {body}");
        assert_eq!(body["results"][0]["row_count"], 1, "{body}");
        let result = rows(&body);
        let x = &result[0]["x"];
        match op {
            "+" => assert_eq!(as_i64(x), Some(501), "{body}"),
            "AND" => assert_eq!(x, &json!(true), "{body}"),
            _ => assert_eq!(x.as_str().map(str::len), Some(501), "{body}"),
        }
        let (status, body) = server
            .sql(&root, &format!("SELECT {} AS x", chain(term, op, 501)))
            .await;
        assert_limit(status, &body, DEPTH_VAR, &format!("501 `{op}`"));
    }

    // An OR filter on a USER table: 250 terms are 499 operators (500 with
    // UPDATE's `SET v = 'u'`), 251 terms are 501. A refused DELETE deletes
    // nothing: the accepted one still finds all 10 rows.
    for statement in [
        "SELECT id FROM app.t WHERE",
        "UPDATE app.t SET v = 'u' WHERE",
        "DELETE FROM app.t WHERE",
    ] {
        let (status, body) = server
            .sql(&root, &format!("{statement} {}", or_filter(251)))
            .await;
        assert_limit(status, &body, DEPTH_VAR, &format!("{statement} 251 terms"));
        let (status, body) = server
            .sql(&root, &format!("{statement} {}", or_filter(250)))
            .await;
        assert_eq!(status, 200, "{statement} 250 terms: {body}");
        assert_eq!(body["results"][0]["row_count"], 10, "{statement}: {body}");
    }
    assert!(
        server
            .query_ok(&root, "SELECT id FROM app.t")
            .await
            .is_empty()
    );

    // A flat chain of 20,000 terms is refused promptly.
    let (status, body) = sql_within_30s(
        &server,
        &root,
        &format!("SELECT {}", chain("1", "+", 19_999)),
    )
    .await;
    assert_limit(status, &body, DEPTH_VAR, "20,000-term chain");
    still_serving(&server, &root).await;
}

#[tokio::test]
async fn queries_that_would_take_all_memory_are_refused() {
    let (server, _root) = TestServer::prepared(
        &[("KALAMDB_MAX_RESULT_BYTES", "1000000")],
        "CREATE NAMESPACE app; CREATE USER TABLE app.t (id BIGINT PRIMARY KEY, v TEXT);
             CREATE USER 'alice' WITH PASSWORD 'pw-a' ROLE user",
    )
    .await;
    let alice = server.token("alice", "pw-a").await;
    server
        .query_ok(&alice, "INSERT INTO app.t VALUES (1, 'a'), (2, 'b')")
        .await;
    let tables = |n: usize| {
        (0..n)
            .map(|i| format!("app.t t{i}"))
            .collect::<Vec<_>>()
            .join(", ")
    };
    // 2^40 rows of a cross join (no columns: the memory pool would not see
    // them) are refused before anything runs; so is a 66-table join.
    let (status, body) = server
        .sql(
            &alice,
            &format!("SELECT count(*) FROM {} WHERE t0.v <> 'z'", tables(40)),
        )
        .await;
    assert_eq!(status, 400, "{body}");
    assert_eq!(code(&body), "LIMIT_EXCEEDED", "{body}");
    assert!(message(&body).contains("equality condition"), "{body}");
    // The same as nested-loop joins (no equality in ON): refused too, not
    // left burning CPU past the statement timeout.
    let chain: String = (1..40)
        .map(|i| format!(" LEFT JOIN app.t t{i} ON t{i}.id <> t{}.id + 100", i - 1))
        .collect();
    let (status, body) = server
        .sql(&alice, &format!("SELECT count(*) FROM app.t t0{chain}"))
        .await;
    assert_eq!(status, 400, "{body}");
    assert!(message(&body).contains("pairs of rows"), "{body}");
    let (status, body) = server
        .sql(&alice, &format!("SELECT count(*) FROM {}", tables(66)))
        .await;
    assert_limit(status, &body, "KALAMDB_MAX_JOINS", "66 tables");
    // Small cross joins, hash joins and scalar subqueries still run.
    let rows = server
        .query_ok(
            &alice,
            &format!("SELECT count(*) AS n FROM {} WHERE t0.v <> 'z'", tables(10)),
        )
        .await;
    assert_eq!(as_i64(&rows[0]["n"]), Some(1024), "{rows:?}");
    for sql in [
        "SELECT a.id FROM app.t a, app.t b WHERE a.id = b.id AND b.v = 'b'",
        "SELECT id FROM app.t WHERE id > (SELECT avg(id) FROM app.t)",
    ] {
        let rows = server.query_ok(&alice, sql).await;
        assert_eq!(rows, vec![json!({"id": "2"})], "{sql}");
    }

    // Functions whose size an argument sets: small calls work, huge ones
    // are refused at once (also as constants, which DataFusion folds while
    // planning, and nested).
    let rows = server
        .query_ok(
            &alice,
            "SELECT repeat('ab', 3) AS r, lpad('x', 3, '-') AS p, cardinality(range(5)) AS c",
        )
        .await;
    assert_eq!(rows, vec![json!({"r": "ababab", "p": "--x", "c": "5"})]);
    for sql in [
        "SELECT length(repeat('x', 100000000))",
        "SELECT length(repeat(repeat('x', 10000), 10000))",
        "SELECT length(lpad('x', 1000000000))",
        "SELECT count(*) FROM unnest(range(100000000))",
        "SELECT cardinality(array_repeat(1, 100000000))",
        "SELECT max(length(repeat(v, 100000000))) FROM app.t",
        "SELECT cardinality(generate_series(DATE '1900-01-01', DATE '2100-01-01', INTERVAL '1 second'))",
    ] {
        let (status, body) = sql_within_30s(&server, &alice, sql).await;
        assert_eq!(status, 400, "{sql}: {body}");
        assert_eq!(code(&body), "LIMIT_EXCEEDED", "{sql}: {body}");
        assert!(message(&body).contains("would build"), "{sql}: {body}");
    }

    // A result over KALAMDB_MAX_RESULT_BYTES (1 MB here) is refused.
    let (status, body) = server
        .sql(&alice, "SELECT x FROM unnest(range(500000)) u(x)")
        .await;
    assert_limit(status, &body, "KALAMDB_MAX_RESULT_BYTES", "500,000 rows");
    let rows = server
        .query_ok(&alice, "SELECT x FROM unnest(range(500000)) u(x) LIMIT 3")
        .await;
    assert_eq!(rows.len(), 3);
    still_serving(&server, &alice).await;
}

#[tokio::test]
async fn nested_execute_as_is_refused() {
    let (server, root) =
        TestServer::prepared(&[], "CREATE USER 'alice' WITH PASSWORD 'pw-a' ROLE user").await;
    let alice_id = server.login_raw("alice", "pw-a").await.1["user_id"].clone();
    let rows = server
        .query_ok(
            &root,
            "EXECUTE AS USER 'alice' (SELECT CURRENT_USER() AS u)",
        )
        .await;
    assert_eq!(rows, vec![json!({ "u": alice_id })], "one level works");

    let (status, body) = server
        .sql(
            &root,
            "EXECUTE AS USER 'alice' (EXECUTE AS USER 'alice' (SELECT 1))",
        )
        .await;
    assert_eq!(status, 400, "{body}");
    assert_eq!(code(&body), "INVALID_SQL", "{body}");
    assert!(message(&body).to_lowercase().contains("nested"), "{body}");

    let deep = format!(
        "{}SELECT 1{}",
        "EXECUTE AS USER 'alice' (".repeat(2000),
        ")".repeat(2000)
    );
    let (status, body) = sql_within_30s(&server, &root, &deep).await;
    assert_eq!(status, 400, "2,000-deep EXECUTE AS: {body}");
    still_serving(&server, &root).await;
}

#[tokio::test]
async fn statements_per_request_are_limited_and_an_over_limit_batch_runs_nothing() {
    let (server, root) = TestServer::prepared(
        &[],
        "CREATE NAMESPACE app; CREATE USER TABLE app.t (id BIGINT PRIMARY KEY)",
    )
    .await;
    let (status, body) = server.sql(&root, &vec!["SELECT 1"; 1000].join("; ")).await;
    assert_eq!(status, 200, "1000 statements: {body}");
    assert_eq!(body["results"].as_array().map(Vec::len), Some(1000));

    let mut over = vec!["INSERT INTO app.t VALUES (1)"];
    over.extend(vec!["SELECT 1"; 1000]);
    let (status, body) = server.sql(&root, &over.join("; ")).await;
    assert_limit(status, &body, "KALAMDB_MAX_STATEMENTS", "1001 statements");
    assert!(
        body["results"].as_array().is_none_or(Vec::is_empty),
        "nothing may run: {body}"
    );
    let rows = server
        .query_ok(&root, "SELECT count(*) AS n FROM app.t")
        .await;
    assert_eq!(as_i64(&rows[0]["n"]), Some(0), "the INSERT ran: {rows:?}");
    still_serving(&server, &root).await;
}

#[tokio::test]
async fn sql_text_size_is_limited() {
    let server = TestServer::start_with(&[("KALAMDB_MAX_SQL_BYTES", "2000")]);
    let root = server.root_token().await;
    let fits = format!("SELECT '{}' AS s", "x".repeat(1985));
    assert_eq!(fits.len(), 1999);
    let (status, body) = server.sql(&root, &fits).await;
    assert_eq!(status, 200, "1999 bytes: {body}");
    assert_eq!(rows(&body)[0]["s"].as_str().map(str::len), Some(1985));

    let too_long = format!("SELECT '{}' AS s", "x".repeat(2986));
    assert_eq!(too_long.len(), 3000);
    let (status, body) = server.sql(&root, &too_long).await;
    assert_limit(status, &body, "KALAMDB_MAX_SQL_BYTES", "3000 bytes");
    still_serving(&server, &root).await;
}

#[tokio::test]
async fn a_slow_statement_times_out_and_earlier_results_are_kept() {
    let (server, root) = TestServer::prepared(
        &[("KALAMDB_STATEMENT_TIMEOUT_MS", "1500")],
        "CREATE NAMESPACE app; CREATE USER TABLE app.big (id INT PRIMARY KEY)",
    )
    .await;
    let values = (0..1000).map(|i| format!("({i})")).collect();
    insert_rows(&server, &root, "app.big", values).await;
    let rows = server
        .query_ok(&root, "SELECT count(*) AS n FROM app.big")
        .await;
    assert_eq!(as_i64(&rows[0]["n"]), Some(1000));

    let (status, body) = sql_within_30s(
        &server,
        &root,
        // Hash joins on a key every row shares, and a filter on every one
        // of the 10^9 combined rows: streamed, so the timeout can stop it.
        "SELECT 41 + 1 AS answer; SELECT count(*) FROM app.big a JOIN app.big b ON a.id % 1 = b.id % 1 JOIN app.big c ON b.id % 1 = c.id % 1 WHERE a.id + b.id + c.id = -1",
    )
    .await;
    assert_eq!(status, 400, "{body}");
    assert_eq!(code(&body), "STATEMENT_TIMEOUT", "{body}");
    assert!(
        message(&body).contains("KALAMDB_STATEMENT_TIMEOUT_MS"),
        "{body}"
    );
    let results = body["results"].as_array().cloned().unwrap_or_default();
    assert_eq!(results.len(), 1, "the first statement's result: {body}");
    assert_eq!(as_i64(&results[0]["rows"][0]["answer"]), Some(42), "{body}");
    still_serving(&server, &root).await;
}

#[tokio::test]
async fn subscription_limits_over_websocket() {
    let (server, _root) = TestServer::prepared(
        &[],
        "CREATE NAMESPACE app; CREATE USER TABLE app.m (id BIGINT PRIMARY KEY, body TEXT);
             CREATE USER 'alice' WITH PASSWORD 'pw-a' ROLE user",
    )
    .await;
    let alice = server.token("alice", "pw-a").await;
    server
        .query_ok(
            &alice,
            "INSERT INTO app.m VALUES (3, 'three'), (900, 'far')",
        )
        .await;
    let mut ws = connect(&server, Some(&alice)).await;

    // 70,000 bytes of subscription SQL.
    let prefix = "SELECT id, body FROM app.m WHERE body = '";
    let long = format!("{prefix}{}'", "x".repeat(70_000 - prefix.len() - 1));
    assert_eq!(long.len(), 70_000);
    subscribe_over_limit(&mut ws, "long", &long, "KALAMDB_MAX_SUBSCRIBE_SQL_BYTES").await;
    assert_eq!(live_count(&server, &alice).await, 0);
    // 5 MB: still an error naming the limit, never stored.
    let huge = format!("{prefix}{}'", "x".repeat(5_000_000));
    subscribe_over_limit(&mut ws, "huge", &huge, "KALAMDB_MAX_SUBSCRIBE_SQL_BYTES").await;
    assert_eq!(live_count(&server, &alice).await, 0);

    // 251 OR terms: too deep; the connection stays.
    let sql = format!("SELECT id, body FROM app.m WHERE {}", or_filter(251));
    subscribe_over_limit(&mut ws, "deep", &sql, DEPTH_VAR).await;
    ping_pong(&mut ws, "after LIMIT_EXCEEDED").await;
    assert_eq!(live_count(&server, &alice).await, 0);

    // 250 OR terms: accepted and live.
    let sql = format!("SELECT id, body FROM app.m WHERE {}", or_filter(250));
    send(
        &mut ws,
        json!({"type": "subscribe", "id": "wide", "sql": sql}),
    )
    .await;
    let subscribed = next(&mut ws).await;
    assert_eq!(subscribed["type"], "subscribed", "{subscribed}");
    let initial = next(&mut ws).await;
    assert_eq!(initial["type"], "initial_data", "{initial}");
    assert_eq!(initial["rows"], json!([{"id": "3", "body": "three"}]));
    server
        .query_ok(&alice, "INSERT INTO app.m VALUES (7, 'seven'), (901, 'no')")
        .await;
    let change = next(&mut ws).await;
    assert_eq!(change["type"], "change", "{change}");
    assert_eq!(change["subscription_id"], "wide");
    assert_eq!(change["rows"], json!([{"id": "7", "body": "seven"}]));
    quiet(&mut ws).await;
    assert_eq!(live_count(&server, &alice).await, 1);
}

// ------------------------------------------------------------ identities

#[tokio::test]
async fn a_dropped_and_recreated_user_is_a_new_identity() {
    let (server, root) = TestServer::prepared(
        &MANUAL_ONLY,
        "CREATE NAMESPACE app; CREATE USER TABLE app.notes (id BIGINT PRIMARY KEY, body TEXT);
             CREATE USER 'alice' WITH PASSWORD 'pw-a' ROLE user",
    )
    .await;
    let (status, login) = server.login_raw("alice", "pw-a").await;
    assert_eq!(status, 200, "{login}");
    let t1 = login["access_token"].as_str().unwrap().to_string();
    let u1 = login["user_id"].as_str().unwrap().to_string();
    server
        .query_ok(
            &t1,
            "INSERT INTO app.notes VALUES (1, 'old-1'), (2, 'old-2'), (3, 'old-3')",
        )
        .await;
    server.run_job(&root, "FLUSH TABLE app.notes").await;
    server
        .query_ok(
            &t1,
            "INSERT INTO app.notes VALUES (4, 'old-4'), (5, 'old-5')",
        )
        .await;
    assert_eq!(
        server.query_ok(&t1, "SELECT id FROM app.notes").await.len(),
        5
    );

    server.query_ok(&root, "DROP USER 'alice'").await;
    let (status, body) = server.sql(&t1, "SELECT 1").await;
    assert_eq!(status, 401, "token of a dropped user: {body}");
    assert_eq!(server.login_raw("alice", "pw-a").await.0, 401);

    // Same name, higher role: the old token must not come back to life.
    server
        .query_ok(&root, "CREATE USER 'alice' WITH PASSWORD 'other' ROLE dba")
        .await;
    for sql in [
        "SELECT 1",
        "SELECT * FROM app.notes",
        "SELECT * FROM system.users",
        "CREATE NAMESPACE stolen",
    ] {
        let (status, body) = server.sql(&t1, sql).await;
        assert_eq!(status, 401, "old token after re-creation, {sql}: {body}");
    }

    let (status, login) = server.login_raw("alice", "other").await;
    assert_eq!(status, 200, "{login}");
    assert_eq!(login["role"], "dba", "{login}");
    let t2 = login["access_token"].as_str().unwrap().to_string();
    let u2 = login["user_id"].as_str().unwrap().to_string();
    assert_ne!(u1, u2, "a re-created user needs a new id");

    assert!(
        server
            .query_ok(&t2, "SELECT * FROM app.notes")
            .await
            .is_empty(),
        "the new alice sees the old alice's rows"
    );
    let rows = server.query_ok(&t2, "SELECT CURRENT_USER() AS u").await;
    assert_eq!(rows, vec![json!({"u": u2})]);
    let (status, body) = server
        .sql(&t2, "INSERT INTO app.notes VALUES (1, 'new-1')")
        .await;
    assert_eq!(
        status, 200,
        "the old alice's key is not a duplicate: {body}"
    );

    let users = server
        .query_ok(
            &root,
            "SELECT user_id, deleted_at FROM system.users WHERE username = 'alice'",
        )
        .await;
    assert_eq!(users.len(), 2, "{users:?}");
    let dropped: Vec<&Value> = users
        .iter()
        .filter(|u| !u["deleted_at"].is_null())
        .collect();
    let active: Vec<&Value> = users.iter().filter(|u| u["deleted_at"].is_null()).collect();
    assert_eq!(dropped.len(), 1, "{users:?}");
    assert_eq!(dropped[0]["user_id"], u1.as_str(), "{users:?}");
    assert_eq!(active.len(), 1, "{users:?}");
    assert_eq!(active[0]["user_id"], u2.as_str(), "{users:?}");

    // The old token cannot open a WebSocket either way.
    assert!(
        try_connect(&server, Some(&t1)).await.is_err(),
        "header with the old token must not upgrade"
    );
    let mut ws = connect(&server, None).await;
    send(&mut ws, json!({"type": "authenticate", "token": t1})).await;
    let reply = next(&mut ws).await;
    assert_eq!(reply["type"], "error", "{reply}");
    assert_eq!(reply["code"], "UNAUTHORIZED", "{reply}");

    // Through the cold tier, and after a restart.
    server.run_job(&root, "FLUSH TABLE app.notes").await;
    let expected = vec![json!({"id": "1", "body": "new-1"})];
    assert_eq!(
        server
            .query_ok(&t2, "SELECT id, body FROM app.notes ORDER BY id")
            .await,
        expected
    );
    let server = server.restart();
    let t2 = server.token("alice", "other").await;
    assert_eq!(
        server
            .query_ok(&t2, "SELECT id, body FROM app.notes ORDER BY id")
            .await,
        expected,
        "after restart"
    );
    let (status, body) = server.sql(&t1, "SELECT 1").await;
    assert_eq!(status, 401, "old token after restart: {body}");
    assert!(try_connect(&server, Some(&t1)).await.is_err());
}

#[tokio::test]
async fn dropping_a_user_or_changing_role_or_password_closes_their_sockets() {
    let (server, root) = TestServer::prepared(
        &[],
        "CREATE NAMESPACE app; CREATE USER TABLE app.m (id BIGINT PRIMARY KEY, body TEXT);
             CREATE USER 'alice' WITH PASSWORD 'pw-a' ROLE user;
             CREATE USER 'bob' WITH PASSWORD 'pw-b' ROLE user;
             CREATE USER 'carol' WITH PASSWORD 'pw-c' ROLE user",
    )
    .await;
    let sql = "SELECT id, body FROM app.m";
    let alice = server.token("alice", "pw-a").await;
    let bob = server.token("bob", "pw-b").await;
    let carol = server.token("carol", "pw-c").await;
    let (mut alice_ws, _) = subscribe(&server, &alice, "s", sql).await;
    let (mut bob_ws, _) = subscribe(&server, &bob, "s", sql).await;
    let (mut carol_ws, _) = subscribe(&server, &carol, "s", sql).await;

    server.query_ok(&root, "DROP USER 'alice'").await;
    closed_within_5s(&mut alice_ws, "alice after DROP USER").await;
    ping_pong(&mut bob_ws, "bob after alice's drop").await;

    server
        .query_ok(&root, "ALTER USER 'bob' SET ROLE service")
        .await;
    closed_within_5s(&mut bob_ws, "bob after SET ROLE").await;
    ping_pong(&mut carol_ws, "carol after bob's role change").await;

    server
        .query_ok(&root, "ALTER USER 'carol' SET PASSWORD 'new'")
        .await;
    closed_within_5s(&mut carol_ws, "carol after SET PASSWORD").await;

    // Bob logs in again with his new role and subscribes.
    let (status, login) = server.login_raw("bob", "pw-b").await;
    assert_eq!(status, 200, "{login}");
    assert_eq!(login["role"], "service", "{login}");
    let bob = login["access_token"].as_str().unwrap().to_string();
    let (mut bob_ws, _) = subscribe(&server, &bob, "again", sql).await;
    server
        .query_ok(&bob, "INSERT INTO app.m VALUES (1, 'bob again')")
        .await;
    let change = next(&mut bob_ws).await;
    assert_eq!(change["type"], "change", "{change}");
    assert_eq!(change["rows"], json!([{"id": "1", "body": "bob again"}]));

    // Carol only with the new password; alice not at all.
    assert_eq!(server.login_raw("carol", "pw-c").await.0, 401);
    let carol = server.token("carol", "new").await;
    subscribe(&server, &carol, "again", sql).await;
    assert_eq!(server.login_raw("alice", "pw-a").await.0, 401);
}

// --------------------------------------------------------------- storage

async fn completed_cleanups(server: &TestServer, root: &str) -> i64 {
    let rows = server
        .query_ok(
            root,
            "SELECT count(*) AS n FROM system.jobs WHERE job_type = 'cleanup' AND status = 'completed'",
        )
        .await;
    as_i64(&rows[0]["n"]).expect("count")
}

/// Waits until at least `more` further cleanup jobs have completed.
async fn wait_for_cleanups(server: &TestServer, root: &str, more: i64) {
    let start = completed_cleanups(server, root).await;
    let deadline = Instant::now() + Duration::from_secs(30);
    while completed_cleanups(server, root).await < start + more {
        assert!(Instant::now() < deadline, "no cleanup job completed");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

#[tokio::test]
async fn drop_table_and_cleanup_leave_a_table_sharing_the_directory_alone() {
    let mut env = MANUAL_ONLY.to_vec();
    env.push(("KALAMDB_CLEANUP_INTERVAL_SECS", "1"));
    let server = TestServer::start_with(&env);
    let root = server.root_token().await;
    let shared = tempfile::tempdir().unwrap();
    // No ${namespace}: n1.coll and n2.coll write into the same directories.
    let template = format!("{}/${{table}}/${{user_id}}", shared.path().display());
    server
        .query_ok(
            &root,
            &format!("CREATE STORAGE shared_tpl TYPE filesystem PATH '{template}'"),
        )
        .await;
    server
        .query_ok(
            &root,
            "CREATE NAMESPACE n1; CREATE NAMESPACE n2;
             CREATE USER TABLE n1.coll (id INT PRIMARY KEY, v TEXT) LOCATION REFERENCE 'shared_tpl';
             CREATE USER TABLE n2.coll (id INT PRIMARY KEY, v TEXT) LOCATION REFERENCE 'shared_tpl';
             CREATE USER 'alice' WITH PASSWORD 'pw-a' ROLE user",
        )
        .await;
    let alice = server.token("alice", "pw-a").await;
    server
        .query_ok(
            &alice,
            "INSERT INTO n1.coll VALUES (1, 'one-1'), (2, 'one-2');
             INSERT INTO n2.coll VALUES (1, 'two-1'), (2, 'two-2'), (3, 'two-3')",
        )
        .await;
    let coll = shared.path().join("coll");
    server.run_job(&root, "FLUSH TABLE n1.coll").await;
    let n1_files = parquet_files(&coll);
    assert!(
        !n1_files.is_empty(),
        "n1.coll flushed nothing under {coll:?}"
    );
    server.run_job(&root, "FLUSH TABLE n2.coll").await;
    let n2_files: Vec<PathBuf> = parquet_files(&coll)
        .into_iter()
        .filter(|f| !n1_files.contains(f))
        .collect();
    assert!(!n2_files.is_empty(), "n2.coll flushed nothing new");
    assert_eq!(
        n1_files[0].parent(),
        n2_files[0].parent(),
        "the two tables must share a directory for this test to mean anything"
    );

    let n1_rows = vec![
        json!({"id": 1, "v": "one-1"}),
        json!({"id": 2, "v": "one-2"}),
    ];
    let n2_rows = vec![
        json!({"id": 1, "v": "two-1"}),
        json!({"id": 2, "v": "two-2"}),
        json!({"id": 3, "v": "two-3"}),
    ];
    let n1_sql = "SELECT id, v FROM n1.coll ORDER BY id";
    let n2_sql = "SELECT id, v FROM n2.coll ORDER BY id";
    // Cleanup of either table leaves the other's files alone.
    wait_for_cleanups(&server, &root, 2).await;
    assert_eq!(server.query_ok(&alice, n1_sql).await, n1_rows);
    assert_eq!(server.query_ok(&alice, n2_sql).await, n2_rows);
    for file in n1_files.iter().chain(&n2_files) {
        assert!(file.exists(), "{file:?} removed before any drop");
    }

    server.query_ok(&root, "DROP TABLE n1.coll").await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    let (status, body) = server.sql(&alice, n2_sql).await;
    assert_eq!(status, 200, "n2.coll after dropping n1.coll: {body}");
    assert_eq!(rows(&body), n2_rows, "{body}");
    for file in &n2_files {
        assert!(file.exists(), "dropping n1.coll removed n2.coll's {file:?}");
    }
    let (status, body) = server.sql(&alice, n1_sql).await;
    assert_eq!(status, 400, "n1.coll is gone: {body}");

    wait_for_cleanups(&server, &root, 2).await;
    assert_eq!(
        server.query_ok(&alice, n2_sql).await,
        n2_rows,
        "after cleanup"
    );
    for file in &n2_files {
        assert!(file.exists(), "cleanup removed n2.coll's {file:?}");
    }
}

#[tokio::test]
async fn storage_paths_cannot_climb_out_and_relative_ones_live_in_the_data_dir() {
    let server = TestServer::start_with(&MANUAL_ONLY);
    let root = server.root_token().await;
    let (status, body) = server
        .sql(
            &root,
            "CREATE STORAGE esc TYPE filesystem PATH '../../escape'",
        )
        .await;
    assert_eq!(status, 400, "{body}");
    assert!(message(&body).contains(".."), "{body}");
    let (status, body) = server
        .sql(
            &root,
            "CREATE STORAGE esc2 TYPE filesystem PATH '/tmp/a/../b'",
        )
        .await;
    assert_eq!(status, 400, "{body}");
    let names = server
        .query_ok(&root, "SELECT location_name FROM system.storage_locations")
        .await;
    assert!(
        !names
            .iter()
            .any(|n| n["location_name"] == "esc" || n["location_name"] == "esc2"),
        "refused locations were recorded: {names:?}"
    );

    server
        .query_ok(&root, "CREATE STORAGE rel TYPE filesystem PATH 'relstore'")
        .await;
    let rows = server
        .query_ok(
            &root,
            "SELECT path FROM system.storage_locations WHERE location_name = 'rel'",
        )
        .await;
    let path = PathBuf::from(rows[0]["path"].as_str().expect("path"));
    assert!(path.is_absolute(), "{path:?}");
    let data_dir = server.data_dir();
    let canonical = data_dir.canonicalize().unwrap();
    assert!(
        path.starts_with(&data_dir) || path.starts_with(&canonical),
        "{path:?} is not under {data_dir:?}"
    );
    assert!(path.is_dir(), "{path:?} does not exist");

    // And flushes land there.
    server
        .query_ok(
            &root,
            "CREATE NAMESPACE app; CREATE USER TABLE app.r (id INT PRIMARY KEY) LOCATION REFERENCE 'rel';
             INSERT INTO app.r VALUES (1), (2)",
        )
        .await;
    server.run_job(&root, "FLUSH TABLE app.r").await;
    assert!(
        !parquet_files(&path).is_empty(),
        "no Parquet under {path:?}"
    );
}

// ---------------------------------------------------------- system tables

#[tokio::test]
async fn a_plain_user_sees_only_their_own_rows_of_system_tables() {
    let (server, root) = TestServer::prepared(
        &MANUAL_ONLY,
        "CREATE NAMESPACE app;
             CREATE USER TABLE app.t (id BIGINT PRIMARY KEY, v TEXT) FLUSH POLICY ROWS 2;
             CREATE USER 'alice' WITH PASSWORD 'pw-a' ROLE user;
             CREATE USER 'bob' WITH PASSWORD 'pw-b' ROLE user",
    )
    .await;
    let alice = server.token("alice", "pw-a").await;
    let bob = server.token("bob", "pw-b").await;
    let (_alice_ws, subscribed) = subscribe(&server, &alice, "watch", "SELECT * FROM app.t").await;
    let live_id = subscribed["live_id"].as_str().unwrap().to_string();
    server
        .query_ok(
            &alice,
            "INSERT INTO app.t VALUES (1, 'a'), (2, 'b'), (3, 'c'), (4, 'd'), (5, 'e')",
        )
        .await;
    eventually(
        &server,
        &root,
        "SELECT parameters FROM system.jobs WHERE job_type = 'flush' AND status = 'completed'",
        30,
        |rows| {
            rows.iter().any(|r| {
                r["parameters"]
                    .as_str()
                    .unwrap_or("")
                    .contains("user:alice")
            })
        },
    )
    .await;

    // A whole-table flush: a job every user may see.
    server.run_job(&root, "FLUSH TABLE app.t").await;
    let (status, body) = server
        .sql(&bob, "SELECT job_id, parameters FROM system.jobs")
        .await;
    assert_eq!(status, 200, "{body}");
    assert!(
        !body.to_string().contains("alice"),
        "bob sees alice's jobs: {body}"
    );
    assert!(
        rows(&body).iter().any(|r| r["parameters"]
            .as_str()
            .is_some_and(|p| p.contains("manual"))),
        "bob sees the whole-table job: {body}"
    );
    let own = server
        .query_ok(&alice, "SELECT parameters FROM system.jobs")
        .await;
    assert!(
        own.iter().any(|r| r["parameters"]
            .as_str()
            .is_some_and(|p| p.contains("user:alice"))),
        "alice sees the jobs of her own partition: {own:?}"
    );
    let (status, body) = server.sql(&root, "SELECT * FROM system.jobs").await;
    assert_eq!(status, 200, "{body}");
    assert!(
        body.to_string().contains("alice"),
        "root sees all jobs: {body}"
    );

    let (status, body) = server.sql(&bob, "SELECT * FROM system.users").await;
    assert_eq!(status, 200, "{body}");
    let users = rows(&body);
    assert_eq!(users.len(), 1, "{body}");
    assert_eq!(users[0]["username"], "bob", "{body}");

    let (status, body) = server
        .sql(&bob, "SELECT * FROM system.storage_locations")
        .await;
    assert_eq!(status, 200, "{body}");
    assert!(rows(&body).is_empty(), "{body}");
    let locations = server
        .query_ok(&root, "SELECT * FROM system.storage_locations")
        .await;
    assert!(!locations.is_empty(), "root sees storage locations");

    let (status, body) = server.sql(&bob, "SELECT * FROM system.live_queries").await;
    assert_eq!(status, 200, "{body}");
    assert!(
        !body.to_string().contains(&live_id) && !body.to_string().contains("alice"),
        "bob sees alice's subscription: {body}"
    );
    let (status, body) = server.sql(&root, "SELECT * FROM system.live_queries").await;
    assert_eq!(status, 200, "{body}");
    assert!(body.to_string().contains(&live_id), "{body}");
    let mine = server
        .query_ok(&alice, "SELECT live_id FROM system.live_queries")
        .await;
    assert_eq!(mine, vec![json!({"live_id": live_id})]);
}

// ----------------------------------------------------------- compaction race

const ITERATIONS: i64 = 300;
const SPAN: i64 = 1_000_000;

#[derive(Default)]
struct Tally {
    inserted: usize,
    deleted: usize,
    /// Live ids and their expected `n`.
    live: BTreeMap<i64, i64>,
    problems: Vec<String>,
}

struct Racer {
    client: reqwest::Client,
    url: String,
    token: String,
    who: String,
    lo: i64,
}

impl Racer {
    /// Runs one statement (30 s at most); a non-200 answer is recorded.
    async fn run(&self, sql: &str, problems: &mut Vec<String>) -> Option<Value> {
        let sent = self
            .client
            .post(&self.url)
            .bearer_auth(&self.token)
            .timeout(Duration::from_secs(30))
            .json(&json!({ "sql": sql }))
            .send()
            .await;
        match sent {
            Ok(response) => match kalamdb_tests::read(response).await {
                (200, body) => return Some(body),
                (status, body) => problems.push(format!("{}: {sql} -> {status} {body}", self.who)),
            },
            Err(e) => problems.push(format!("{}: {sql} -> {e}", self.who)),
        }
        None
    }

    /// Runs a write; true if it answered 200 and affected `rows` rows.
    async fn write(&self, sql: &str, rows: i64, problems: &mut Vec<String>) -> bool {
        let Some(body) = self.run(sql, problems).await else {
            return false;
        };
        let ok = as_i64(&body["results"][0]["row_count"]) == Some(rows);
        if !ok {
            problems.push(format!("{}: {sql} should affect {rows}: {body}", self.who));
        }
        ok
    }

    /// Runs a query; records it unless `column` of its rows equals `want`.
    async fn read(&self, sql: &str, column: &str, want: Vec<i64>, problems: &mut Vec<String>) {
        let Some(body) = self.run(sql, problems).await else {
            return;
        };
        let got: Vec<Option<i64>> = rows(&body).iter().map(|r| as_i64(&r[column])).collect();
        if got != want.iter().copied().map(Some).collect::<Vec<_>>() {
            problems.push(format!("{}: {sql} should give {want:?}: {body}", self.who));
        }
    }

    /// Inserts, updates, deletes and reads its own id range until
    /// ITERATIONS or the deadline; checks every answer against its model.
    async fn churn(self, deadline: Instant) -> Tally {
        let mut t = Tally::default();
        let lo = self.lo;
        for i in 0..ITERATIONS {
            if Instant::now() > deadline {
                break;
            }
            let id = lo + i;
            let sql = format!("INSERT INTO app.c VALUES ({id}, 0)");
            if self.write(&sql, 1, &mut t.problems).await {
                t.inserted += 1;
                t.live.insert(id, 0);
            }
            let target = lo + i / 2;
            let hits = i64::from(t.live.contains_key(&target));
            let sql = format!("UPDATE app.c SET n = n + 1 WHERE id = {target}");
            if self.write(&sql, hits, &mut t.problems).await
                && let Some(n) = t.live.get_mut(&target)
            {
                *n += 1;
            }
            let victim = lo + i - 3;
            let sql = format!("DELETE FROM app.c WHERE id = {victim}");
            if i >= 3 && i % 3 == 0 && self.write(&sql, 1, &mut t.problems).await {
                t.deleted += 1;
                t.live.remove(&victim);
            }
            let sql = format!(
                "SELECT count(*) AS k FROM app.c WHERE id >= {lo} AND id < {}",
                lo + SPAN
            );
            let count = t.live.len() as i64;
            self.read(&sql, "k", vec![count], &mut t.problems).await;
            let x = lo + i / 3;
            let want: Vec<i64> = t.live.get(&x).copied().into_iter().collect();
            let sql = format!("SELECT * FROM app.c WHERE id = {x}");
            self.read(&sql, "n", want, &mut t.problems).await;
        }
        t
    }
}

#[tokio::test]
async fn writes_and_reads_race_constant_flushes_and_compactions() {
    let env = [
        ("KALAMDB_FLUSH_ROWS", "0"),
        ("KALAMDB_FLUSH_INTERVAL_SECS", "0"),
        ("KALAMDB_COMPACT_MIN_FILES", "2"),
    ];
    let (server, root) = TestServer::prepared(
        &env,
        "CREATE NAMESPACE app;
             CREATE USER TABLE app.c (id BIGINT PRIMARY KEY, n BIGINT) FLUSH POLICY ROWS 4;
             CREATE USER 'alice' WITH PASSWORD 'pw-a' ROLE user;
             CREATE USER 'bob' WITH PASSWORD 'pw-b' ROLE user",
    )
    .await;
    let alice = server.token("alice", "pw-a").await;
    let bob = server.token("bob", "pw-b").await;
    let deadline = Instant::now() + Duration::from_secs(60);
    // Two racers in alice's partition (disjoint id ranges), one in bob's.
    let racers = [
        ("alice-0", &alice, 0),
        ("alice-1", &alice, SPAN),
        ("bob-0", &bob, 0),
    ];
    let mut tasks = Vec::new();
    for (who, token, lo) in racers {
        let racer = Racer {
            client: server.client.clone(),
            url: server.url("/api/sql"),
            token: token.clone(),
            who: who.to_string(),
            lo,
        };
        tasks.push(tokio::spawn(racer.churn(deadline)));
    }
    let mut tallies = Vec::new();
    for task in tasks {
        tallies.push(task.await.expect("racer task"));
    }
    let problems: Vec<&String> = tallies.iter().flat_map(|t| &t.problems).collect();
    assert!(
        problems.is_empty(),
        "{} problems: {problems:#?}",
        problems.len()
    );

    for ((who, token, lo), t) in racers.iter().zip(&tallies) {
        assert!(t.inserted >= 20, "{who} made only {} inserts", t.inserted);
        let rows = server
            .query_ok(
                token,
                &format!(
                    "SELECT id, n FROM app.c WHERE id >= {lo} AND id < {} ORDER BY id",
                    lo + SPAN
                ),
            )
            .await;
        assert_eq!(
            rows.len(),
            t.inserted - t.deleted,
            "{who}: rows = inserts − deletes"
        );
        let stored: BTreeMap<i64, i64> = rows
            .iter()
            .map(|r| (as_i64(&r["id"]).unwrap(), as_i64(&r["n"]).unwrap()))
            .collect();
        assert_eq!(stored, t.live, "{who}: every row and update kept");
    }

    // The race really happened: compactions ran, and no job failed.
    eventually(
        &server,
        &root,
        "SELECT job_id FROM system.jobs WHERE job_type = 'compact' AND status = 'completed'",
        60,
        |rows| !rows.is_empty(),
    )
    .await;
    let failed = server
        .query_ok(
            &root,
            "SELECT job_id, job_type, error_message FROM system.jobs WHERE status = 'failed'",
        )
        .await;
    assert!(failed.is_empty(), "{failed:?}");
}

#[tokio::test]
async fn a_second_server_on_the_same_data_directory_is_refused() {
    let server = TestServer::start();
    let output = std::process::Command::new(kalamdb_tests::server_binary())
        .env("KALAMDB_DATA_DIR", server.data_dir())
        .env("KALAMDB_LISTEN", "127.0.0.1:0")
        .env("KALAMDB_PG_LISTEN", "off")
        .output()
        .expect("run a second server");
    assert!(!output.status.success(), "the second server must exit");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains("is in use by another KalamDB server"),
        "{stderr}"
    );
    // The first one is untouched.
    let root = server.root_token().await;
    still_serving(&server, &root).await;
}
