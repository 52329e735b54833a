//! The Postgres wire listener against the real server, driven by a real
//! Postgres client library (tokio-postgres): startup and password
//! authentication, the simple and the extended query protocol (parameters,
//! binary results, prepared statements), errors with their SQLSTATEs, the
//! same permissions as HTTP, and hostile input.

use std::time::{Duration, SystemTime};

use kalamdb_tests::{ROOT_PASSWORD, TestServer};
use tokio_postgres::error::SqlState;
use tokio_postgres::{Client, NoTls, SimpleQueryMessage};

async fn connect(
    server: &TestServer,
    user: &str,
    password: &str,
    dbname: &str,
) -> Result<Client, tokio_postgres::Error> {
    let addr = server.pg_addr();
    let (host, port) = addr.rsplit_once(':').expect("host:port");
    let (client, connection) = tokio_postgres::Config::new()
        .host(host)
        .port(port.parse().unwrap())
        .user(user)
        .password(password)
        .dbname(dbname)
        .connect_timeout(Duration::from_secs(10))
        .connect(NoTls)
        .await?;
    tokio::spawn(connection);
    Ok(client)
}

/// Rows of the caller's partition of `notes`, read with binary results.
async fn count_notes(client: &Client) -> i64 {
    client
        .query_one("SELECT count(*) FROM notes", &[])
        .await
        .unwrap()
        .get(0)
}

async fn setup() -> (TestServer, String) {
    TestServer::prepared(
        &[],
        "CREATE NAMESPACE app;
         CREATE USER TABLE app.notes (id BIGINT PRIMARY KEY, body TEXT, n INT, score DOUBLE, ok BOOLEAN, at TIMESTAMP DEFAULT NOW());
         CREATE SHARED TABLE app.config (name TEXT PRIMARY KEY, value TEXT);
         CREATE USER 'alice' WITH PASSWORD 'pw-alice-1' ROLE user;
         CREATE USER 'bob' WITH PASSWORD 'pw-bob-1' ROLE user",
    )
    .await
}

/// What a simple query returned: the text cells of its rows and the row
/// counts of its command completions.
fn simple(messages: &[SimpleQueryMessage]) -> (Vec<Vec<Option<String>>>, Vec<u64>) {
    let mut rows = Vec::new();
    let mut counts = Vec::new();
    for message in messages {
        match message {
            SimpleQueryMessage::Row(row) => rows.push(
                (0..row.len())
                    .map(|i| row.get(i).map(str::to_string))
                    .collect(),
            ),
            SimpleQueryMessage::CommandComplete(n) => counts.push(*n),
            _ => {}
        }
    }
    (rows, counts)
}

#[tokio::test]
async fn simple_queries_run_batches_like_http() {
    let (server, root) = setup().await;
    let alice = connect(&server, "alice", "pw-alice-1", "app")
        .await
        .unwrap();
    // The database names the default namespace; a batch runs in order.
    let messages = alice
        .simple_query(
            "INSERT INTO notes (id, body, n, score, ok) VALUES (1, 'one', 10, 1.5, true), (2, NULL, NULL, NULL, false);
             UPDATE notes SET body = 'two' WHERE id = 2;
             SELECT id, body, n, score, ok FROM notes ORDER BY id",
        )
        .await
        .unwrap();
    let (rows, counts) = simple(&messages);
    assert_eq!(counts, [2, 1, 2], "INSERT 0 2, UPDATE 1, SELECT 2");
    let text =
        |v: &[&str]| -> Vec<Option<String>> { v.iter().map(|s| Some(s.to_string())).collect() };
    assert_eq!(rows[0], text(&["1", "one", "10", "1.5", "t"]));
    assert_eq!(
        rows[1],
        vec![
            Some("2".into()),
            Some("two".into()),
            None,
            None,
            Some("f".into())
        ]
    );
    // The same rows over HTTP, as alice.
    let token = server.token("alice", "pw-alice-1").await;
    let http = server
        .query_ok(
            &token,
            "SELECT id, body, n, score, ok FROM app.notes ORDER BY id",
        )
        .await;
    assert_eq!(http[0]["id"], "1");
    assert_eq!(http[0]["body"], "one");
    assert_eq!(http[1]["body"], "two");
    // Timestamps print as timestamptz does.
    let (rows, _) = simple(
        &alice
            .simple_query("SELECT at FROM notes WHERE id = 1")
            .await
            .unwrap(),
    );
    let at = rows[0][0].clone().unwrap();
    assert!(at.ends_with("+00") && at.as_bytes()[10] == b' ', "{at}");
    // An empty query is answered, not refused.
    alice.simple_query("  ;  ").await.unwrap();
    // Root sees no rows of alice's partition as its own.
    let root_pg = connect(&server, "root", ROOT_PASSWORD, "postgres")
        .await
        .unwrap();
    let (rows, _) = simple(
        &root_pg
            .simple_query("SELECT count(*) FROM app.notes")
            .await
            .unwrap(),
    );
    assert_eq!(rows[0][0].as_deref(), Some("0"));
    drop(root);
}

