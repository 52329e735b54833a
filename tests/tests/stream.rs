//! STREAM tables against the real server: DDL and bad input, per-user
//! isolation, retention, max_buffer, ephemeral events, live delivery and
//! resume (within and beyond what is retained), DROP with a live
//! subscription, and what survives a clean stop and a crash.

use std::time::Duration;

use kalamdb_tests::TestServer;
use kalamdb_tests::ws::{Socket, connect, next, send};
use serde_json::{Value, json};

async fn setup(options: &str) -> (TestServer, String, String, String) {
    let (server, root) = TestServer::prepared(
        &[],
        &format!(
            "CREATE NAMESPACE app;
             CREATE STREAM TABLE app.typing (room TEXT NOT NULL, state TEXT) WITH ({options});
             CREATE USER 'alice' WITH PASSWORD 'pw-a' ROLE user;
             CREATE USER 'bob' WITH PASSWORD 'pw-b' ROLE user;
             CREATE USER 'agent' WITH PASSWORD 'pw-s' ROLE service"
        ),
    )
    .await;
    let alice = server.token("alice", "pw-a").await;
    let bob = server.token("bob", "pw-b").await;
    (server, root, alice, bob)
}

fn message(body: &Value) -> String {
    body["error"]["message"]
        .as_str()
        .unwrap_or_default()
        .to_string()
}

fn states(rows: &[Value]) -> Vec<String> {
    rows.iter()
        .map(|r| r["state"].as_str().unwrap_or_default().to_string())
        .collect()
}

/// Inserts one event per state into the caller's stream, one statement each.
async fn insert_states(server: &TestServer, token: &str, states: impl IntoIterator<Item = String>) {
    for state in states {
        server
            .query_ok(
                token,
                &format!("INSERT INTO app.typing (room, state) VALUES ('r', '{state}')"),
            )
            .await;
    }
}

async fn subscribe(socket: &mut Socket, options: Value) -> Value {
    send(
        socket,
        json!({"type": "subscribe", "id": "s", "sql": "SELECT room, state FROM app.typing", "options": options}),
    )
    .await;
    next(socket).await
}

#[tokio::test]
async fn ddl_options_and_bad_input() {
    let (server, root, alice, _) = setup("retention = '1 hour', max_buffer = 50").await;
    let rows = server
        .query_ok(
            &root,
            "SELECT table_type, options FROM system.tables WHERE table_id = 'app.typing'",
        )
        .await;
    assert_eq!(rows[0]["table_type"], "STREAM");
    let options: Value = serde_json::from_str(rows[0]["options"].as_str().unwrap()).unwrap();
    assert_eq!(
        options,
        json!({"retention_secs": 3600, "ephemeral": false, "max_buffer": 50})
    );
    let (status, body) = server.sql(&root, "DESCRIBE TABLE app.typing").await;
    assert_eq!(status, 200);
    let result = &body["results"][0];
    let columns: Vec<&str> = result["rows"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["column_name"].as_str().unwrap())
        .collect();
    assert_eq!(
        columns,
        ["id", "room", "state", "_seq"],
        "no _updated or _deleted"
    );
    assert!(
        result["message"]
            .as_str()
            .unwrap()
            .contains("retention 3600 s"),
        "{body}"
    );

    for (sql, needle) in [
        (
            "CREATE STREAM TABLE app.s (a TEXT)",
            "needs WITH (retention",
        ),
        (
            "CREATE STREAM TABLE app.s (a TEXT) WITH (retention = '10 parsecs')",
            "invalid retention '10 parsecs'",
        ),
        (
            "CREATE STREAM TABLE app.s (a TEXT) WITH (retention = '1s', max_buffer = 0)",
            "max_buffer",
        ),
        (
            "CREATE STREAM TABLE app.s (a TEXT) WITH (retention = '1s', max_buffer = -5)",
            "max_buffer",
        ),
        (
            "CREATE STREAM TABLE app.s (a TEXT) WITH (retention = '1s', colour = 'red')",
            "unknown STREAM table option colour",
        ),
        (
            "CREATE STREAM TABLE app.s (a TEXT) WITH (retention = '1s') FLUSH POLICY ROWS 10",
            "FLUSH POLICY does not apply to a STREAM table",
        ),
        (
            "CREATE STREAM TABLE app.s (a TEXT) WITH (retention = '1s') DELETED RETENTION '1 day'",
            "DELETED RETENTION does not apply",
        ),
        (
            "CREATE STREAM TABLE app.s (_a TEXT) WITH (retention = '1s')",
            "_a",
        ),
        (
            "CREATE USER TABLE app.u (a TEXT) WITH (retention = '1s')",
            "STREAM tables only",
        ),
        ("FLUSH TABLE app.typing", "never flushed"),
        (
            "ALTER TABLE app.typing ADD COLUMN mood TEXT",
            "schema of stream table app.typing cannot be altered",
        ),
        (
            "UPDATE app.typing SET state = 'x'",
            "cannot be updated or deleted",
        ),
        ("DELETE FROM app.typing", "cannot be updated or deleted"),
    ] {
        let (status, body) = server.sql(&root, sql).await;
        assert_eq!(status, 400, "{sql}: {body}");
        assert!(message(&body).contains(needle), "{sql}: {body}");
    }
    // A 1 MB event: refused with the setting named; the server goes on.
    let (status, body) = server
        .sql(
            &alice,
            "INSERT INTO app.typing (room, state) VALUES ('r', repeat('x', 1000000))",
        )
        .await;
    assert_eq!(status, 400, "{body}");
    assert_eq!(body["error"]["code"], "LIMIT_EXCEEDED");
    assert!(message(&body).contains("KALAMDB_MAX_STREAM_EVENT_BYTES"));
    server
        .query_ok(&alice, "INSERT INTO app.typing (room) VALUES ('r')")
        .await;
}

