//! USER and SHARED tables against the real server: DDL, DML, queries,
//! per-user isolation (including bypass attempts), concurrency, restart.

use kalamdb_tests::TestServer;
use serde_json::{Value, json};

fn code(body: &Value) -> &str {
    body["error"]["code"].as_str().unwrap_or("")
}

fn message(body: &Value) -> &str {
    body["error"]["message"].as_str().unwrap_or("")
}

/// A server with namespace `app`, USER table `app.messages`, SHARED table
/// `app.rooms`, and users alice, bob (role user), svc (service), dan (dba).
async fn setup() -> (TestServer, String) {
    let server = TestServer::start();
    let root = server.root_token().await;
    server
        .query_ok(
            &root,
            "CREATE NAMESPACE app;
             CREATE USER TABLE app.messages (id BIGINT PRIMARY KEY, body TEXT NOT NULL, room TEXT, likes INT DEFAULT 0, author TEXT DEFAULT CURRENT_USER(), sent TIMESTAMP DEFAULT NOW());
             CREATE SHARED TABLE app.rooms (name TEXT PRIMARY KEY, title TEXT);
             CREATE USER 'alice' WITH PASSWORD 'pw-a' ROLE user;
             CREATE USER 'bob' WITH PASSWORD 'pw-b' ROLE user;
             CREATE USER 'svc' WITH PASSWORD 'pw-s' ROLE service;
             CREATE USER 'dan' WITH PASSWORD 'pw-d' ROLE dba",
        )
        .await;
    (server, root)
}

#[tokio::test]
async fn create_table_validates_and_records_metadata() {
    let (server, root) = setup().await;
    let (status, body) = server
        .sql(&root, "CREATE USER TABLE nowhere.t (id INT PRIMARY KEY)")
        .await;
    assert_eq!(status, 400);
    assert!(
        message(&body).contains("namespace nowhere does not exist")
            && message(&body).contains("CREATE NAMESPACE nowhere"),
        "{body}"
    );
    for (sql, needle) in [
        (
            "CREATE USER TABLE app.bad (id INT PRIMARY KEY, _secret TEXT)",
            "reserved",
        ),
        (
            "CREATE USER TABLE app.bad (id INT PRIMARY KEY, blob BYTEA)",
            "unsupported type",
        ),
        (
            "CREATE USER TABLE app.bad (id INT PRIMARY KEY, id TEXT)",
            "twice",
        ),
        (
            "CREATE USER TABLE app.bad (id DOUBLE PRIMARY KEY)",
            "INT, BIGINT or TEXT",
        ),
        (
            "CREATE USER TABLE app.bad (id INT PRIMARY KEY, n INT DEFAULT 'x')",
            "DEFAULT",
        ),
        (
            "CREATE USER TABLE app.bad (id INT PRIMARY KEY) LOCATION REFERENCE 'nope'",
            "storage location nope",
        ),
        (
            "CREATE USER TABLE app.bad (id INT PRIMARY KEY) DELETED RETENTION 'forever'",
            "DELETED RETENTION",
        ),
        ("CREATE TABLE app.bad (id INT)", "USER TABLE"),
        (
            "CREATE USER TABLE app.messages (id INT PRIMARY KEY)",
            "already exists",
        ),
    ] {
        let (status, body) = server.sql(&root, sql).await;
        assert_eq!(status, 400, "{sql}: {body}");
        assert!(message(&body).contains(needle), "{sql}: {body}");
    }
    server
        .query_ok(
            &root,
            "CREATE USER TABLE IF NOT EXISTS app.messages (id INT PRIMARY KEY)",
        )
        .await;
    let alice = server.token("alice", "pw-a").await;
    let (status, _) = server
        .sql(&alice, "CREATE USER TABLE app.mine (id INT PRIMARY KEY)")
        .await;
    assert_eq!(status, 403);

    server
        .query_ok(&root, "CREATE USER TABLE app.notes (body TEXT) FLUSH POLICY ROWS 500 INTERVAL '5 minutes' DELETED RETENTION '2 days'")
        .await;
    let rows = server
        .query_ok(&root, "SELECT table_type, flush_policy, deleted_retention_hours, schema_version, storage_location FROM system.tables WHERE table_id = 'app.notes'")
        .await;
    assert_eq!(rows[0]["table_type"], "USER");
    assert_eq!(rows[0]["deleted_retention_hours"], 48);
    assert_eq!(rows[0]["schema_version"], 1);
    assert_eq!(rows[0]["storage_location"], "local");
    let policy: Value = serde_json::from_str(rows[0]["flush_policy"].as_str().unwrap()).unwrap();
    assert_eq!(policy, json!({"rows": 500, "interval_secs": 300}));
    let rows = server
        .query_ok(
            &root,
            "SELECT version FROM system.table_schemas WHERE table_id = 'app.notes'",
        )
        .await;
    assert_eq!(rows, vec![json!({"version": 1})]);
    let rows = server.query_ok(&root, "DESCRIBE TABLE app.notes").await;
    assert_eq!(rows[0]["column_name"], "id", "automatic key");
    assert_eq!(rows[0]["column_default"], "SNOWFLAKE_ID()");
    assert_eq!(rows[0]["is_primary_key"], true);
    let rows = server
        .query_ok(
            &root,
            "SELECT table_count FROM system.namespaces WHERE name = 'app'",
        )
        .await;
    assert_eq!(rows[0]["table_count"], 3);
    let rows = server
        .query_ok(
            &root,
            "SELECT usage_count FROM system.storage_locations WHERE location_name = 'local'",
        )
        .await;
    assert_eq!(rows[0]["usage_count"], "3");

    // A namespace with tables is not dropped without CASCADE.
    let (status, body) = server.sql(&root, "DROP NAMESPACE app").await;
    assert_eq!(status, 400);
    assert!(
        message(&body).contains("messages") && message(&body).contains("CASCADE"),
        "{body}"
    );
    server.query_ok(&root, "DROP TABLE app.notes").await;
    let rows = server
        .query_ok(
            &root,
            "SELECT table_count FROM system.namespaces WHERE name = 'app'",
        )
        .await;
    assert_eq!(rows[0]["table_count"], 2);
    let (status, _) = server.sql(&root, "SELECT * FROM app.notes").await;
    assert_eq!(status, 400);
    server.query_ok(&root, "DROP NAMESPACE app CASCADE").await;
    assert!(
        server
            .query_ok(&root, "SELECT * FROM system.tables")
            .await
            .is_empty()
    );
    let rows = server
        .query_ok(&root, "SELECT usage_count FROM system.storage_locations")
        .await;
    assert_eq!(rows[0]["usage_count"], "0");
}

