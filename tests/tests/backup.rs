//! BACKUP DATABASE / SHOW BACKUP / RESTORE DATABASE against the real
//! server: a namespace with USER (several users, hot and flushed rows,
//! deleted rows, two schema versions), SHARED and STREAM tables is backed
//! up, dropped and restored (also under a second name) with every query
//! result unchanged; bad destinations, corrupted and truncated backups,
//! restores onto existing namespaces are refused and change nothing; a
//! backup taken under concurrent writes restores to one consistent point.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use kalamdb_tests::{MANUAL_ONLY, TestServer, parquet_files};
use serde_json::Value;

const SETUP: &str = "CREATE NAMESPACE app;
     CREATE USER 'alice' WITH PASSWORD 'pw-a' ROLE user;
     CREATE USER 'bob' WITH PASSWORD 'pw-b' ROLE user;
     CREATE USER TABLE app.notes (id BIGINT PRIMARY KEY, body TEXT, n INT);
     CREATE SHARED TABLE app.rooms (id INT PRIMARY KEY, name TEXT NOT NULL);
     CREATE STREAM TABLE app.typing (room TEXT) WITH (retention = '1 hour')";

/// The job's row once it has completed or failed.
async fn finish(server: &TestServer, root: &str, rows: Vec<Value>) -> Value {
    assert_eq!(rows[0]["status"], "queued", "{rows:?}");
    let job_id = rows[0]["job_id"].as_str().unwrap().to_string();
    let sql = format!("SELECT * FROM system.jobs WHERE job_id = '{job_id}'");
    let done = server
        .eventually(root, &sql, Duration::from_secs(60), |rows| {
            rows.first()
                .is_some_and(|j| j["status"] == "completed" || j["status"] == "failed")
        })
        .await;
    done[0].clone()
}

async fn run(server: &TestServer, root: &str, sql: &str) -> Value {
    let rows = server.query_ok(root, sql).await;
    finish(server, root, rows).await
}

/// Every query whose result the backup must preserve, for namespace `ns`.
async fn results(server: &TestServer, ns: &str) -> Vec<Vec<Value>> {
    let root = server.root_token().await;
    let alice = server.token("alice", "pw-a").await;
    let bob = server.token("bob", "pw-b").await;
    let mut out = Vec::new();
    for (token, sql) in [
        (&alice, "SELECT * FROM {ns}.notes ORDER BY id"),
        (&bob, "SELECT * FROM {ns}.notes ORDER BY id"),
        (
            &alice,
            "SELECT id, tag FROM {ns}.notes WHERE tag = 'new' ORDER BY id",
        ),
        (&root, "SELECT * FROM {ns}.rooms ORDER BY id"),
        (&root, "SELECT count(*) AS n FROM {ns}.typing"),
    ] {
        out.push(server.query_ok(token, &sql.replace("{ns}", ns)).await);
    }
    out
}

