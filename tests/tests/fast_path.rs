//! The statement fast path (plain INSERT … VALUES, point SELECT) against
//! the DataFusion path: two servers, one with `KALAMDB_FAST_PATH=off`, run
//! the same statements (the fast path's shapes, their near misses, and bad
//! input) and must answer the same: status, rows, messages, errors.

use kalamdb_tests::TestServer;
use serde_json::{Value, json};

const SETUP: &str = "CREATE NAMESPACE app;
     CREATE USER 'alice' WITH PASSWORD 'pw-a' ROLE user;
     CREATE USER 'bob' WITH PASSWORD 'pw-b' ROLE user;
     CREATE USER TABLE app.notes (id BIGINT PRIMARY KEY, body TEXT NOT NULL, n INT, score DOUBLE,
         done BOOLEAN DEFAULT false, meta JSON, at TIMESTAMP DEFAULT NOW(), author TEXT DEFAULT CURRENT_USER());
     CREATE USER TABLE app.small (k INT PRIMARY KEY, v TEXT);
     CREATE USER TABLE app.auto (body TEXT);
     CREATE SHARED TABLE app.rooms (name TEXT PRIMARY KEY, title TEXT);
     CREATE STREAM TABLE app.typing (room TEXT) WITH (retention = '1 hour')";

/// A response with what differs between two servers by design masked:
/// commit sequences and times, generated ids, timings.
fn masked(mut body: Value) -> Value {
    fn walk(value: &mut Value) {
        match value {
            Value::Object(map) => {
                for (key, v) in map.iter_mut() {
                    if matches!(
                        key.as_str(),
                        "_seq" | "_updated" | "at" | "execution_time_ms"
                    ) {
                        *v = json!("…");
                    } else {
                        walk(v);
                    }
                }
            }
            Value::Array(items) => items.iter_mut().for_each(walk),
            _ => {}
        }
    }
    walk(&mut body);
    body
}

/// root's, alice's and bob's tokens.
async fn tokens(server: &TestServer, root: String) -> Vec<String> {
    vec![
        root,
        server.token("alice", "pw-a").await,
        server.token("bob", "pw-b").await,
    ]
}

