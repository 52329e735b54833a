//! Live queries over /ws against the real server: authentication, initial
//! data, filtered changes, isolation between users, protocol errors.

use std::time::Duration;

use futures::{SinkExt, StreamExt};
use kalamdb_tests::TestServer;
use kalamdb_tests::ws::{connect, next, quiet, send};
use serde_json::{Value, json};
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;

async fn setup() -> (TestServer, String, String) {
    let server = TestServer::start();
    let root = server.root_token().await;
    server
        .query_ok(
            &root,
            "CREATE NAMESPACE app;
             CREATE USER TABLE app.messages (id BIGINT PRIMARY KEY, body TEXT, room TEXT);
             CREATE USER 'alice' WITH PASSWORD 'pw-a' ROLE user;
             CREATE USER 'bob' WITH PASSWORD 'pw-b' ROLE user",
        )
        .await;
    let alice = server.token("alice", "pw-a").await;
    let bob = server.token("bob", "pw-b").await;
    (server, alice, bob)
}

#[tokio::test]
async fn initial_rows_then_filtered_changes() {
    let (server, alice, _) = setup().await;
    server.query_ok(&alice, "INSERT INTO app.messages (id, body, room) VALUES (1, 'hello', 'a'), (2, 'other room', 'b')").await;
    let mut ws = connect(&server, Some(&alice)).await;
    send(&mut ws, json!({"type": "subscribe", "id": "s1", "sql": "SELECT id, body FROM app.messages WHERE room = 'a' AND body LIKE 'h%'"})).await;
    let subscribed = next(&mut ws).await;
    assert_eq!(subscribed["type"], "subscribed", "{subscribed}");
    assert_eq!(subscribed["subscription_id"], "s1");
    assert!(subscribed["live_id"].is_string());
    assert!(subscribed["seq"].as_str().unwrap().parse::<i64>().is_ok());
    assert_eq!(
        subscribed["columns"],
        json!([{"name": "id", "type": "BIGINT"}, {"name": "body", "type": "TEXT"}])
    );
    let initial = next(&mut ws).await;
    assert_eq!(initial["type"], "initial_data");
    assert_eq!(initial["rows"], json!([{"id": "1", "body": "hello"}]));
    assert_eq!(initial["batch"], 0);
    assert_eq!(initial["has_more"], false);

    // Insert matching and non-matching rows.
    server.query_ok(&alice, "INSERT INTO app.messages (id, body, room) VALUES (3, 'hi there', 'a'), (4, 'hi b', 'b')").await;
    let change = next(&mut ws).await;
    assert_eq!(change["type"], "change", "{change}");
    assert_eq!(change["change_type"], "insert");
    assert_eq!(change["subscription_id"], "s1");
    assert_eq!(change["rows"], json!([{"id": "3", "body": "hi there"}]));
    assert!(
        change["seq"].as_str().unwrap().parse::<i64>().unwrap()
            > subscribed["seq"].as_str().unwrap().parse::<i64>().unwrap()
    );
    quiet(&mut ws).await;

    // Update inside the filter, out of it, and back into it.
    server
        .query_ok(&alice, "UPDATE app.messages SET body = 'hey' WHERE id = 3")
        .await;
    let change = next(&mut ws).await;
    assert_eq!(change["change_type"], "update");
    assert_eq!(change["rows"], json!([{"id": "3", "body": "hey"}]));
    assert_eq!(
        change["old_values"],
        json!([{"id": "3", "body": "hi there"}])
    );
    server
        .query_ok(&alice, "UPDATE app.messages SET room = 'b' WHERE id = 3")
        .await;
    let change = next(&mut ws).await;
    assert_eq!(
        change["change_type"], "delete",
        "moved out of the filter: {change}"
    );
    assert_eq!(change["old_values"], json!([{"id": "3", "body": "hey"}]));
    server
        .query_ok(&alice, "UPDATE app.messages SET room = 'a' WHERE id = 4")
        .await;
    let change = next(&mut ws).await;
    assert_eq!(
        change["change_type"], "insert",
        "moved into the filter: {change}"
    );
    assert_eq!(change["rows"], json!([{"id": "4", "body": "hi b"}]));

    // Delete.
    server
        .query_ok(&alice, "DELETE FROM app.messages WHERE id = 1")
        .await;
    let change = next(&mut ws).await;
    assert_eq!(change["change_type"], "delete");
    assert_eq!(change["old_values"], json!([{"id": "1", "body": "hello"}]));
    quiet(&mut ws).await;

    // Unsubscribe stops the changes.
    send(&mut ws, json!({"type": "unsubscribe", "id": "s1"})).await;
    let message = next(&mut ws).await;
    assert_eq!(
        message,
        json!({"type": "unsubscribed", "subscription_id": "s1", "reason": "client"})
    );
    server
        .query_ok(
            &alice,
            "INSERT INTO app.messages (id, body, room) VALUES (5, 'hi again', 'a')",
        )
        .await;
    quiet(&mut ws).await;
}