#[tokio::test]
async fn backup_drop_restore_and_restore_as_return_the_same_rows() {
    let (server, root) = TestServer::prepared(&MANUAL_ONLY, SETUP).await;
    let alice = server.token("alice", "pw-a").await;
    let bob = server.token("bob", "pw-b").await;
    server
        .query_ok(
            &alice,
            "INSERT INTO app.notes VALUES (1, 'a1', 1), (2, 'a2', 2), (3, 'a3', 3), (4, 'a4', 4)",
        )
        .await;
    server
        .query_ok(
            &bob,
            "INSERT INTO app.notes VALUES (1, 'b1', 10), (2, 'b2', 20)",
        )
        .await;
    server
        .query_ok(
            &root,
            "INSERT INTO app.rooms VALUES (1, 'lobby'), (2, 'dev')",
        )
        .await;
    server.run_job(&root, "FLUSH TABLE app.notes").await;
    server.run_job(&root, "FLUSH TABLE app.rooms").await;
    // Hot rows over flushed ones: an update, deletes, a second version.
    server
        .query_ok(
            &alice,
            "UPDATE app.notes SET body = 'a2 edited' WHERE id = 2",
        )
        .await;
    server
        .query_ok(&alice, "DELETE FROM app.notes WHERE id = 3")
        .await;
    server
        .query_ok(&bob, "DELETE FROM app.notes WHERE id = 1")
        .await;
    server
        .query_ok(
            &root,
            "ALTER TABLE app.notes ADD COLUMN tag TEXT DEFAULT 'old'",
        )
        .await;
    server
        .query_ok(
            &alice,
            "INSERT INTO app.notes (id, body, n, tag) VALUES (5, 'a5', 5, 'new')",
        )
        .await;
    server
        .query_ok(&root, "INSERT INTO app.rooms VALUES (3, 'ops')")
        .await;
    server
        .query_ok(&alice, "INSERT INTO app.typing (room) VALUES ('lobby')")
        .await;
    let before = results(&server, "app").await;
    assert_eq!(before[0].len(), 4, "{:?}", before[0]);

    let job = run(&server, &root, "BACKUP DATABASE app TO 'nightly/one'").await;
    assert_eq!(job["status"], "completed", "{job}");
    let result: Value = serde_json::from_str(job["result"].as_str().unwrap()).unwrap();
    assert_eq!(result["tables"], 3, "{result}");
    assert!(
        job["trace"].as_str().unwrap().contains("tables_done"),
        "{job}"
    );
    let listed = server.query_ok(&root, "SHOW BACKUP 'nightly/one'").await;
    let names: Vec<&str> = listed
        .iter()
        .map(|r| r["table_name"].as_str().unwrap())
        .collect();
    assert_eq!(listed.len(), 3, "{listed:?}");
    for name in ["notes", "rooms", "typing"] {
        assert!(names.contains(&name), "{names:?}");
    }
    assert!(
        listed
            .iter()
            .all(|r| r["verified"] == true && r["format_version"] == 1)
    );
    let notes = listed.iter().find(|r| r["table_name"] == "notes").unwrap();
    assert_eq!(notes["schema_version"], 2);

    server.query_ok(&root, "DROP NAMESPACE app CASCADE").await;
    let job = run(&server, &root, "RESTORE DATABASE app FROM 'nightly/one'").await;
    assert_eq!(job["status"], "completed", "{job}");
    let mut after = results(&server, "app").await;
    // STREAM events are not backed up: the table is, empty.
    assert_eq!(after[4][0]["n"], "0");
    after[4] = before[4].clone();
    assert_eq!(after, before);
    let history = server
        .query_ok(&root, "DESCRIBE TABLE app.notes HISTORY")
        .await;
    assert_eq!(history.len(), 2);

    let job = run(
        &server,
        &root,
        "RESTORE DATABASE app FROM 'nightly/one' AS app2",
    )
    .await;
    assert_eq!(job["status"], "completed", "{job}");
    let mut copy = results(&server, "app2").await;
    copy[4] = before[4].clone();
    assert_eq!(copy, before);

    // Writes after a restore come after every restored `_seq`.
    let max_seq = |rows: &[Value]| {
        rows.iter()
            .map(|r| r["_seq"].as_str().unwrap().parse::<i64>().unwrap())
            .max()
            .unwrap()
    };
    let restored_max = max_seq(&before[0]);
    server
        .query_ok(
            &alice,
            "INSERT INTO app.notes (id, body) VALUES (9, 'after')",
        )
        .await;
    let rows = server
        .query_ok(&alice, "SELECT * FROM app.notes WHERE id = 9")
        .await;
    assert!(max_seq(&rows) > restored_max);

    // Restored data survives a restart, and compacts.
    let server = server.restart();
    let root = server.root_token().await;
    server.run_job(&root, "COMPACT TABLE app2.notes").await;
    let mut copy = results(&server, "app2").await;
    copy[4] = before[4].clone();
    assert_eq!(copy, before);
}

