//! Live queries over /ws against the real server: authentication, initial
//! data, filtered changes, isolation between users, protocol errors.

use std::time::Duration;

use futures::{SinkExt, StreamExt};
use kalamdb_tests::TestServer;
use serde_json::{Value, json};
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;

type Socket =
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

async fn connect(server: &TestServer, token: Option<&str>) -> Socket {
    let url = server.base_url.replace("http://", "ws://") + "/ws";
    let mut request = url.into_client_request().unwrap();
    if let Some(token) = token {
        request
            .headers_mut()
            .insert("authorization", format!("Bearer {token}").parse().unwrap());
    }
    tokio_tungstenite::connect_async(request)
        .await
        .expect("websocket connect")
        .0
}

async fn send(socket: &mut Socket, value: Value) {
    socket
        .send(Message::Text(value.to_string().into()))
        .await
        .unwrap();
}

/// The next JSON message, failing after 10 s.
async fn next(socket: &mut Socket) -> Value {
    loop {
        let message = tokio::time::timeout(Duration::from_secs(10), socket.next())
            .await
            .expect("a message within 10 s")
            .expect("socket open")
            .expect("no socket error");
        if let Message::Text(text) = message {
            return serde_json::from_str(&text).unwrap();
        }
    }
}

/// Asserts nothing arrives for a short while.
async fn quiet(socket: &mut Socket) {
    if let Ok(Some(Ok(Message::Text(text)))) =
        tokio::time::timeout(Duration::from_millis(400), socket.next()).await
    {
        panic!("unexpected message {text}");
    }
}

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