#[tokio::test]
async fn parameters_binary_results_and_prepared_statements() {
    let (server, _root) = setup().await;
    let alice = connect(&server, "alice", "pw-alice-1", "app")
        .await
        .unwrap();
    let insert = alice
        .prepare("INSERT INTO notes (id, body, n, score, ok) VALUES ($1, $2, $3, $4, $5)")
        .await
        .unwrap();
    for i in 1..=20i64 {
        let affected = alice
            .execute(
                &insert,
                &[
                    &i,
                    &format!("note {i} 'quoted'"),
                    &(i as i32 * 10),
                    &(i as f64 / 4.0),
                    &(i % 2 == 0),
                ],
            )
            .await
            .unwrap();
        assert_eq!(affected, 1);
    }
    // tokio-postgres asks for binary results: every type decodes.
    let row = alice
        .query_one(
            "SELECT id, body, n, score, ok, at, _seq FROM notes WHERE id = $1",
            &[&7i64],
        )
        .await
        .unwrap();
    assert_eq!(row.get::<_, i64>("id"), 7);
    assert_eq!(row.get::<_, String>("body"), "note 7 'quoted'");
    assert_eq!(row.get::<_, i32>("n"), 70);
    assert_eq!(row.get::<_, f64>("score"), 1.75);
    assert!(!row.get::<_, bool>("ok"));
    let at: SystemTime = row.get("at");
    let age = SystemTime::now().duration_since(at).unwrap_or_default();
    assert!(age < Duration::from_secs(600), "{at:?}");
    assert!(row.get::<_, i64>("_seq") > 0);
    // A prepared query, run many times with different parameters.
    let by_range = alice
        .prepare("SELECT id FROM notes WHERE id >= $1 AND id < $2 ORDER BY id")
        .await
        .unwrap();
    for start in [1i64, 5, 15] {
        let ids: Vec<i64> = alice
            .query(&by_range, &[&start, &(start + 3)])
            .await
            .unwrap()
            .iter()
            .map(|r| r.get(0))
            .collect();
        assert_eq!(ids, (start..start + 3).collect::<Vec<_>>());
    }
    // NULL parameters and results.
    alice
        .execute(
            "INSERT INTO notes (id, body) VALUES ($1, $2)",
            &[&100i64, &Option::<String>::None],
        )
        .await
        .unwrap();
    let row = alice
        .query_one("SELECT body, n FROM notes WHERE id = $1", &[&100i64])
        .await
        .unwrap();
    assert_eq!(row.get::<_, Option<String>>(0), None);
    assert_eq!(row.get::<_, Option<i32>>(1), None);
    // Bob's partition is his own, over this protocol too.
    let bob = connect(&server, "bob", "pw-bob-1", "app").await.unwrap();
    assert_eq!(count_notes(&bob).await, 0);
}

#[tokio::test]
async fn errors_carry_sqlstates_and_the_session_goes_on() {
    let (server, _root) = setup().await;
    let wrong = connect(&server, "alice", "not-her-password", "app").await;
    let Err(error) = wrong else {
        panic!("a wrong password is refused")
    };
    assert_eq!(error.code(), Some(&SqlState::INVALID_PASSWORD), "{error}");
    let unknown = connect(&server, "nobody", "pw", "app").await;
    assert_eq!(
        unknown.err().and_then(|e| e.code().cloned()),
        Some(SqlState::INVALID_PASSWORD)
    );

    let alice = connect(&server, "alice", "pw-alice-1", "app")
        .await
        .unwrap();
    let error = alice
        .query("SELECT * FROM missing WHERE id = $1", &[&1i64])
        .await
        .unwrap_err();
    assert_eq!(error.code(), Some(&SqlState::UNDEFINED_TABLE), "{error}");
    let error = alice.simple_query("SELEC 1").await.unwrap_err();
    assert_eq!(error.code(), Some(&SqlState::SYNTAX_ERROR), "{error}");
    // A user may not create tables (403 over HTTP).
    let error = alice
        .simple_query("CREATE SHARED TABLE app.x (id BIGINT PRIMARY KEY)")
        .await
        .unwrap_err();
    assert_eq!(
        error.code(),
        Some(&SqlState::INSUFFICIENT_PRIVILEGE),
        "{error}"
    );
    // Transactions are refused, not pretended.
    let error = alice.simple_query("BEGIN").await.unwrap_err();
    assert!(format!("{error:?}").contains("transactions"), "{error:?}");
    // A failed statement of a batch stops it; earlier ones stay done.
    let error = alice
        .simple_query("INSERT INTO notes (id) VALUES (1); INSERT INTO notes (id) VALUES (1)")
        .await
        .unwrap_err();
    assert_eq!(error.code(), Some(&SqlState::UNIQUE_VIOLATION), "{error}");
    // The session is still usable after every error.
    assert_eq!(count_notes(&alice).await, 1);
}