#[tokio::test]
async fn users_never_see_each_others_changes() {
    let (server, alice, bob) = setup().await;
    let mut alice_ws = connect(&server, Some(&alice)).await;
    let mut bob_ws = connect(&server, Some(&bob)).await;
    for ws in [&mut alice_ws, &mut bob_ws] {
        send(
            ws,
            json!({"type": "subscribe", "id": "all", "sql": "SELECT * FROM app.messages"}),
        )
        .await;
        assert_eq!(next(ws).await["type"], "subscribed");
        assert_eq!(next(ws).await["rows"], json!([]));
    }
    server
        .query_ok(
            &alice,
            "INSERT INTO app.messages (id, body) VALUES (1, 'alice only')",
        )
        .await;
    let change = next(&mut alice_ws).await;
    assert_eq!(change["rows"][0]["body"], "alice only");
    quiet(&mut bob_ws).await;
    server
        .query_ok(
            &bob,
            "INSERT INTO app.messages (id, body) VALUES (1, 'bob only')",
        )
        .await;
    assert_eq!(next(&mut bob_ws).await["rows"][0]["body"], "bob only");
    quiet(&mut alice_ws).await;
}

#[tokio::test]
async fn authentication_by_first_message_and_refusals() {
    let (server, alice, _) = setup().await;
    // First-message authentication, for browsers.
    let mut ws = connect(&server, None).await;
    send(&mut ws, json!({"type": "authenticate", "token": alice})).await;
    assert_eq!(next(&mut ws).await["type"], "authenticated");
    send(&mut ws, json!({"type": "ping"})).await;
    assert_eq!(next(&mut ws).await, json!({"type": "pong"}));

    // A bad token is refused and the socket closed.
    let mut ws = connect(&server, None).await;
    send(&mut ws, json!({"type": "authenticate", "token": "nope"})).await;
    let error = next(&mut ws).await;
    assert_eq!(error["type"], "error");
    assert_eq!(error["code"], "UNAUTHORIZED");
    let url = server.base_url.replace("http://", "ws://") + "/ws";
    let mut request = url.into_client_request().unwrap();
    request
        .headers_mut()
        .insert("authorization", "Bearer garbage".parse().unwrap());
    assert!(
        tokio_tungstenite::connect_async(request).await.is_err(),
        "bad header token: no upgrade"
    );
}

