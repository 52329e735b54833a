//! Schema evolution against the real server: ALTER TABLE through ADD,
//! RENAME, MODIFY and DROP with flushes in between, reads across versions
//! before and after compaction and a restart, bad input, live queries, and
//! ALTERs racing with inserts and flushes.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use kalamdb_tests::ws::{connect, next, send};
use kalamdb_tests::{MANUAL_ONLY, TestServer, parquet_files};
use serde_json::{Value, json};

const SETUP: &str = "CREATE NAMESPACE app;
     CREATE USER 'alice' WITH PASSWORD 'pw-a' ROLE user;
     CREATE USER 'bob' WITH PASSWORD 'pw-b' ROLE user;
     CREATE USER TABLE app.notes (id BIGINT PRIMARY KEY, title TEXT, n INT, old TEXT)";

async fn alter(server: &TestServer, root: &str, sql: &str) {
    let rows = server.query_ok(root, sql).await;
    assert!(rows.is_empty(), "{sql}: {rows:?}");
}

/// The rows alice and bob see, as compact tuples.
async fn snapshot(server: &TestServer, alice: &str, bob: &str) -> (Vec<Value>, Vec<Value>) {
    let sql = "SELECT id, subject, n, tag, old FROM app.notes ORDER BY id";
    (
        server.query_ok(alice, sql).await,
        server.query_ok(bob, sql).await,
    )
}

fn ids(rows: &[Value]) -> Vec<i64> {
    rows.iter()
        .map(|r| r["id"].as_str().unwrap().parse().unwrap())
        .collect()
}

/// What alice and bob must read after the ALTERs of the first test, in
/// every way a query can reach the rows.
async fn check(server: &TestServer, alice: &str, bob: &str) {
    let expected_alice = vec![
        json!({"id": "1", "subject": "a", "n": "1", "tag": "upd", "old": null}),
        json!({"id": "2", "subject": "b", "n": "2", "tag": "none", "old": null}),
        json!({"id": "3", "subject": "c", "n": "3", "tag": "none", "old": null}),
        json!({"id": "4", "subject": "d", "n": "4", "tag": "t4", "old": null}),
        json!({"id": "5", "subject": "e", "n": "5000000000", "tag": "t5", "old": null}),
        json!({"id": "6", "subject": "f", "n": "6", "tag": "t6", "old": "new-old"}),
    ];
    let expected_bob =
        vec![json!({"id": "1", "subject": "bob", "n": "10", "tag": "none", "old": null})];
    let (a, b) = snapshot(server, alice, bob).await;
    assert_eq!(a, expected_alice);
    assert_eq!(b, expected_bob);
    // Filters over files that lack the column, or hold it under another
    // name or type.
    let filtered = [
        (
            "SELECT id FROM app.notes WHERE tag = 'none' ORDER BY id",
            vec![2, 3],
        ),
        (
            "SELECT id FROM app.notes WHERE old IS NULL ORDER BY id",
            vec![1, 2, 3, 4, 5],
        ),
        (
            "SELECT id FROM app.notes WHERE n > 3 ORDER BY id",
            vec![4, 5, 6],
        ),
        ("SELECT id FROM app.notes WHERE subject = 'b'", vec![2]),
        ("SELECT id FROM app.notes WHERE id = 2", vec![2]),
    ];
    for (sql, expected) in filtered {
        assert_eq!(ids(&server.query_ok(alice, sql).await), expected, "{sql}");
    }
    let star = server
        .query_ok(alice, "SELECT * FROM app.notes WHERE id = 3")
        .await;
    let names: Vec<&String> = star[0].as_object().unwrap().keys().collect();
    for name in ["id", "subject", "n", "tag", "old", "_seq"] {
        assert!(names.iter().any(|n| *n == name), "{name} in {names:?}");
    }
    assert!(!names.iter().any(|n| *n == "title"), "{names:?}");
}