#[tokio::test]
async fn a_dropped_user_loses_the_session_and_hostile_input_is_refused() {
    let (server, root) = setup().await;
    let bob = connect(&server, "bob", "pw-bob-1", "app").await.unwrap();
    bob.simple_query("SELECT 1").await.unwrap();
    // A changed role or password ends a session, as a dropped user does.
    let alice = connect(&server, "alice", "pw-alice-1", "app")
        .await
        .unwrap();
    server
        .query_ok(&root, "ALTER USER 'alice' SET ROLE service")
        .await;
    let error = alice.simple_query("SELECT 1").await.unwrap_err();
    assert!(
        format!("{error:?}").contains("role or password changed"),
        "{error:?}"
    );
    let alice = connect(&server, "alice", "pw-alice-1", "app")
        .await
        .unwrap();
    server
        .query_ok(&root, "ALTER USER 'alice' SET PASSWORD 'pw-alice-2'")
        .await;
    assert!(alice.simple_query("SELECT 1").await.is_err());
    assert!(
        connect(&server, "alice", "pw-alice-1", "app")
            .await
            .is_err()
    );
    server.query_ok(&root, "DROP USER 'bob'").await;
    let error = bob.simple_query("SELECT 1").await.unwrap_err();
    assert!(
        format!("{error:?}").contains("no longer exists") || bob.is_closed(),
        "{error:?}"
    );

    // Raw bytes: a huge length, a bad startup and an unknown message.
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let addr = server.pg_addr();
    for packet in [
        vec![0x7f, 0xff, 0xff, 0xff, 0, 3, 0, 0],
        vec![0, 0, 0, 8, 0, 9, 0, 0],
        b"GET / HTTP/1.1\r\n\r\n".to_vec(),
    ] {
        let mut socket = tokio::net::TcpStream::connect(&addr).await.unwrap();
        socket.write_all(&packet).await.unwrap();
        let mut reply = Vec::new();
        let read = tokio::time::timeout(Duration::from_secs(10), socket.read_to_end(&mut reply));
        read.await
            .expect("the server closes a bad connection")
            .unwrap_or_default();
    }
    // Prepared statements are bounded per connection.
    let alice = connect(&server, "alice", "pw-alice-2", "app")
        .await
        .unwrap();
    // Kept: tokio-postgres closes a statement it drops.
    let (mut kept, mut refused) = (Vec::new(), None);
    for i in 0..1100 {
        match alice.prepare(&format!("SELECT {i} AS n")).await {
            Ok(statement) => kept.push(statement),
            Err(e) => {
                refused = Some((i, e));
                break;
            }
        }
    }
    let (at, error) = refused.expect("the 1,025th prepared statement is refused");
    assert_eq!(at, 1024, "{error:?}");
    assert!(
        format!("{error:?}").contains("prepared statements"),
        "{error:?}"
    );
    // A message over the request limit ends that connection only.
    let alice = connect(&server, "alice", "pw-alice-2", "app")
        .await
        .unwrap();
    let huge = format!("SELECT '{}'", "x".repeat(11 * 1024 * 1024));
    assert!(alice.simple_query(&huge).await.is_err());
    let alice = connect(&server, "alice", "pw-alice-2", "app")
        .await
        .unwrap();
    alice.simple_query("SELECT 1").await.unwrap();
    assert_eq!(server.get("/health").await.0, 200);
}

#[tokio::test]
async fn the_listener_can_be_turned_off_and_a_taken_address_is_an_error() {
    let off = TestServer::start_with(&[("KALAMDB_PG_LISTEN", "off")]);
    assert_eq!(off.get("/health").await.0, 200);
    assert!(!off.log().contains("postgres listening"));

    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = taken.local_addr().unwrap().to_string();
    let data = tempfile::tempdir().unwrap();
    let output = std::process::Command::new(kalamdb_tests::server_binary())
        .env("KALAMDB_DATA_DIR", data.path())
        .env("KALAMDB_LISTEN", "127.0.0.1:0")
        .env("KALAMDB_PG_LISTEN", &addr)
        .output()
        .expect("run the server");
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("KALAMDB_PG_LISTEN"), "{stderr}");

    let bad = std::process::Command::new(kalamdb_tests::server_binary())
        .env("KALAMDB_DATA_DIR", data.path())
        .env("KALAMDB_PG_LISTEN", "nowhere")
        .output()
        .expect("run the server");
    assert!(!bad.status.success());
    assert!(String::from_utf8_lossy(&bad.stderr).contains("pg_listen"));
}