#[tokio::test]
async fn each_user_sees_only_their_own_stream() {
    let (server, root, alice, bob) = setup("retention = '1 hour'").await;
    let agent = server.token("agent", "pw-s").await;
    server
        .query_ok(
            &alice,
            "INSERT INTO app.typing (room, state) VALUES ('r1', 'alice typing')",
        )
        .await;
    server
        .query_ok(
            &bob,
            "INSERT INTO app.typing (room, state) VALUES ('r1', 'bob typing')",
        )
        .await;
    // A service streams into alice's partition only.
    server
        .query_ok(
            &agent,
            "EXECUTE AS USER 'alice' (INSERT INTO app.typing (room, state) VALUES ('r1', 'token'))",
        )
        .await;
    let mine = server
        .query_ok(&alice, "SELECT state FROM app.typing ORDER BY _seq")
        .await;
    assert_eq!(states(&mine), ["alice typing", "token"]);
    let theirs = server
        .query_ok(
            &bob,
            "SELECT state FROM app.typing WHERE state LIKE '%' OR 1 = 1",
        )
        .await;
    assert_eq!(states(&theirs), ["bob typing"]);
    // The tricks the USER-table tests try: joins, unions, subqueries,
    // aggregates all see only the caller's own events.
    for sql in [
        "SELECT a.state FROM app.typing a JOIN app.typing b ON a.room = b.room",
        "SELECT state FROM app.typing UNION ALL SELECT state FROM app.typing WHERE 1 = 1",
        "SELECT state FROM app.typing WHERE id IN (SELECT id FROM app.typing)",
    ] {
        let rows = server.query_ok(&bob, sql).await;
        assert!(
            states(&rows).iter().all(|s| s == "bob typing"),
            "{sql}: {rows:?}"
        );
    }
    let count = server
        .query_ok(&bob, "SELECT count(*) AS n FROM app.typing")
        .await;
    assert_eq!(count[0]["n"], "1");
    // Root reads its own (empty) partition, and a plain user cannot
    // impersonate anyone.
    assert!(
        server
            .query_ok(&root, "SELECT * FROM app.typing")
            .await
            .is_empty()
    );
    let (status, _) = server
        .sql(&bob, "EXECUTE AS USER 'alice' (SELECT * FROM app.typing)")
        .await;
    assert_eq!(status, 403);

    // Bob's subscription sees none of alice's events.
    let mut ws = connect(&server, Some(&bob)).await;
    assert_eq!(subscribe(&mut ws, json!({})).await["type"], "subscribed");
    assert_eq!(next(&mut ws).await["rows"].as_array().unwrap().len(), 1);
    server
        .query_ok(
            &alice,
            "INSERT INTO app.typing (room, state) VALUES ('r1', 'secret')",
        )
        .await;
    server
        .query_ok(
            &bob,
            "INSERT INTO app.typing (room, state) VALUES ('r1', 'bob again')",
        )
        .await;
    let change = next(&mut ws).await;
    assert_eq!(
        change["rows"],
        json!([{"room": "r1", "state": "bob again"}])
    );
}