#[tokio::test]
async fn fast_and_planned_paths_answer_the_same() {
    let (fast, fast_root) = TestServer::prepared(&[], SETUP).await;
    let (slow, slow_root) = TestServer::prepared(&[("KALAMDB_FAST_PATH", "off")], SETUP).await;
    let fast_tokens = tokens(&fast, fast_root).await;
    let slow_tokens = tokens(&slow, slow_root).await;
    // (who: 0 root, 1 alice, 2 bob; SQL; params)
    let statements: Vec<(usize, &str, Value)> = vec![
        // INSERTs the fast path takes.
        (
            1,
            "INSERT INTO app.notes (id, body, n, score, meta) VALUES (1, 'one', 1, 1.5, '{\"a\":1}')",
            json!([]),
        ),
        (
            1,
            "INSERT INTO app.notes (id, body) VALUES (2, 'two'), (3, 'three')",
            json!([]),
        ),
        (
            1,
            "INSERT INTO app.notes VALUES (4, 'four', -4, -0.25, true, NULL, NULL, 'x')",
            json!([]),
        ),
        (
            1,
            "INSERT INTO app.notes (id, body, n) VALUES ($1, $2, $3)",
            json!([5, "five", 5]),
        ),
        (
            2,
            "INSERT INTO app.notes (id, body) VALUES (1, 'bob one')",
            json!([]),
        ),
        (
            1,
            "INSERT INTO app.small VALUES (2147483647, 'max')",
            json!([]),
        ),
        (
            1,
            "INSERT INTO app.auto VALUES ('generated key')",
            json!([]),
        ),
        (
            0,
            "INSERT INTO app.rooms VALUES ('lobby', 'Lobby')",
            json!([]),
        ),
        (
            1,
            "INSERT INTO app.typing (room) VALUES ('lobby')",
            json!([]),
        ),
        (
            0,
            "EXECUTE AS USER 'alice' (INSERT INTO app.notes (id, body) VALUES (6, 'six'))",
            json!([]),
        ),
        (
            1,
            "INSERT INTO notes (id, body) VALUES (7, 'unqualified')",
            json!([]),
        ),
        // Errors the fast path must report exactly as the planned path.
        (
            1,
            "INSERT INTO app.notes (id, body) VALUES (1, 'again')",
            json!([]),
        ),
        (
            1,
            "INSERT INTO app.notes (id, body) VALUES (8, 'a'), (8, 'b')",
            json!([]),
        ),
        (
            1,
            "INSERT INTO app.notes (id, body) VALUES (9, NULL)",
            json!([]),
        ),
        (1, "INSERT INTO app.notes (id) VALUES (10)", json!([])),
        (
            1,
            "INSERT INTO app.notes (id, body, nope) VALUES (11, 'x', 1)",
            json!([]),
        ),
        (
            1,
            "INSERT INTO app.notes (id, body, body) VALUES (12, 'x', 'y')",
            json!([]),
        ),
        (
            1,
            "INSERT INTO app.notes (id, body) VALUES (13, 'x', 1)",
            json!([]),
        ),
        (
            1,
            "INSERT INTO app.notes (id, _seq, body) VALUES (14, 1, 'x')",
            json!([]),
        ),
        (
            1,
            "INSERT INTO app.notes (id, body, meta) VALUES (15, 'x', '{oops')",
            json!([]),
        ),
        (
            1,
            "INSERT INTO app.small VALUES (2147483648, 'overflow')",
            json!([]),
        ),
        (
            1,
            "INSERT INTO app.notes (id, body, n) VALUES ('16', 'text key', '16')",
            json!([]),
        ),
        (
            1,
            "INSERT INTO app.notes (id, body, score) VALUES (17, 'int into double', 17)",
            json!([]),
        ),
        (
            1,
            "INSERT INTO app.notes (id, body) VALUES (18, upper('expr'))",
            json!([]),
        ),
        (1, "INSERT INTO app.rooms VALUES ('dev', 'Dev')", json!([])),
        (1, "INSERT INTO app.nope VALUES (1)", json!([])),
        (
            1,
            "INSERT INTO app.notes (id, body) VALUES ($1, $2)",
            json!([19]),
        ),
        // Point SELECTs the fast path takes, and their near misses.
        (1, "SELECT * FROM app.notes WHERE id = 1", json!([])),
        (2, "SELECT * FROM app.notes WHERE id = 1", json!([])),
        (
            1,
            "SELECT id, body, n, score, done, meta, author FROM app.notes WHERE id = 4",
            json!([]),
        ),
        (1, "SELECT body FROM app.notes WHERE 2 = id", json!([])),
        (
            1,
            "SELECT \"body\", id FROM app.notes WHERE id = $1",
            json!([5]),
        ),
        (1, "SELECT * FROM app.notes WHERE id = 404", json!([])),
        (2, "SELECT * FROM app.notes WHERE id = 2", json!([])),
        (1, "SELECT * FROM app.small WHERE k = 2147483647", json!([])),
        (1, "SELECT * FROM app.small WHERE k = 2147483648", json!([])),
        (1, "SELECT * FROM app.rooms WHERE name = 'lobby'", json!([])),
        (1, "SELECT title FROM rooms WHERE name = 'lobby'", json!([])),
        (1, "SELECT * FROM app.notes WHERE id = '1'", json!([])),
        (1, "SELECT id, id FROM app.notes WHERE id = 1", json!([])),
        (1, "SELECT nope FROM app.notes WHERE id = 1", json!([])),
        (1, "SELECT *, id FROM app.notes WHERE id = 1", json!([])),
        (1, "SELECT n.id FROM app.notes n WHERE n.id = 1", json!([])),
        (
            1,
            "SELECT id FROM app.notes WHERE id = 1 ORDER BY id LIMIT 1",
            json!([]),
        ),
        (1, "SELECT id FROM app.notes WHERE body = 'one'", json!([])),
        (
            1,
            "SELECT room FROM app.typing WHERE room = 'lobby'",
            json!([]),
        ),
        (1, "SELECT * FROM app.nope WHERE id = 1", json!([])),
        (
            1,
            "SELECT id, body FROM app.notes WHERE id = NULL",
            json!([]),
        ),
        // After a flush (rows in Parquet), an update and a delete.
        (0, "FLUSH TABLE app.notes", json!([])),
        (
            1,
            "UPDATE app.notes SET body = 'one edited' WHERE id = 1",
            json!([]),
        ),
        (1, "DELETE FROM app.notes WHERE id = 2", json!([])),
        (1, "SELECT id, body FROM app.notes WHERE id = 1", json!([])),
        (1, "SELECT id, body FROM app.notes WHERE id = 2", json!([])),
        (1, "SELECT id, body FROM app.notes WHERE id = 3", json!([])),
        (
            1,
            "INSERT INTO app.notes (id, body) VALUES (2, 'two again')",
            json!([]),
        ),
        (
            1,
            "INSERT INTO app.notes (id, body) VALUES (3, 'dup of a flushed row')",
            json!([]),
        ),
        (1, "SELECT id, body FROM app.notes WHERE id = 2", json!([])),
        (1, "SELECT count(*) AS n FROM app.auto", json!([])),
    ];
    for (who, sql, params) in statements {
        let request = json!({"sql": sql, "params": params});
        let (fast_status, fast_body) = fast.sql_body(&fast_tokens[who], request.clone()).await;
        let (slow_status, slow_body) = slow.sql_body(&slow_tokens[who], request).await;
        if sql.starts_with("FLUSH") {
            assert_eq!((fast_status, slow_status), (200, 200), "{sql}");
            let job = |body: &Value| {
                body["results"][0]["rows"][0]["job_id"]
                    .as_str()
                    .unwrap()
                    .to_string()
            };
            fast.wait_job(&fast_tokens[0], &job(&fast_body)).await;
            slow.wait_job(&slow_tokens[0], &job(&slow_body)).await;
            continue;
        }
        assert_eq!(
            fast_status, slow_status,
            "{sql}: {fast_body} vs {slow_body}"
        );
        assert_eq!(masked(fast_body), masked(slow_body), "{sql}");
    }
}