#[tokio::test]
async fn dml_counts_defaults_constraints_and_soft_deletes() {
    let (server, _) = setup().await;
    let alice = server.token("alice", "pw-a").await;
    let (status, body) = server
        .sql(&alice, "INSERT INTO app.messages (id, body, room) VALUES (1, 'hi', 'a'), (2, 'there', 'b'), (3, 'x', 'a')")
        .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["results"][0]["row_count"], 3);
    let rows = server
        .query_ok(
            &alice,
            "SELECT id, likes, author, sent, _seq, _deleted FROM app.messages ORDER BY id",
        )
        .await;
    assert_eq!(rows.len(), 3);
    assert_eq!(rows[0]["likes"], 0);
    assert_eq!(rows[0]["author"], "alice");
    assert!(rows[0]["sent"].as_str().unwrap().ends_with('Z'));
    assert_eq!(rows[0]["_deleted"], false);
    let seqs: Vec<i64> = rows
        .iter()
        .map(|r| r["_seq"].as_str().unwrap().parse().unwrap())
        .collect();
    assert!(
        seqs.windows(2).all(|w| w[0] < w[1]),
        "strictly increasing _seq: {seqs:?}"
    );

    // Duplicate keys are refused, naming the key; the statement writes nothing.
    let (status, body) = server
        .sql(
            &alice,
            "INSERT INTO app.messages (id, body) VALUES (10, 'new'), (1, 'dup')",
        )
        .await;
    assert_eq!(status, 400);
    assert_eq!(code(&body), "CONSTRAINT_VIOLATION");
    assert!(message(&body).contains("id = 1"), "{body}");
    assert!(
        server
            .query_ok(&alice, "SELECT id FROM app.messages WHERE id = 10")
            .await
            .is_empty(),
        "atomic"
    );
    let (status, body) = server
        .sql(
            &alice,
            "INSERT INTO app.messages (id, room) VALUES (11, 'a')",
        )
        .await;
    assert_eq!(status, 400);
    assert!(message(&body).contains("body"), "{body}");
    let (status, body) = server
        .sql(
            &alice,
            "INSERT INTO app.messages (id, body, _seq) VALUES (12, 'x', 1)",
        )
        .await;
    assert_eq!(status, 400);
    assert!(message(&body).contains("_seq"), "{body}");
    let (status, _) = server
        .sql(
            &alice,
            "UPDATE app.messages SET _deleted = true WHERE id = 1",
        )
        .await;
    assert_eq!(status, 400);
    let (status, _) = server
        .sql(&alice, "UPDATE app.messages SET id = 99 WHERE id = 1")
        .await;
    assert_eq!(status, 400);

    // INSERT … SELECT.
    let (status, body) = server
        .sql(&alice, "INSERT INTO app.messages (id, body, room) SELECT id + 100, body, room FROM app.messages WHERE room = 'a'")
        .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["results"][0]["row_count"], 2);

    // UPDATE with counts; a WHERE that matches nothing changes nothing.
    let (_, body) = server
        .sql(
            &alice,
            "UPDATE app.messages SET likes = likes + 1 WHERE room = 'a'",
        )
        .await;
    assert_eq!(body["results"][0]["row_count"], 4);
    let (_, body) = server
        .sql(&alice, "UPDATE app.messages SET likes = 100 WHERE false")
        .await;
    assert_eq!(body["results"][0]["row_count"], 0);
    let (_, body) = server
        .sql(&alice, "UPDATE app.messages SET likes = 7 WHERE id IN (SELECT id FROM app.messages WHERE body = 'there')")
        .await;
    assert_eq!(body["results"][0]["row_count"], 1, "{body}");
    let rows = server
        .query_ok(
            &alice,
            "SELECT id, likes FROM app.messages WHERE likes = 100",
        )
        .await;
    assert!(rows.is_empty(), "WHERE false touched rows: {rows:?}");
    let rows = server
        .query_ok(&alice, "SELECT id, likes FROM app.messages ORDER BY id")
        .await;
    assert_eq!(
        rows,
        vec![
            json!({"id": "1", "likes": 1}),
            json!({"id": "2", "likes": 7}),
            json!({"id": "3", "likes": 1}),
            json!({"id": "101", "likes": 1}),
            json!({"id": "103", "likes": 1}),
        ]
    );

    // DELETE: WHERE false deletes nothing, a subquery deletes what it names.
    let (_, body) = server
        .sql(&alice, "DELETE FROM app.messages WHERE false")
        .await;
    assert_eq!(body["results"][0]["row_count"], 0);
    let (_, body) = server
        .sql(&alice, "DELETE FROM app.messages WHERE 1 = 0")
        .await;
    assert_eq!(body["results"][0]["row_count"], 0);
    let (_, body) = server
        .sql(
            &alice,
            "DELETE FROM app.messages WHERE id IN (SELECT id FROM app.messages WHERE id > 100)",
        )
        .await;
    assert_eq!(body["results"][0]["row_count"], 2, "{body}");
    // Deleted rows never appear.
    assert_eq!(
        server
            .query_ok(&alice, "SELECT COUNT(*) AS n FROM app.messages")
            .await[0]["n"],
        "3"
    );
    assert!(
        server
            .query_ok(&alice, "SELECT * FROM app.messages WHERE _deleted = true")
            .await
            .is_empty()
    );
    assert!(
        server
            .query_ok(&alice, "SELECT * FROM app.messages WHERE id = 101")
            .await
            .is_empty()
    );
    // A deleted key can be inserted again.
    server
        .query_ok(
            &alice,
            "INSERT INTO app.messages (id, body) VALUES (101, 'again')",
        )
        .await;
    // Parameters work in DML.
    let (status, body) = server
        .sql_body(&alice, json!({"sql": "UPDATE app.messages SET body = $1 WHERE id = $2", "params": ["edited", "3"]}))
        .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["results"][0]["row_count"], 1);
    // Positional inserts into a table with an automatic key.
    let root = server.root_token().await;
    server
        .query_ok(
            &root,
            "CREATE USER TABLE app.notes (body TEXT, pinned BOOLEAN)",
        )
        .await;
    server
        .query_ok(
            &alice,
            "INSERT INTO app.notes VALUES ('a', true), ('b', false)",
        )
        .await;
    let rows = server
        .query_ok(&alice, "SELECT id, body FROM app.notes ORDER BY body")
        .await;
    assert_eq!(rows.len(), 2);
    assert_ne!(rows[0]["id"], rows[1]["id"]);
    // Unqualified names with a request namespace.
    let (status, body) = server
        .sql_body(
            &alice,
            json!({"sql": "SELECT COUNT(*) AS n FROM notes", "namespace": "app"}),
        )
        .await;
    assert_eq!(status, 200, "{body}");
}