#[tokio::test]
async fn bad_messages_get_errors_and_the_connection_stays() {
    let (server, alice, _) = setup().await;
    let mut ws = connect(&server, Some(&alice)).await;
    for (message, code) in [
        (Value::String("{not json".into()), "INVALID_MESSAGE"),
        (json!({"type": "frobnicate"}), "UNKNOWN_TYPE"),
        (
            json!({"type": "subscribe", "id": "x", "sql": "SELEC nope"}),
            "INVALID_SQL",
        ),
        (
            json!({"type": "subscribe", "id": "x", "sql": "SELECT COUNT(*) FROM app.messages"}),
            "INVALID_SQL",
        ),
        (
            json!({"type": "subscribe", "id": "x", "sql": "SELECT * FROM app.messages a JOIN app.messages b ON a.id = b.id"}),
            "INVALID_SQL",
        ),
        (
            json!({"type": "subscribe", "id": "x", "sql": "SELECT * FROM system.users"}),
            "INVALID_SQL",
        ),
        (
            json!({"type": "subscribe", "id": "x", "sql": "SELECT * FROM app.nothing"}),
            "NOT_FOUND",
        ),
        (
            json!({"type": "unsubscribe", "id": "never"}),
            "UNKNOWN_SUBSCRIPTION",
        ),
    ] {
        let text = match &message {
            Value::String(s) => s.clone(),
            other => other.to_string(),
        };
        ws.send(Message::Text(text.clone().into())).await.unwrap();
        let reply = next(&mut ws).await;
        assert_eq!(reply["type"], "error", "{text}: {reply}");
        assert_eq!(reply["code"], code, "{text}: {reply}");
    }
    send(
        &mut ws,
        json!({"type": "subscribe", "id": "dup", "sql": "SELECT * FROM app.messages"}),
    )
    .await;
    assert_eq!(next(&mut ws).await["type"], "subscribed");
    assert_eq!(next(&mut ws).await["type"], "initial_data");
    send(
        &mut ws,
        json!({"type": "subscribe", "id": "dup", "sql": "SELECT * FROM app.messages"}),
    )
    .await;
    assert_eq!(next(&mut ws).await["code"], "DUPLICATE_SUBSCRIPTION");
    send(&mut ws, json!({"type": "ping"})).await;
    assert_eq!(next(&mut ws).await["type"], "pong", "connection kept");
}

#[tokio::test]
async fn initial_rows_come_in_batches() {
    let (server, alice, _) = setup().await;
    let values: Vec<String> = (0..25).map(|i| format!("({i}, 'm{i}', 'a')")).collect();
    server
        .query_ok(
            &alice,
            &format!(
                "INSERT INTO app.messages (id, body, room) VALUES {}",
                values.join(", ")
            ),
        )
        .await;
    let mut ws = connect(&server, Some(&alice)).await;
    send(&mut ws, json!({"type": "subscribe", "id": "b", "sql": "SELECT id FROM app.messages ORDER BY id", "options": {"batch_size": 10}})).await;
    assert_eq!(next(&mut ws).await["type"], "subscribed");
    let mut total = 0;
    for batch in 0..3 {
        let message = next(&mut ws).await;
        assert_eq!(message["batch"], batch);
        assert_eq!(message["has_more"], batch < 2);
        total += message["rows"].as_array().unwrap().len();
    }
    assert_eq!(total, 25);
    send(&mut ws, json!({"type": "subscribe", "id": "l", "sql": "SELECT id FROM app.messages ORDER BY id", "options": {"last_rows": 3}})).await;
    assert_eq!(next(&mut ws).await["type"], "subscribed");
    assert_eq!(
        next(&mut ws).await["rows"],
        json!([{"id": "22"}, {"id": "23"}, {"id": "24"}])
    );
}