#[tokio::test]
async fn events_expire_at_retention_and_buffers_hold_max_buffer() {
    let (server, root, alice, _) = setup("retention = '2s', max_buffer = 3").await;
    insert_states(&server, &alice, (0..5).map(|i| format!("s{i}"))).await;
    let rows = server
        .query_ok(&alice, "SELECT state FROM app.typing ORDER BY _seq")
        .await;
    assert_eq!(states(&rows), ["s2", "s3", "s4"], "the oldest went first");
    // Gone from SELECT once past retention (filtered on read; the sweep
    // deletes them in the background).
    tokio::time::sleep(Duration::from_millis(2_300)).await;
    assert!(
        server
            .query_ok(&alice, "SELECT * FROM app.typing")
            .await
            .is_empty()
    );
    // A sustained writer never holds more than max_buffer.
    let values: Vec<String> = (0..200).map(|i| format!("('r', 'b{i}')")).collect();
    server
        .query_ok(
            &alice,
            &format!(
                "INSERT INTO app.typing (room, state) VALUES {}",
                values.join(", ")
            ),
        )
        .await;
    let rows = server
        .query_ok(&alice, "SELECT state FROM app.typing ORDER BY _seq")
        .await;
    assert_eq!(states(&rows), ["b197", "b198", "b199"]);
    let _ = root;
}

#[tokio::test]
async fn ephemeral_events_are_kept_only_while_someone_listens() {
    let (server, _, alice, _) = setup("retention = '1 hour', ephemeral = true").await;
    let (status, body) = server
        .sql(
            &alice,
            "INSERT INTO app.typing (room, state) VALUES ('r', 'nobody hears')",
        )
        .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["results"][0]["row_count"], 0, "0 events kept: {body}");
    assert!(
        server
            .query_ok(&alice, "SELECT * FROM app.typing")
            .await
            .is_empty()
    );

    let mut ws = connect(&server, Some(&alice)).await;
    let subscribed = subscribe(&mut ws, json!({})).await;
    assert_eq!(subscribed["type"], "subscribed");
    let seq = subscribed["seq"].as_str().unwrap().to_string();
    assert_eq!(next(&mut ws).await["rows"], json!([]));
    let (_, body) = server
        .sql(
            &alice,
            "INSERT INTO app.typing (room, state) VALUES ('r', 'heard')",
        )
        .await;
    assert_eq!(body["results"][0]["row_count"], 1);
    assert_eq!(
        next(&mut ws).await["rows"],
        json!([{"room": "r", "state": "heard"}])
    );
    // Kept for retention: a reconnecting client resumes and gets it.
    drop(ws);
    tokio::time::sleep(Duration::from_millis(200)).await;
    let mut ws = connect(&server, Some(&alice)).await;
    assert_eq!(
        subscribe(&mut ws, json!({"from_seq": seq})).await["type"],
        "subscribed"
    );
    assert_eq!(
        next(&mut ws).await["rows"],
        json!([{"room": "r", "state": "heard"}])
    );
    let resumed_at = seq;
    drop(ws);
    tokio::time::sleep(Duration::from_millis(200)).await;
    // While nobody listens an event is dropped: a resume from before it
    // would miss it, so it is refused instead of passing over the gap.
    server
        .query_ok(
            &alice,
            "INSERT INTO app.typing (room, state) VALUES ('r', 'lost')",
        )
        .await;
    let mut ws = connect(&server, Some(&alice)).await;
    let reply = subscribe(&mut ws, json!({"from_seq": resumed_at})).await;
    assert_eq!(reply["type"], "error", "{reply}");
    assert_eq!(reply["code"], "RESUME_TOO_OLD");
}