/// The Parquet field ids of a file's user columns.
fn field_ids(path: &std::path::Path) -> Vec<(String, i32)> {
    use parquet::file::reader::{FileReader, SerializedFileReader};
    let reader = SerializedFileReader::new(std::fs::File::open(path).unwrap()).unwrap();
    let schema = reader.metadata().file_metadata().schema_descr_ptr();
    schema
        .root_schema()
        .get_fields()
        .iter()
        .filter(|f| f.get_basic_info().has_id())
        .map(|f| (f.name().to_string(), f.get_basic_info().id()))
        .collect()
}

async fn schema_version(server: &TestServer, root: &str, table: &str) -> Value {
    server
        .query_ok(
            root,
            &format!("SELECT schema_version FROM system.tables WHERE table_name = '{table}'"),
        )
        .await[0]["schema_version"]
        .clone()
}

#[tokio::test]
async fn reads_span_every_schema_version_before_and_after_compaction_and_restart() {
    let (server, root) = TestServer::prepared(&MANUAL_ONLY, SETUP).await;
    let alice = server.token("alice", "pw-a").await;
    let bob = server.token("bob", "pw-b").await;
    // Version 1: flushed rows of two users, and one left hot.
    server
        .query_ok(
            &alice,
            "INSERT INTO app.notes VALUES (1, 'a', 1, 'x'), (2, 'b', 2, 'y')",
        )
        .await;
    server
        .query_ok(&bob, "INSERT INTO app.notes VALUES (1, 'bob', 10, 'z')")
        .await;
    server.run_job(&root, "FLUSH TABLE app.notes").await;
    server
        .query_ok(&alice, "INSERT INTO app.notes VALUES (3, 'c', 3, 'w')")
        .await;
    // Version 2: an added column with a default; a row written and flushed.
    alter(
        &server,
        &root,
        "ALTER TABLE app.notes ADD COLUMN tag TEXT DEFAULT 'none'",
    )
    .await;
    server
        .query_ok(
            &alice,
            "INSERT INTO app.notes (id, title, n, old, tag) VALUES (4, 'd', 4, 'v', 't4')",
        )
        .await;
    server.run_job(&root, "FLUSH TABLE app.notes").await;
    // Versions 3 and 4: a rename and a widening.
    alter(
        &server,
        &root,
        "ALTER TABLE app.notes RENAME COLUMN title TO subject",
    )
    .await;
    alter(
        &server,
        &root,
        "ALTER TABLE app.notes MODIFY COLUMN n BIGINT",
    )
    .await;
    server
        .query_ok(
            &alice,
            "INSERT INTO app.notes (id, subject, n, old, tag) VALUES (5, 'e', 5000000000, 'u', 't5')",
        )
        .await;
    server.run_job(&root, "FLUSH TABLE app.notes").await;
    // Versions 5 and 6: a column dropped and one of the same name added:
    // a different column, whose old values never reappear.
    alter(&server, &root, "ALTER TABLE app.notes DROP COLUMN old").await;
    alter(&server, &root, "ALTER TABLE app.notes ADD COLUMN old TEXT").await;
    server
        .query_ok(
            &alice,
            "INSERT INTO app.notes (id, subject, n, tag, old) VALUES (6, 'f', 6, 't6', 'new-old')",
        )
        .await;
    // An update of a row flushed under version 1.
    server
        .query_ok(&alice, "UPDATE app.notes SET tag = 'upd' WHERE id = 1")
        .await;

    check(&server, &alice, &bob).await;
    server.run_job(&root, "FLUSH TABLE app.notes").await;
    check(&server, &alice, &bob).await;
    server.run_job(&root, "COMPACT TABLE app.notes").await;
    check(&server, &alice, &bob).await;
    // The compacted file is in the current version and carries the column
    // ids as Parquet field ids: `old` is the new column (6), not the
    // dropped one (4).
    let files = parquet_files(&server.data_dir().join("storage/app/notes/alice"));
    assert_eq!(files.len(), 1, "{files:?}");
    assert_eq!(
        field_ids(&files[0]),
        [("id", 1), ("subject", 2), ("n", 3), ("tag", 5), ("old", 6)]
            .map(|(name, id)| (name.to_string(), id))
    );
    let server = server.restart();
    check(&server, &alice, &bob).await;

    let describe = server.query_ok(&root, "DESCRIBE TABLE app.notes").await;
    assert!(
        describe.iter().all(|r| r["schema_version"] == 6),
        "{describe:?}"
    );
    let names: Vec<&str> = describe
        .iter()
        .map(|r| r["column_name"].as_str().unwrap())
        .collect();
    assert_eq!(&names[..5], ["id", "subject", "n", "tag", "old"]);
    let columns = server
        .query_ok(
            &root,
            "SELECT column_name, data_type FROM information_schema.columns WHERE table_schema = 'app' AND table_name = 'notes' ORDER BY ordinal_position",
        )
        .await;
    let listed: Vec<(&str, &str)> = columns
        .iter()
        .map(|c| {
            (
                c["column_name"].as_str().unwrap(),
                c["data_type"].as_str().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        &listed[..5],
        [
            ("id", "BIGINT"),
            ("subject", "TEXT"),
            ("n", "BIGINT"),
            ("tag", "TEXT"),
            ("old", "TEXT")
        ]
    );
    let history = server
        .query_ok(&root, "DESCRIBE TABLE app.notes HISTORY")
        .await;
    let changes: Vec<&str> = history
        .iter()
        .map(|r| r["changes"].as_str().unwrap())
        .collect();
    assert_eq!(
        changes,
        [
            "created",
            "added column tag TEXT",
            "renamed column title to subject",
            "changed column n from INT to BIGINT",
            "dropped column old",
            "added column old TEXT",
        ]
    );
    let tables = server
        .query_ok(
            &root,
            "SELECT schema_version FROM system.tables WHERE table_name = 'notes'",
        )
        .await;
    assert_eq!(tables[0]["schema_version"], 6);
}

/// `tests/fixtures/data-v1` was written by the release before schema
/// versions (6b39df1; see tests/fixtures/README.md): rows without a
/// version, schemas without column ids, manifest entries without a schema
/// version, and the `local` location at the path it was made under. It is
/// read as version 1 at start, with nothing rewritten, and altered like
/// any table.
#[tokio::test]
async fn a_data_directory_of_the_previous_release_is_read_and_altered() {
    let fixture = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("fixtures/data-v1");
    let server = TestServer::start_on_copy(&fixture);
    let root = server.root_token().await;
    let alice = server.token("alice", "pw-a").await;
    let bob = server.token("bob", "pw-b").await;
    let notes = "SELECT id, title, n FROM app.notes ORDER BY id";
    assert_eq!(
        server.query_ok(&alice, notes).await,
        vec![
            json!({"id": "1", "title": "a1", "n": 1}),
            json!({"id": "2", "title": "a2-updated", "n": 2}),
            json!({"id": "3", "title": "a3", "n": 3}),
        ]
    );
    assert_eq!(
        server.query_ok(&bob, notes).await,
        vec![json!({"id": "1", "title": "b1", "n": 10})]
    );
    let rooms = server
        .query_ok(&root, "SELECT id, name FROM app.rooms ORDER BY id")
        .await;
    assert_eq!(rooms.len(), 3, "{rooms:?}");
    let describe = server.query_ok(&root, "DESCRIBE TABLE app.notes").await;
    let ids: Vec<&Value> = describe.iter().take(3).map(|r| &r["column_id"]).collect();
    assert_eq!(ids, [1, 2, 3]);
    assert_eq!(schema_version(&server, &root, "notes").await, 1);
    alter(
        &server,
        &root,
        "ALTER TABLE app.notes ADD COLUMN tag TEXT DEFAULT 'v1'",
    )
    .await;
    alter(
        &server,
        &root,
        "ALTER TABLE app.notes RENAME COLUMN title TO subject",
    )
    .await;
    server
        .query_ok(
            &alice,
            "INSERT INTO app.notes (id, subject, n, tag) VALUES (4, 'a4', 4, 'v3')",
        )
        .await;
    server.run_job(&root, "FLUSH TABLE app.notes").await;
    server.run_job(&root, "COMPACT TABLE app.notes").await;
    let server = server.restart();
    let alice = server.token("alice", "pw-a").await;
    assert_eq!(
        server
            .query_ok(&alice, "SELECT id, subject, tag FROM app.notes ORDER BY id")
            .await,
        vec![
            json!({"id": "1", "subject": "a1", "tag": "v1"}),
            json!({"id": "2", "subject": "a2-updated", "tag": "v1"}),
            json!({"id": "3", "subject": "a3", "tag": "v1"}),
            json!({"id": "4", "subject": "a4", "tag": "v3"}),
        ]
    );
}

#[tokio::test]
async fn bad_alters_are_refused_and_change_nothing() {
    let (server, root) = TestServer::prepared(
        &MANUAL_ONLY,
        &format!(
            "{SETUP}; CREATE STREAM TABLE app.typing (who TEXT) WITH (retention = '10s');
             CREATE SHARED TABLE app.empty (id BIGINT PRIMARY KEY)"
        ),
    )
    .await;
    let alice = server.token("alice", "pw-a").await;
    server
        .query_ok(&alice, "INSERT INTO app.notes VALUES (1, 'a', 1, 'x')")
        .await;
    let refused = [
        (
            "ALTER TABLE app.nope ADD COLUMN c INT",
            "app.nope does not exist",
        ),
        (
            "ALTER TABLE app.notes DROP COLUMN nope",
            "has no column nope",
        ),
        (
            "ALTER TABLE app.notes RENAME COLUMN nope TO x",
            "has no column nope",
        ),
        (
            "ALTER TABLE app.notes ADD COLUMN title TEXT",
            "already has a column title",
        ),
        (
            "ALTER TABLE app.notes RENAME COLUMN n TO title",
            "already has a column title",
        ),
        (
            "ALTER TABLE app.notes ADD COLUMN c INT NOT NULL",
            "NOT NULL",
        ),
        (
            "ALTER TABLE app.notes MODIFY COLUMN n BOOLEAN",
            "only widening",
        ),
        (
            "ALTER TABLE app.notes MODIFY COLUMN title INT",
            "only widening",
        ),
        ("ALTER TABLE app.notes DROP COLUMN _seq", "system column"),
        (
            "ALTER TABLE app.notes RENAME COLUMN _updated TO u",
            "system column",
        ),
        (
            "ALTER TABLE app.notes ADD COLUMN _x INT",
            "reserved for system columns",
        ),
        ("ALTER TABLE app.notes DROP COLUMN id", "primary key"),
        ("ALTER TABLE app.notes MODIFY COLUMN id TEXT", "primary key"),
        (
            "ALTER TABLE app.notes RENAME COLUMN id TO key",
            "primary key",
        ),
        (
            "ALTER TABLE app.notes ADD COLUMN k INT PRIMARY KEY",
            "primary key never changes",
        ),
        (
            "ALTER TABLE app.typing ADD COLUMN c INT",
            "stream table app.typing cannot be altered",
        ),
        (
            "ALTER TABLE app.notes SET FLUSH POLICY ROWS 0",
            "at least 1",
        ),
        (
            "ALTER TABLE app.notes ADD COLUMN c BLOB",
            "unsupported type",
        ),
        ("ALTER TABLE app.notes FROB", "Expected"),
    ];
    for (sql, expected) in refused {
        server.refused(&root, sql, 400, expected).await;
    }
    server
        .refused(
            &alice,
            "ALTER TABLE app.notes ADD COLUMN c INT",
            403,
            "ALTER TABLE",
        )
        .await;
    // Nothing changed.
    assert_eq!(schema_version(&server, &root, "notes").await, 1);
    // NOT NULL without a default is fine on a table without rows; a
    // type change to the same type changes nothing.
    alter(
        &server,
        &root,
        "ALTER TABLE app.empty ADD COLUMN c INT NOT NULL",
    )
    .await;
    let (status, body) = server
        .sql(&root, "ALTER TABLE app.notes MODIFY COLUMN title TEXT")
        .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(schema_version(&server, &root, "notes").await, 1);
    // Options are versioned changes too.
    alter(
        &server,
        &root,
        "ALTER TABLE app.notes SET FLUSH POLICY ROWS 500 INTERVAL '10 minutes'",
    )
    .await;
    alter(
        &server,
        &root,
        "ALTER TABLE app.notes SET DELETED RETENTION '2 days'",
    )
    .await;
    let table = server
        .query_ok(
            &root,
            "SELECT schema_version, flush_policy, deleted_retention_hours FROM system.tables WHERE table_name = 'notes'",
        )
        .await;
    assert_eq!(table[0]["schema_version"], 3, "{table:?}");
    assert_eq!(table[0]["deleted_retention_hours"], 48);
    assert!(
        table[0]["flush_policy"].as_str().unwrap().contains("500"),
        "{table:?}"
    );
}

#[tokio::test]
async fn live_queries_follow_an_alter_or_end_with_schema_changed() {
    let (server, root) = TestServer::prepared(&MANUAL_ONLY, SETUP).await;
    let alice = server.token("alice", "pw-a").await;
    server
        .query_ok(&alice, "INSERT INTO app.notes VALUES (1, 'a', 1, 'x')")
        .await;
    let mut socket = connect(&server, Some(&alice)).await;
    let subscriptions = [
        ("all", "SELECT * FROM app.notes"),
        ("titles", "SELECT id, title FROM app.notes WHERE n > 0"),
        ("olds", "SELECT id FROM app.notes WHERE old = 'x'"),
    ];
    for (id, sql) in subscriptions {
        send(
            &mut socket,
            json!({"type": "subscribe", "id": id, "sql": sql}),
        )
        .await;
        assert_eq!(next(&mut socket).await["type"], "subscribed");
        assert_eq!(next(&mut socket).await["type"], "initial_data");
    }
    // Dropping `old` ends the subscription filtering on it, only that one.
    alter(&server, &root, "ALTER TABLE app.notes DROP COLUMN old").await;
    let ended = next(&mut socket).await;
    assert_eq!(ended["type"], "unsubscribed", "{ended}");
    assert_eq!(ended["subscription_id"], "olds");
    assert_eq!(ended["reason"], "schema_changed");
    alter(
        &server,
        &root,
        "ALTER TABLE app.notes ADD COLUMN tag TEXT DEFAULT 'none'",
    )
    .await;
    server
        .query_ok(
            &alice,
            "INSERT INTO app.notes (id, title, n, tag) VALUES (2, 'b', 2, 't')",
        )
        .await;
    let mut changes = Vec::new();
    for _ in 0..2 {
        changes.push(next(&mut socket).await);
    }
    changes.sort_by_key(|c| c["subscription_id"].as_str().unwrap().to_string());
    assert_eq!(changes[0]["subscription_id"], "all", "{changes:?}");
    assert_eq!(changes[0]["rows"][0]["tag"], "t", "{changes:?}");
    assert!(changes[0]["rows"][0].get("old").is_none(), "{changes:?}");
    assert_eq!(changes[1]["subscription_id"], "titles");
    assert_eq!(changes[1]["rows"][0], json!({"id": "2", "title": "b"}));
    // Renaming a column the other one selects ends it.
    alter(
        &server,
        &root,
        "ALTER TABLE app.notes RENAME COLUMN title TO subject",
    )
    .await;
    let ended = next(&mut socket).await;
    assert_eq!(ended["subscription_id"], "titles", "{ended}");
    assert_eq!(ended["reason"], "schema_changed");
    // A row written under version 1 reaches `SELECT *` in today's shape.
    server
        .query_ok(&alice, "UPDATE app.notes SET subject = 'A' WHERE id = 1")
        .await;
    let change = next(&mut socket).await;
    assert_eq!(change["change_type"], "update", "{change}");
    assert_eq!(change["rows"][0]["subject"], "A");
    assert_eq!(change["rows"][0]["tag"], "none");
    assert_eq!(change["old_values"][0]["subject"], "a");
}

#[tokio::test]
async fn alters_racing_inserts_and_flushes_lose_nothing() {
    let (server, root) = TestServer::prepared(
        &MANUAL_ONLY,
        "CREATE NAMESPACE app;
         CREATE USER 'alice' WITH PASSWORD 'pw-a' ROLE user;
         CREATE USER TABLE app.race (id BIGINT PRIMARY KEY, v BIGINT, w BIGINT)",
    )
    .await;
    let server = Arc::new(server);
    let alice = server.token("alice", "pw-a").await;
    let done = Arc::new(AtomicBool::new(false));
    let mut writers = Vec::new();
    for writer in 0..3i64 {
        let (server, alice, done) = (server.clone(), alice.clone(), done.clone());
        writers.push(tokio::spawn(async move {
            let mut written = Vec::new();
            let mut i = 0i64;
            while !done.load(Ordering::Relaxed) || i < 20 {
                let id = writer * 1_000_000 + i;
                let sql = format!(
                    "INSERT INTO app.race (id, v, w) VALUES ({id}, {}, {})",
                    id * 2,
                    id * 3
                );
                let (status, body) = server.sql(&alice, &sql).await;
                assert_eq!(status, 200, "{sql}: {body}");
                if i % 5 == 0 {
                    let sql = format!("UPDATE app.race SET w = w + 1 WHERE id = {id}");
                    let (status, body) = server.sql(&alice, &sql).await;
                    assert_eq!(status, 200, "{sql}: {body}");
                }
                written.push(id);
                i += 1;
            }
            written
        }));
    }
    for round in 0..6 {
        alter(
            &server,
            &root,
            &format!("ALTER TABLE app.race ADD COLUMN c{round} INT DEFAULT {round}"),
        )
        .await;
        let rows = server.query_ok(&root, "FLUSH TABLE app.race").await;
        let job = rows[0]["job_id"].as_str().unwrap().to_string();
        if round == 3 {
            alter(
                &server,
                &root,
                "ALTER TABLE app.race MODIFY COLUMN c0 BIGINT",
            )
            .await;
            alter(&server, &root, "ALTER TABLE app.race DROP COLUMN c1").await;
        }
        server.wait_job(&root, &job).await;
    }
    done.store(true, Ordering::Relaxed);
    let mut written = Vec::new();
    for writer in writers {
        written.extend(writer.await.unwrap());
    }
    server.run_job(&root, "FLUSH TABLE app.race").await;
    for step in ["read", "COMPACT TABLE app.race"] {
        if step != "read" {
            server.run_job(&root, step).await;
        }
        let rows = server
            .query_ok(&alice, "SELECT id, v, w, c0, c5 FROM app.race ORDER BY id")
            .await;
        let mut expected = written.clone();
        expected.sort();
        assert_eq!(ids(&rows), expected);
        for row in &rows {
            let id: i64 = row["id"].as_str().unwrap().parse().unwrap();
            let v: i64 = row["v"].as_str().unwrap().parse().unwrap();
            let w: i64 = row["w"].as_str().unwrap().parse().unwrap();
            assert_eq!(v, id * 2, "{row}");
            let bump = i64::from((id % 1_000_000) % 5 == 0);
            assert_eq!(w, id * 3 + bump, "{row}");
            assert!(row["c0"].is_string() || row["c0"].is_null(), "{row}");
        }
    }
}