#[tokio::test]
async fn users_only_ever_see_their_own_rows() {
    let (server, root) = setup().await;
    let alice = server.token("alice", "pw-a").await;
    let bob = server.token("bob", "pw-b").await;
    server
        .query_ok(
            &alice,
            "INSERT INTO app.messages (id, body) VALUES (1, 'alice secret'), (2, 'alice two')",
        )
        .await;
    server
        .query_ok(
            &bob,
            "INSERT INTO app.messages (id, body) VALUES (1, 'bob secret')",
        )
        .await;

    let rows = server
        .query_ok(&bob, "SELECT id, body FROM app.messages")
        .await;
    assert_eq!(rows, vec![json!({"id": "1", "body": "bob secret"})]);

    let attempts = [
        "SELECT * FROM app.messages WHERE author = 'alice'",
        "SELECT * FROM app.messages WHERE id = 2",
        "SELECT * FROM app.messages WHERE id IN (1, 2)",
        "SELECT * FROM \"app\".\"messages\" WHERE body LIKE 'alice%'",
        "SELECT m.* FROM app.messages m JOIN app.messages n ON m.id = n.id WHERE m.body LIKE 'alice%'",
        "SELECT body FROM app.messages UNION ALL SELECT body FROM app.messages WHERE body LIKE 'alice%'",
        "SELECT * FROM app.messages WHERE id = (SELECT MAX(id) FROM app.messages) AND body LIKE 'alice%'",
        "SELECT * FROM app.messages WHERE _seq > 0 AND body LIKE 'alice%'",
        "SELECT * FROM app.messages WHERE _deleted = false AND body LIKE 'alice%'",
        "WITH x AS (SELECT * FROM app.messages) SELECT * FROM x WHERE body LIKE 'alice%'",
        "SELECT * FROM information_schema.tables t JOIN app.messages m ON true WHERE m.body LIKE 'alice%'",
    ];
    for sql in attempts {
        let (status, body) = server.sql(&bob, sql).await;
        assert_eq!(status, 200, "{sql}: {body}");
        let text = body.to_string();
        assert!(
            !text.contains("alice secret") && !text.contains("alice two"),
            "{sql} leaked: {text}"
        );
    }
    // Writes with WHERE clauses naming alice's rows touch only bob's own.
    let (_, body) = server
        .sql(&bob, "UPDATE app.messages SET body = 'pwned' WHERE id = 2")
        .await;
    assert_eq!(body["results"][0]["row_count"], 0);
    let (_, body) = server
        .sql(&bob, "DELETE FROM app.messages WHERE author = 'alice'")
        .await;
    assert_eq!(body["results"][0]["row_count"], 0);
    let (_, body) = server.sql(&bob, "DELETE FROM app.messages").await;
    assert_eq!(body["results"][0]["row_count"], 1);
    let rows = server
        .query_ok(&alice, "SELECT id, body FROM app.messages ORDER BY id")
        .await;
    assert_eq!(
        rows,
        vec![
            json!({"id": "1", "body": "alice secret"}),
            json!({"id": "2", "body": "alice two"})
        ]
    );

    // A user cannot impersonate; a dba/root without EXECUTE AS sees only its own partition.
    let (status, _) = server
        .sql(&bob, "EXECUTE AS USER 'alice' (SELECT * FROM app.messages)")
        .await;
    assert_eq!(status, 403);
    assert!(
        server
            .query_ok(&root, "SELECT * FROM app.messages")
            .await
            .is_empty()
    );
    let dan = server.token("dan", "pw-d").await;
    assert!(
        server
            .query_ok(&dan, "SELECT * FROM app.messages")
            .await
            .is_empty()
    );

    // A service writes and reads a user's partition through EXECUTE AS USER.
    let svc = server.token("svc", "pw-s").await;
    server.query_ok(&svc, "EXECUTE AS USER 'alice' (INSERT INTO app.messages (id, body) VALUES (3, 'from service'))").await;
    let rows = server
        .query_ok(
            &svc,
            "EXECUTE AS USER 'alice' (SELECT id, author FROM app.messages WHERE id = 3)",
        )
        .await;
    assert_eq!(rows, vec![json!({"id": "3", "author": "alice"})]);
    assert_eq!(
        server
            .query_ok(&alice, "SELECT COUNT(*) AS n FROM app.messages")
            .await[0]["n"],
        "3"
    );
    let (status, _) = server.sql(&svc, "EXECUTE AS USER 'root' (SELECT 1)").await;
    assert_eq!(status, 403, "no acting above one's role");
    let (status, _) = server.sql(&svc, "EXECUTE AS USER 'ghost' (SELECT 1)").await;
    assert_eq!(status, 400);
}