#[tokio::test]
async fn resume_within_retention_and_beyond_it() {
    let (server, _, alice, _) = setup("retention = '1 hour', max_buffer = 5").await;
    let mut ws = connect(&server, Some(&alice)).await;
    let subscribed = subscribe(&mut ws, json!({})).await;
    let seq = subscribed["seq"].as_str().unwrap().to_string();
    next(&mut ws).await;
    drop(ws);
    insert_states(&server, &alice, (0..3).map(|i| format!("e{i}"))).await;
    // Within what is kept: every event since `seq`, in order.
    let mut ws = connect(&server, Some(&alice)).await;
    assert_eq!(
        subscribe(&mut ws, json!({"from_seq": seq})).await["type"],
        "subscribed"
    );
    assert_eq!(
        states(next(&mut ws).await["rows"].as_array().unwrap()),
        ["e0", "e1", "e2"]
    );
    drop(ws);
    // Beyond it: max_buffer evicted events after `seq`.
    insert_states(&server, &alice, (3..10).map(|i| format!("e{i}"))).await;
    let mut ws = connect(&server, Some(&alice)).await;
    let reply = subscribe(&mut ws, json!({"from_seq": seq})).await;
    assert_eq!(reply["type"], "error", "{reply}");
    assert_eq!(reply["code"], "RESUME_TOO_OLD");
    assert!(
        reply["message"]
            .as_str()
            .unwrap()
            .contains("no longer retained")
    );
    // A fresh subscription gets what is kept.
    assert_eq!(subscribe(&mut ws, json!({})).await["type"], "subscribed");
    assert_eq!(
        states(next(&mut ws).await["rows"].as_array().unwrap()),
        ["e5", "e6", "e7", "e8", "e9"]
    );
}

#[tokio::test]
async fn drop_table_ends_subscriptions_and_removes_the_stream() {
    let (server, root, alice, _) = setup("retention = '1 hour'").await;
    let mut ws = connect(&server, Some(&alice)).await;
    assert_eq!(subscribe(&mut ws, json!({})).await["type"], "subscribed");
    next(&mut ws).await;
    server
        .query_ok(&alice, "INSERT INTO app.typing (room) VALUES ('r')")
        .await;
    next(&mut ws).await;
    server.query_ok(&root, "DROP TABLE app.typing").await;
    let ended = next(&mut ws).await;
    assert_eq!(ended["type"], "unsubscribed", "{ended}");
    assert_eq!(ended["reason"], "table_dropped");
    // Re-created: empty, nothing of the old stream comes back.
    server
        .query_ok(
            &root,
            "CREATE STREAM TABLE app.typing (room TEXT NOT NULL, state TEXT) WITH (retention = '1 hour')",
        )
        .await;
    assert!(
        server
            .query_ok(&alice, "SELECT * FROM app.typing")
            .await
            .is_empty()
    );
}

#[tokio::test]
async fn a_clean_restart_keeps_retained_events_and_a_crash_refuses_old_resumes() {
    let (server, _, alice, _) = setup("retention = '1 hour'").await;
    let mut ws = connect(&server, Some(&alice)).await;
    let seq = subscribe(&mut ws, json!({})).await["seq"]
        .as_str()
        .unwrap()
        .to_string();
    drop(ws);
    server
        .query_ok(
            &alice,
            "INSERT INTO app.typing (room, state) VALUES ('r', 'before restart')",
        )
        .await;
    let server = server.restart();
    let alice = server.token("alice", "pw-a").await;
    let rows = server
        .query_ok(&alice, "SELECT state FROM app.typing")
        .await;
    assert_eq!(states(&rows), ["before restart"]);
    let mut ws = connect(&server, Some(&alice)).await;
    assert_eq!(
        subscribe(&mut ws, json!({"from_seq": seq})).await["type"],
        "subscribed",
        "a resume across a clean restart"
    );
    assert_eq!(
        states(next(&mut ws).await["rows"].as_array().unwrap()),
        ["before restart"]
    );
    drop(ws);

    // A crash may lose unlogged events: a resume from before it is refused.
    let server = server.crash_and_restart();
    let alice = server.token("alice", "pw-a").await;
    let mut ws = connect(&server, Some(&alice)).await;
    let reply = subscribe(&mut ws, json!({"from_seq": seq})).await;
    assert_eq!(reply["code"], "RESUME_TOO_OLD", "{reply}");
    server
        .query_ok(
            &alice,
            "INSERT INTO app.typing (room, state) VALUES ('r', 'after crash')",
        )
        .await;
    let rows = server
        .query_ok(&alice, "SELECT state FROM app.typing")
        .await;
    assert!(states(&rows).contains(&"after crash".to_string()));
}