#[tokio::test]
async fn bad_backups_and_restores_are_refused_and_change_nothing() {
    let (server, root) = TestServer::prepared(&MANUAL_ONLY, SETUP).await;
    let alice = server.token("alice", "pw-a").await;
    server
        .query_ok(
            &alice,
            "INSERT INTO app.notes VALUES (1, 'a1', 1), (2, 'a2', 2)",
        )
        .await;
    server.run_job(&root, "FLUSH TABLE app.notes").await;
    server
        .query_ok(&alice, "INSERT INTO app.notes VALUES (3, 'a3', 3)")
        .await;
    let refused = [
        ("BACKUP DATABASE app TO '../outside'", 400, ".."),
        ("BACKUP DATABASE app TO 'a/../../b'", 400, ".."),
        (
            "BACKUP DATABASE app TO '/etc/kalamdb'",
            400,
            "outside the backup directory",
        ),
        (
            "BACKUP DATABASE app TO ''",
            400,
            "invalid backup destination",
        ),
        (
            "BACKUP DATABASE nope TO 'x'",
            400,
            "namespace nope does not exist",
        ),
        (
            "BACKUP DATABASE app TO STORAGE nowhere PATH 'x'",
            400,
            "nowhere",
        ),
        (
            "BACKUP DATABASE app TO STORAGE local PATH '../x'",
            400,
            "invalid backup path",
        ),
        (
            "RESTORE DATABASE app FROM 'x'",
            400,
            "namespace app already exists",
        ),
        ("SHOW BACKUP 'missing'", 400, "no complete backup"),
        ("BACKUP DATABASE app", 400, "Expected"),
    ];
    for (sql, status, expected) in refused {
        server.refused(&root, sql, status, expected).await;
    }
    for (sql, statement) in [
        ("BACKUP DATABASE app TO 'x'", "BACKUP DATABASE"),
        ("RESTORE DATABASE app FROM 'x' AS other", "RESTORE DATABASE"),
        ("SHOW BACKUP 'x'", "SHOW BACKUP"),
    ] {
        server.refused(&alice, sql, 403, statement).await;
    }

    let job = run(&server, &root, "BACKUP DATABASE app TO 'good'").await;
    assert_eq!(job["status"], "completed", "{job}");
    // The same destination again: refused, the first backup untouched.
    let job = run(&server, &root, "BACKUP DATABASE app TO 'good'").await;
    assert_eq!(job["status"], "failed", "{job}");
    assert!(
        job["error_message"].as_str().unwrap().contains("not empty"),
        "{job}"
    );
    server.query_ok(&root, "SHOW BACKUP 'good'").await;

    // Damaged copies of the good backup.
    let backups = server.data_dir().join("backups");
    let copy = |name: &str| {
        let target = backups.join(name);
        copy_dir(&backups.join("good"), &target);
        target
    };
    let flipped = copy("flipped");
    let file = &parquet_files(&flipped)[0];
    let mut bytes = std::fs::read(file).unwrap();
    let middle = bytes.len() / 2;
    bytes[middle] ^= 0xff;
    std::fs::write(file, bytes).unwrap();
    let truncated = copy("truncated");
    let manifest = truncated.join("manifest.json");
    let text = std::fs::read(&manifest).unwrap();
    std::fs::write(&manifest, &text[..text.len() / 2]).unwrap();
    let missing = copy("missing");
    std::fs::remove_file(&parquet_files(&missing)[0]).unwrap();

    for (name, expected) in [
        ("flipped", "does not match its checksum"),
        ("truncated", "corrupt or truncated"),
        ("missing", "is missing"),
    ] {
        server
            .refused(&root, &format!("SHOW BACKUP '{name}'"), 400, expected)
            .await;
        let job = run(
            &server,
            &root,
            &format!("RESTORE DATABASE app FROM '{name}' AS restored"),
        )
        .await;
        assert_eq!(job["status"], "failed", "{job}");
        assert!(
            job["error_message"].as_str().unwrap().contains(expected),
            "{job}"
        );
    }
    let job = run(
        &server,
        &root,
        "RESTORE DATABASE other FROM 'good' AS restored",
    )
    .await;
    assert_eq!(job["status"], "failed", "{job}");
    assert!(
        job["error_message"]
            .as_str()
            .unwrap()
            .contains("holds namespace app"),
        "{job}"
    );
    // Nothing was created by the failed restores.
    let namespaces = server.query_ok(&root, "SHOW NAMESPACES").await;
    assert_eq!(namespaces.len(), 1, "{namespaces:?}");
    assert!(parquet_files(&server.data_dir().join("storage/restored")).is_empty());
    // And the source namespace is as it was.
    let rows = server
        .query_ok(&alice, "SELECT id FROM app.notes ORDER BY id")
        .await;
    assert_eq!(rows.len(), 3);
}

fn copy_dir(from: &std::path::Path, to: &std::path::Path) {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        let target = to.join(entry.file_name());
        if entry.file_type().unwrap().is_dir() {
            copy_dir(&entry.path(), &target);
        } else {
            std::fs::copy(entry.path(), target).unwrap();
        }
    }
}

#[tokio::test]
async fn a_backup_under_concurrent_writes_restores_to_one_point() {
    // Small automatic flushes, so files are written while the backup runs.
    let env = [
        ("KALAMDB_FLUSH_ROWS", "25"),
        ("KALAMDB_COMPACT_MIN_FILES", "4"),
    ];
    let (server, root) = TestServer::prepared(&env, SETUP).await;
    let server = Arc::new(server);
    let alice = server.token("alice", "pw-a").await;
    let done = Arc::new(AtomicBool::new(false));
    let writer = {
        let (server, alice, done) = (server.clone(), alice.clone(), done.clone());
        tokio::spawn(async move {
            let mut id = 0;
            while !done.load(Ordering::Relaxed) || id < 50 {
                let sql = format!("INSERT INTO app.notes VALUES ({id}, 'row {id}', {id})");
                let (status, body) = server.sql(&alice, &sql).await;
                assert_eq!(status, 200, "{body}");
                id += 1;
            }
            id
        })
    };
    tokio::time::sleep(Duration::from_millis(300)).await;
    let job = run(&server, &root, "BACKUP DATABASE app TO 'busy'").await;
    assert_eq!(job["status"], "completed", "{job}");
    done.store(true, Ordering::Relaxed);
    let written = writer.await.unwrap();
    let job = run(&server, &root, "RESTORE DATABASE app FROM 'busy' AS snap").await;
    assert_eq!(job["status"], "completed", "{job}");
    let rows = server
        .query_ok(&alice, "SELECT id FROM snap.notes ORDER BY id")
        .await;
    let ids: Vec<i64> = rows
        .iter()
        .map(|r| r["id"].as_str().unwrap().parse().unwrap())
        .collect();
    // One writer inserting 0, 1, 2, … in order: a consistent point holds
    // exactly a prefix of what it wrote.
    assert!(
        !ids.is_empty() && ids.len() <= written as usize,
        "{} of {written}",
        ids.len()
    );
    assert_eq!(ids, (0..ids.len() as i64).collect::<Vec<_>>());
}