#[tokio::test]
async fn shared_tables_are_read_by_all_and_written_by_services() {
    let (server, _) = setup().await;
    let alice = server.token("alice", "pw-a").await;
    let svc = server.token("svc", "pw-s").await;
    let (status, body) = server
        .sql(
            &alice,
            "INSERT INTO app.rooms (name, title) VALUES ('a', 'Room A')",
        )
        .await;
    assert_eq!(status, 403, "{body}");
    assert!(message(&body).contains("service"), "{body}");
    server
        .query_ok(
            &svc,
            "INSERT INTO app.rooms (name, title) VALUES ('a', 'Room A'), ('b', 'Room B')",
        )
        .await;
    let (status, _) = server.sql(&alice, "UPDATE app.rooms SET title = 'x'").await;
    assert_eq!(status, 403);
    let (status, _) = server.sql(&alice, "DELETE FROM app.rooms").await;
    assert_eq!(status, 403);
    assert_eq!(
        server
            .query_ok(&alice, "SELECT * FROM app.rooms")
            .await
            .len(),
        2
    );
    // Join a user table with a shared table.
    server.query_ok(&alice, "INSERT INTO app.messages (id, body, room) VALUES (1, 'hi', 'a'), (2, 'yo', 'b'), (3, 'lost', 'z')").await;
    let rows = server
        .query_ok(&alice, "SELECT m.id, r.title FROM app.messages m JOIN app.rooms r ON m.room = r.name ORDER BY m.id")
        .await;
    assert_eq!(
        rows,
        vec![
            json!({"id": "1", "title": "Room A"}),
            json!({"id": "2", "title": "Room B"})
        ]
    );
}