#[tokio::test]
async fn resume_from_seq_delivers_what_changed_meanwhile() {
    let (server, alice, _) = setup().await;
    server.query_ok(&alice, "INSERT INTO app.messages (id, body, room) VALUES (1, 'one', 'a'), (2, 'two', 'a'), (3, 'three', 'a')").await;
    let mut ws = connect(&server, Some(&alice)).await;
    let sql = "SELECT id, body FROM app.messages WHERE room = 'a'";
    send(&mut ws, json!({"type": "subscribe", "id": "s", "sql": sql})).await;
    let subscribed = next(&mut ws).await;
    let seq = subscribed["seq"].as_str().unwrap().to_string();
    assert_eq!(next(&mut ws).await["rows"].as_array().unwrap().len(), 3);
    drop(ws);

    // While disconnected: an insert, an update, a delete, a move out of the filter.
    server
        .query_ok(
            &alice,
            "INSERT INTO app.messages (id, body, room) VALUES (4, 'four', 'a');
             UPDATE app.messages SET body = 'TWO' WHERE id = 2;
             DELETE FROM app.messages WHERE id = 1;
             UPDATE app.messages SET room = 'b' WHERE id = 3",
        )
        .await;
    let mut ws = connect(&server, Some(&alice)).await;
    send(
        &mut ws,
        json!({"type": "subscribe", "id": "s", "sql": sql, "options": {"from_seq": seq}}),
    )
    .await;
    assert_eq!(next(&mut ws).await["type"], "subscribed");
    let initial = next(&mut ws).await;
    assert_eq!(initial["type"], "initial_data");
    let mut rows = initial["rows"].as_array().unwrap().clone();
    rows.sort_by_key(|r| r["id"].as_str().unwrap().to_string());
    assert_eq!(
        rows,
        vec![
            json!({"id": "2", "body": "TWO"}),
            json!({"id": "4", "body": "four"})
        ]
    );
    let mut deleted = Vec::new();
    for _ in 0..2 {
        let change = next(&mut ws).await;
        assert_eq!(change["change_type"], "delete", "{change}");
        deleted.push(change["old_values"][0]["id"].as_str().unwrap().to_string());
    }
    deleted.sort();
    assert_eq!(deleted, ["1", "3"]);
    // Then live changes, with no gap.
    server
        .query_ok(
            &alice,
            "INSERT INTO app.messages (id, body, room) VALUES (5, 'five', 'a')",
        )
        .await;
    assert_eq!(next(&mut ws).await["rows"][0]["id"], "5");
}

#[tokio::test]
async fn flushed_rows_are_in_initial_data_and_resume() {
    let (server, alice, _) = setup().await;
    let root = server.root_token().await;
    server.query_ok(&alice, "INSERT INTO app.messages (id, body, room) VALUES (1, 'one', 'a'), (2, 'two', 'a'), (3, 'three', 'b')").await;
    server.run_job(&root, "FLUSH TABLE app.messages").await;
    let mut ws = connect(&server, Some(&alice)).await;
    let sql = "SELECT id, body FROM app.messages WHERE room = 'a'";
    send(&mut ws, json!({"type": "subscribe", "id": "s", "sql": sql})).await;
    let subscribed = next(&mut ws).await;
    let seq = subscribed["seq"].as_str().unwrap().to_string();
    let mut rows = next(&mut ws).await["rows"].as_array().unwrap().clone();
    rows.sort_by_key(|r| r["id"].as_str().unwrap().to_string());
    assert_eq!(
        rows,
        vec![
            json!({"id": "1", "body": "one"}),
            json!({"id": "2", "body": "two"})
        ]
    );
    drop(ws);

    // Change flushed rows while disconnected, and flush the changes too.
    server
        .query_ok(
            &alice,
            "UPDATE app.messages SET body = 'TWO' WHERE id = 2; DELETE FROM app.messages WHERE id = 1",
        )
        .await;
    server.run_job(&root, "FLUSH TABLE app.messages").await;
    let mut ws = connect(&server, Some(&alice)).await;
    send(
        &mut ws,
        json!({"type": "subscribe", "id": "s", "sql": sql, "options": {"from_seq": seq}}),
    )
    .await;
    assert_eq!(next(&mut ws).await["type"], "subscribed");
    let initial = next(&mut ws).await;
    assert_eq!(initial["rows"], json!([{"id": "2", "body": "TWO"}]));
    let change = next(&mut ws).await;
    assert_eq!(change["change_type"], "delete", "{change}");
    assert_eq!(change["old_values"][0]["id"], "1");
    quiet(&mut ws).await;
}