#[tokio::test]
async fn concurrent_writers_each_see_exactly_their_rows() {
    let (server, _) = setup().await;
    let alice = server.token("alice", "pw-a").await;
    let bob = server.token("bob", "pw-b").await;
    let mut tasks = Vec::new();
    for (token, who) in [(alice.clone(), "alice"), (bob.clone(), "bob")] {
        for i in 0..40 {
            let client = server.client.clone();
            let url = server.url("/api/sql");
            let token = token.clone();
            tasks.push(tokio::spawn(async move {
                let sql = format!("INSERT INTO app.messages (id, body) VALUES ({i}, '{who}-{i}')");
                let response = client
                    .post(url)
                    .bearer_auth(token)
                    .json(&json!({"sql": sql}))
                    .send()
                    .await
                    .unwrap();
                assert_eq!(
                    response.status().as_u16(),
                    200,
                    "{}",
                    response.text().await.unwrap()
                );
            }));
        }
    }
    for task in tasks {
        task.await.unwrap();
    }
    for (token, who) in [(alice, "alice"), (bob, "bob")] {
        let rows = server
            .query_ok(&token, "SELECT body FROM app.messages ORDER BY id")
            .await;
        assert_eq!(rows.len(), 40, "{who}");
        for (i, row) in rows.iter().enumerate() {
            assert_eq!(row["body"], format!("{who}-{i}"));
        }
    }
}

#[tokio::test]
async fn tables_rows_and_sequences_survive_a_restart() {
    let (server, root) = setup().await;
    let alice = server.token("alice", "pw-a").await;
    server
        .query_ok(
            &alice,
            "INSERT INTO app.messages (id, body) VALUES (1, 'before')",
        )
        .await;
    server.query_ok(&alice, "DELETE FROM app.messages WHERE id = 1; INSERT INTO app.messages (id, body) VALUES (2, 'kept')").await;
    let before: i64 = server
        .query_ok(&alice, "SELECT _seq FROM app.messages")
        .await[0]["_seq"]
        .as_str()
        .unwrap()
        .parse()
        .unwrap();
    let server = server.restart();
    let rows = server
        .query_ok(&alice, "SELECT id, body FROM app.messages")
        .await;
    assert_eq!(rows, vec![json!({"id": "2", "body": "kept"})]);
    server
        .query_ok(
            &alice,
            "INSERT INTO app.messages (id, body) VALUES (3, 'after')",
        )
        .await;
    let after: i64 = server
        .query_ok(&alice, "SELECT _seq FROM app.messages WHERE id = 3")
        .await[0]["_seq"]
        .as_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!(after > before, "_seq never goes backwards");
    let rows = server
        .query_ok(
            &root,
            "SELECT table_name FROM system.tables ORDER BY table_name",
        )
        .await;
    assert_eq!(
        rows,
        vec![
            json!({"table_name": "messages"}),
            json!({"table_name": "rooms"})
        ]
    );
    let rows = server.query_ok(&root, "DESCRIBE TABLE app.messages").await;
    assert_eq!(rows[4]["column_default"], "CURRENT_USER()");
}