#[tokio::test]
async fn live_queries_table_and_kill() {
    let (server, alice, bob) = setup().await;
    let root = server.root_token().await;
    let mut ws = connect(&server, Some(&alice)).await;
    send(&mut ws, json!({"type": "subscribe", "id": "mine", "sql": "SELECT * FROM app.messages", "options": {"last_rows": 10}})).await;
    let subscribed = next(&mut ws).await;
    let live_id = subscribed["live_id"].as_str().unwrap().to_string();
    next(&mut ws).await;
    server
        .query_ok(
            &alice,
            "INSERT INTO app.messages (id, body) VALUES (1, 'x'), (2, 'y')",
        )
        .await;
    next(&mut ws).await;
    next(&mut ws).await;

    let rows = server
        .query_ok(&alice, "SELECT * FROM system.live_queries")
        .await;
    assert_eq!(rows.len(), 1, "{rows:?}");
    let row = &rows[0];
    assert_eq!(row["live_id"], live_id.as_str());
    assert_eq!(row["namespace"], "app");
    assert_eq!(row["table_name"], "messages");
    assert_eq!(row["query_id"], "mine");
    assert_eq!(row["user_id"], "alice");
    assert_eq!(row["query"], "SELECT * FROM app.messages");
    assert_eq!(row["changes"], "2");
    assert!(row["connection_id"].as_str().unwrap().starts_with("conn-"));
    assert!(row["options"].as_str().unwrap().contains("last_rows"));
    assert!(
        server
            .query_ok(&bob, "SELECT * FROM system.live_queries")
            .await
            .is_empty(),
        "others' subscriptions are private"
    );

    // Bob may not kill it; root may; the client hears `killed`.
    let (status, _) = server
        .sql(&bob, &format!("KILL LIVE QUERY '{live_id}'"))
        .await;
    assert_eq!(status, 403);
    server
        .query_ok(&root, &format!("KILL LIVE QUERY '{live_id}'"))
        .await;
    let message = next(&mut ws).await;
    assert_eq!(
        message,
        json!({"type": "unsubscribed", "subscription_id": "mine", "reason": "killed"})
    );
    assert!(
        server
            .query_ok(&root, "SELECT * FROM system.live_queries")
            .await
            .is_empty()
    );
    let (status, _) = server
        .sql(&root, &format!("KILL LIVE QUERY '{live_id}'"))
        .await;
    assert_eq!(status, 400);

    // Disconnecting removes the row; dropping the table ends subscriptions.
    send(
        &mut ws,
        json!({"type": "subscribe", "id": "again", "sql": "SELECT * FROM app.messages"}),
    )
    .await;
    next(&mut ws).await;
    next(&mut ws).await;
    assert_eq!(
        server
            .query_ok(&root, "SELECT * FROM system.live_queries")
            .await
            .len(),
        1
    );
    server.query_ok(&root, "DROP TABLE app.messages").await;
    let message = next(&mut ws).await;
    assert_eq!(message["reason"], "table_dropped", "{message}");
    let mut other = connect(&server, Some(&alice)).await;
    server
        .query_ok(&root, "CREATE USER TABLE app.notes (body TEXT)")
        .await;
    send(
        &mut other,
        json!({"type": "subscribe", "id": "n", "sql": "SELECT * FROM app.notes"}),
    )
    .await;
    next(&mut other).await;
    next(&mut other).await;
    assert_eq!(
        server
            .query_ok(&root, "SELECT * FROM system.live_queries")
            .await
            .len(),
        1
    );
    drop(other);
    let mut gone = false;
    for _ in 0..50 {
        if server
            .query_ok(&root, "SELECT * FROM system.live_queries")
            .await
            .is_empty()
        {
            gone = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(gone, "the row of a closed connection is removed");
}

#[tokio::test]
async fn a_client_that_stops_reading_is_cut_off_as_slow_consumer() {
    let server = TestServer::start_with(&[("KALAMDB_WS_QUEUE_CAPACITY", "32")]);
    let root = server.root_token().await;
    server
        .query_ok(&root, "CREATE NAMESPACE app; CREATE USER TABLE app.messages (id BIGINT PRIMARY KEY, body TEXT)")
        .await;
    let mut ws = connect(&server, Some(&root)).await;
    send(
        &mut ws,
        json!({"type": "subscribe", "id": "s", "sql": "SELECT * FROM app.messages"}),
    )
    .await;
    assert_eq!(next(&mut ws).await["type"], "subscribed");
    next(&mut ws).await;

    // The client stops reading; writes go on and are never blocked.
    let body = "x".repeat(8192);
    for chunk in 0..15 {
        let values: Vec<String> = (0..100)
            .map(|i| format!("({}, '{body}')", chunk * 100 + i))
            .collect();
        let (status, reply) = server
            .sql(
                &root,
                &format!(
                    "INSERT INTO app.messages (id, body) VALUES {}",
                    values.join(", ")
                ),
            )
            .await;
        assert_eq!(status, 200, "{reply}");
    }
    assert_eq!(server.get("/health").await.0, 200);

    // When it reads again it finds SLOW_CONSUMER, then the end of the connection.
    let mut found = false;
    while let Ok(Some(Ok(message))) = tokio::time::timeout(Duration::from_secs(20), ws.next()).await
    {
        if let Message::Text(text) = message {
            let value: Value = serde_json::from_str(&text).unwrap();
            if value["type"] == "error" {
                assert_eq!(value["code"], "SLOW_CONSUMER", "{value}");
                found = true;
            }
        }
    }
    assert!(found, "SLOW_CONSUMER error before the disconnect");
    let rows = server
        .query_ok(&root, "SELECT COUNT(*) AS n FROM app.messages")
        .await;
    assert_eq!(rows[0]["n"], "1500", "no write was lost");
    // The disconnect is counted.
    let metrics = server
        .client
        .get(server.url("/metrics"))
        .bearer_auth(&root)
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let lines: Vec<&str> = metrics.lines().collect();
    assert!(
        lines.contains(&"kalamdb_live_slow_consumer_disconnects_total 1"),
        "{metrics}"
    );
}

/// Subscriptions of one shape share the evaluation and encoding of a
/// change, yet each gets its own `subscription_id`; a WHERE calling
/// `CURRENT_USER()` is evaluated for each subscriber.
#[tokio::test]
async fn shared_evaluation_keeps_subscriptions_apart() {
    let (server, alice, bob) = setup().await;
    let root = server.root_token().await;
    server
        .query_ok(
            &root,
            "CREATE SHARED TABLE app.board (id BIGINT PRIMARY KEY, body TEXT, owner TEXT)",
        )
        .await;
    let mut sockets = Vec::new();
    for (token, ids) in [(&alice, ["a1", "a2"]), (&bob, ["b1", "b2"])] {
        let mut ws = connect(&server, Some(token)).await;
        for (id, sql) in [
            (
                ids[0],
                "SELECT id, body FROM app.board WHERE body <> 'hidden'",
            ),
            (
                ids[1],
                "SELECT id, body FROM app.board WHERE owner = CURRENT_USER()",
            ),
        ] {
            send(&mut ws, json!({"type": "subscribe", "id": id, "sql": sql})).await;
            assert_eq!(next(&mut ws).await["type"], "subscribed");
            assert_eq!(next(&mut ws).await["type"], "initial_data");
        }
        sockets.push(ws);
    }
    server
        .query_ok(
            &root,
            "INSERT INTO app.board VALUES (1, 'for alice', 'alice'), (2, 'hidden', 'bob')",
        )
        .await;
    let mut got: Vec<(String, Value)> = Vec::new();
    for (ws, expected) in sockets.iter_mut().zip([2, 2]) {
        for _ in 0..expected {
            let change = next(ws).await;
            assert_eq!(change["type"], "change", "{change}");
            got.push((
                change["subscription_id"].as_str().unwrap().to_string(),
                change["rows"].clone(),
            ));
        }
        quiet(ws).await;
    }
    got.sort_by(|a, b| a.0.cmp(&b.0));
    let row = |id: &str, body: &str| json!([{"id": id, "body": body}]);
    assert_eq!(
        got,
        vec![
            ("a1".to_string(), row("1", "for alice")),
            ("a2".to_string(), row("1", "for alice")),
            ("b1".to_string(), row("1", "for alice")),
            ("b2".to_string(), row("2", "hidden")),
        ]
    );
}
