//! The Parquet cold tier against the real server: flush triggers (row
//! count, interval, manual), reads over both tiers before and after
//! flushes (also after UPDATE/DELETE of flushed rows), duplicate keys on
//! flushed rows, compaction and tombstone purge, system.jobs, storage
//! locations (filesystem templates and S3 on a local moto server), graceful
//! shutdown with queued flushes, and a crash under write load.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use kalamdb_tests::{MANUAL_ONLY, TestServer, parquet_files};
use serde_json::{Value, json};

fn message(body: &Value) -> &str {
    body["error"]["message"].as_str().unwrap_or("")
}

async fn setup(env: &[(&str, &str)]) -> (TestServer, String, String, String) {
    let server = TestServer::start_with(env);
    let root = server.root_token().await;
    server
        .query_ok(
            &root,
            "CREATE NAMESPACE app;
             CREATE USER 'alice' WITH PASSWORD 'pw-a' ROLE user;
             CREATE USER 'bob' WITH PASSWORD 'pw-b' ROLE user",
        )
        .await;
    let alice = server.token("alice", "pw-a").await;
    let bob = server.token("bob", "pw-b").await;
    (server, root, alice, bob)
}

fn result(job: &Value) -> Value {
    serde_json::from_str(job["result"].as_str().unwrap_or("null")).unwrap_or(Value::Null)
}

/// Waits (up to 30 s) until `check` holds for the rows of `sql`.
async fn eventually(
    server: &TestServer,
    token: &str,
    sql: &str,
    check: impl Fn(&[Value]) -> bool,
) -> Vec<Value> {
    server
        .eventually(token, sql, Duration::from_secs(30), check)
        .await
}

fn values(rows: &[&str]) -> String {
    rows.join(", ")
}

#[tokio::test]
async fn row_count_trigger_flushes_only_the_user_that_crossed_it() {
    let (server, root, alice, bob) = setup(&MANUAL_ONLY).await;
    server
        .query_ok(
            &root,
            "CREATE USER TABLE app.msgs (id BIGINT PRIMARY KEY, body TEXT) FLUSH POLICY ROWS 5",
        )
        .await;
    server
        .query_ok(&bob, "INSERT INTO app.msgs VALUES (1, 'b1'), (2, 'b2')")
        .await;
    server
        .query_ok(
            &alice,
            "INSERT INTO app.msgs VALUES (1, 'a1'), (2, 'a2'), (3, 'a3'); INSERT INTO app.msgs VALUES (4, 'a4'), (5, 'a5')",
        )
        .await;
    let jobs = eventually(
        &server,
        &root,
        "SELECT * FROM system.jobs WHERE job_type = 'flush' AND status = 'completed'",
        |rows| !rows.is_empty(),
    )
    .await;
    assert_eq!(jobs.len(), 1, "{jobs:?}");
    let job = &jobs[0];
    assert_eq!(job["namespace"], "app");
    assert_eq!(job["table_name"], "msgs");
    assert!(
        job["parameters"].as_str().unwrap().contains("user:alice")
            && job["parameters"].as_str().unwrap().contains("rows"),
        "{job}"
    );
    let outcome = result(job);
    assert_eq!(outcome["rows_flushed"], 5, "{outcome}");
    assert_eq!(outcome["users_count"], 1);
    assert_eq!(outcome["files"], 1);
    assert!(outcome["bytes"].as_u64().unwrap() > 0);
    assert!(outcome["duration_ms"].as_f64().is_some());
    assert!(job["start_time"].is_string() && job["end_time"].is_string());
    assert!(job["memory_used_mb"].is_number() && job["cpu_used_percent"].is_number());
    assert!(job["node_id"].is_string());

    let table_dir = server.data_dir().join("storage/app/msgs");
    let alice_files = parquet_files(&table_dir.join("alice"));
    assert_eq!(alice_files.len(), 1, "{alice_files:?}");
    assert!(
        alice_files[0]
            .file_name()
            .unwrap()
            .to_string_lossy()
            .starts_with("batch-")
    );
    assert!(parquet_files(&table_dir.join("bob")).is_empty());

    // Every row is still there for its owner, and only for its owner.
    let rows = server
        .query_ok(&alice, "SELECT id, body FROM app.msgs ORDER BY id")
        .await;
    let bodies: Vec<&str> = rows.iter().map(|r| r["body"].as_str().unwrap()).collect();
    assert_eq!(bodies, ["a1", "a2", "a3", "a4", "a5"]);
    let rows = server
        .query_ok(&bob, "SELECT id, body FROM app.msgs ORDER BY id")
        .await;
    let bodies: Vec<&str> = rows.iter().map(|r| r["body"].as_str().unwrap()).collect();
    assert_eq!(bodies, ["b1", "b2"]);
}

#[tokio::test]
async fn interval_trigger_flushes_in_the_background() {
    let (server, root, alice, _) = setup(&MANUAL_ONLY).await;
    server
        .query_ok(
            &root,
            "CREATE SHARED TABLE app.rooms (name TEXT PRIMARY KEY, title TEXT) FLUSH POLICY INTERVAL '1s';
             CREATE USER TABLE app.notes (id INT PRIMARY KEY, text TEXT) FLUSH POLICY INTERVAL '1s'",
        )
        .await;
    server
        .query_ok(
            &root,
            "INSERT INTO app.rooms VALUES ('lobby', 'Lobby'), ('dev', 'Developers')",
        )
        .await;
    server
        .query_ok(&alice, "INSERT INTO app.notes VALUES (1, 'x')")
        .await;
    let jobs = eventually(
        &server,
        &root,
        "SELECT table_name, parameters, result FROM system.jobs WHERE job_type = 'flush' AND status = 'completed' ORDER BY table_name",
        |rows| rows.len() >= 2,
    )
    .await;
    for job in &jobs {
        assert!(
            job["parameters"].as_str().unwrap().contains("interval"),
            "{job}"
        );
        assert!(result(job)["rows_flushed"].as_u64().unwrap() >= 1, "{job}");
    }
    let storage = server.data_dir().join("storage/app");
    assert_eq!(parquet_files(&storage.join("rooms/shared")).len(), 1);
    assert_eq!(parquet_files(&storage.join("notes/alice")).len(), 1);
    let rows = server
        .query_ok(&alice, "SELECT name, title FROM app.rooms ORDER BY name")
        .await;
    assert_eq!(
        rows,
        vec![
            json!({"name": "dev", "title": "Developers"}),
            json!({"name": "lobby", "title": "Lobby"})
        ]
    );
}

/// Queries whose results must not change when rows move between tiers.
const QUERIES: [&str; 6] = [
    "SELECT id, body, n, _seq, _updated FROM app.items ORDER BY id",
    "SELECT id, body FROM app.items WHERE n >= 40 ORDER BY id",
    "SELECT count(*) AS c, sum(n) AS s, min(body) AS lo, max(body) AS hi FROM app.items",
    "SELECT * FROM app.items WHERE id = 7",
    "SELECT id FROM app.items WHERE id IN (3, 4, 99) ORDER BY id",
    "SELECT n % 3 AS k, count(*) AS c FROM app.items GROUP BY n % 3 ORDER BY k",
];

async fn snapshot(server: &TestServer, token: &str) -> Vec<Vec<Value>> {
    let mut out = Vec::new();
    for sql in QUERIES {
        out.push(server.query_ok(token, sql).await);
    }
    out
}

#[tokio::test]
async fn results_are_identical_before_and_after_flush_update_delete_compact() {
    let (server, root, alice, bob) = setup(&MANUAL_ONLY).await;
    server
        .query_ok(
            &root,
            "CREATE USER TABLE app.items (id BIGINT PRIMARY KEY, body TEXT NOT NULL, n INT) DELETED RETENTION '0 hours'",
        )
        .await;
    let rows: Vec<String> = (1..=60)
        .map(|i| format!("({i}, 'item {i:02}', {i})"))
        .collect();
    let refs: Vec<&str> = rows.iter().map(String::as_str).collect();
    server
        .query_ok(
            &alice,
            &format!("INSERT INTO app.items VALUES {}", values(&refs)),
        )
        .await;
    server
        .query_ok(&bob, "INSERT INTO app.items VALUES (7, 'bob seven', 7)")
        .await;
    let before = snapshot(&server, &alice).await;
    assert_eq!(before[0].len(), 60);

    let job = server.run_job(&root, "FLUSH TABLE app.items").await;
    assert_eq!(result(&job)["rows_flushed"], 61);
    assert_eq!(result(&job)["users_count"], 2);
    assert_eq!(snapshot(&server, &alice).await, before, "after first flush");
    // Bob's rows stay bob's after the flush.
    let bobs = server
        .query_ok(&bob, "SELECT id, body FROM app.items")
        .await;
    assert_eq!(bobs, vec![json!({"id": "7", "body": "bob seven"})]);

    // A flushed key is still a duplicate; per user, not across users.
    let (status, body) = server
        .sql(&alice, "INSERT INTO app.items VALUES (5, 'again', 1)")
        .await;
    assert_eq!(status, 400, "{body}");
    assert_eq!(body["error"]["code"], "CONSTRAINT_VIOLATION");
    assert!(message(&body).contains("id = 5"), "{body}");
    server
        .query_ok(&bob, "INSERT INTO app.items VALUES (5, 'bob five', 5)")
        .await;

    // UPDATE and DELETE rows that live only in Parquet.
    let (status, body) = server
        .sql(
            &alice,
            "UPDATE app.items SET body = 'changed', n = n + 100 WHERE id <= 10",
        )
        .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["results"][0]["row_count"], 10, "{body}");
    let (status, body) = server
        .sql(
            &alice,
            "UPDATE app.items SET n = n + 1000 WHERE id = 50; DELETE FROM app.items WHERE id > 55 OR id = 3",
        )
        .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["results"][0]["row_count"], 1);
    assert_eq!(body["results"][1]["row_count"], 6);
    // A deleted flushed key may be inserted again.
    server
        .query_ok(&alice, "INSERT INTO app.items VALUES (60, 'reborn', 60)")
        .await;
    let expected = snapshot(&server, &alice).await;
    assert_eq!(expected[0].len(), 55);
    assert_eq!(
        expected[3],
        vec![json!({
            "id": "7", "body": "changed", "n": 107,
            "_seq": expected[3][0]["_seq"], "_updated": expected[3][0]["_updated"], "_deleted": false
        })]
    );
    assert_eq!(expected[4], vec![json!({"id": "4"})]);

    // Second flush: now newer versions and tombstones are in a second file.
    server.run_job(&root, "FLUSH TABLE app.items").await;
    let alice_dir = server.data_dir().join("storage/app/items/alice");
    assert_eq!(parquet_files(&alice_dir).len(), 2);
    assert_eq!(
        snapshot(&server, &alice).await,
        expected,
        "after second flush"
    );

    // Compaction: one file per user; expired tombstones (retention 0) gone.
    let job = server.run_job(&root, "COMPACT TABLE app.items").await;
    let outcome = result(&job);
    assert_eq!(outcome["files"], 2, "one file per user: {outcome}");
    assert_eq!(parquet_files(&alice_dir).len(), 1);
    assert_eq!(
        snapshot(&server, &alice).await,
        expected,
        "after compaction"
    );

    // And after a restart.
    let server = server.restart();
    let alice = server.token("alice", "pw-a").await;
    assert_eq!(snapshot(&server, &alice).await, expected, "after restart");
    let root = server.root_token().await;
    let jobs = server
        .query_ok(
            &root,
            "SELECT count(*) AS c FROM system.jobs WHERE status = 'completed'",
        )
        .await;
    assert_eq!(jobs[0]["c"], "3");
}

/// Waits for a completed cleanup job whose result has `key` = `count`.
async fn cleanup_reports(server: &TestServer, root: &str, key: &str, count: u64) {
    eventually(
        server,
        root,
        "SELECT result FROM system.jobs WHERE job_type = 'cleanup' AND status = 'completed'",
        |rows| rows.iter().any(|r| result(r)[key].as_u64() == Some(count)),
    )
    .await;
}

#[tokio::test]
async fn cleanup_purges_expired_tombstones_from_rocksdb() {
    let mut env = MANUAL_ONLY.to_vec();
    env.push(("KALAMDB_CLEANUP_INTERVAL_SECS", "1"));
    let (server, root, alice, _) = setup(&env).await;
    server
        .query_ok(
            &root,
            "CREATE USER TABLE app.tmp (id INT PRIMARY KEY, v TEXT) DELETED RETENTION '0 hours'",
        )
        .await;
    server
        .query_ok(
            &alice,
            "INSERT INTO app.tmp VALUES (1, 'a'), (2, 'b'), (3, 'c'); DELETE FROM app.tmp WHERE id < 3",
        )
        .await;
    cleanup_reports(&server, &root, "tombstones_purged", 2).await;
    let rows = server.query_ok(&alice, "SELECT id, v FROM app.tmp").await;
    assert_eq!(rows, vec![json!({"id": 3, "v": "c"})]);

    // Files a crash left behind (written, never recorded) are removed; the
    // rows they might hold were never acknowledged as flushed.
    let dir = server.data_dir().join("storage/app/tmp/alice");
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join("batch-1.parquet"), b"not listed").unwrap();
    std::fs::write(dir.join(".batch-2.parquet.tmp"), b"half written").unwrap();
    cleanup_reports(&server, &root, "orphan_files_removed", 2).await;
    assert!(!dir.join("batch-1.parquet").exists());
    assert!(!dir.join(".batch-2.parquet.tmp").exists());
    let rows = server.query_ok(&alice, "SELECT id, v FROM app.tmp").await;
    assert_eq!(rows, vec![json!({"id": 3, "v": "c"})]);
}

#[tokio::test]
async fn storage_locations_filesystem_templates_and_usage() {
    let (server, root, alice, _) = setup(&MANUAL_ONLY).await;
    let elsewhere = tempfile::tempdir().unwrap();
    let template = format!(
        "{}/tenants/${{user_id}}/${{namespace}}-${{table}}",
        elsewhere.path().display()
    );
    server
        .query_ok(
            &root,
            &format!("CREATE STORAGE archive TYPE filesystem PATH '{template}'"),
        )
        .await;
    let (status, body) = server
        .sql(
            &root,
            &format!("CREATE STORAGE archive TYPE filesystem PATH '{template}'"),
        )
        .await;
    assert_eq!(status, 400);
    assert!(message(&body).contains("already exists"), "{body}");
    for (sql, needle) in [
        (
            "CREATE STORAGE x TYPE ftp PATH '/tmp/x'".to_string(),
            "unknown storage type ftp",
        ),
        (
            "CREATE STORAGE x TYPE s3 PATH '/tmp/x'".to_string(),
            "s3://bucket/prefix",
        ),
        (
            "CREATE STORAGE x TYPE filesystem PATH '/tmp/${owner}'".to_string(),
            "${owner}",
        ),
        (
            "CREATE STORAGE x TYPE s3 PATH 's3://b/p' OPTIONS (endpoint = 'http://127.0.0.1:9', access_key_id = 'k', secret_access_key = 's')".to_string(),
            "cannot be written",
        ),
    ] {
        let (status, body) = server.sql(&root, &sql).await;
        assert_eq!(status, 400, "{sql}: {body}");
        assert!(message(&body).contains(needle), "{sql}: {body}");
    }
    let (status, _) = server
        .sql(
            &alice,
            "CREATE STORAGE mine TYPE filesystem PATH '/tmp/mine'",
        )
        .await;
    assert_eq!(status, 403);

    server
        .query_ok(
            &root,
            "CREATE USER TABLE app.docs (id INT PRIMARY KEY, t TEXT) LOCATION REFERENCE 'archive'",
        )
        .await;
    let locations = server
        .query_ok(
            &root,
            "SELECT location_name, location_type, usage_count FROM system.storage_locations ORDER BY location_name",
        )
        .await;
    assert_eq!(
        locations,
        vec![
            json!({"location_name": "archive", "location_type": "filesystem", "usage_count": "1"}),
            json!({"location_name": "local", "location_type": "filesystem", "usage_count": "0"}),
        ]
    );
    server
        .query_ok(&alice, "INSERT INTO app.docs VALUES (1, 'one'), (2, 'two')")
        .await;
    server.run_job(&root, "FLUSH TABLE app.docs").await;
    let files = parquet_files(&elsewhere.path().join("tenants/alice/app-docs"));
    assert_eq!(files.len(), 1, "{files:?}");
    let rows = server
        .query_ok(&alice, "SELECT id, t FROM app.docs ORDER BY id")
        .await;
    assert_eq!(rows.len(), 2);

    let (status, body) = server.sql(&root, "DROP STORAGE archive").await;
    assert_eq!(status, 400);
    assert!(
        message(&body).contains("app.docs") && message(&body).contains("used by"),
        "{body}"
    );
    let (status, body) = server.sql(&root, "DROP STORAGE local").await;
    assert_eq!(status, 400, "{body}");
    server.query_ok(&root, "DROP TABLE app.docs").await;
    let locations = server
        .query_ok(
            &root,
            "SELECT usage_count FROM system.storage_locations WHERE location_name = 'archive'",
        )
        .await;
    assert_eq!(locations, vec![json!({"usage_count": "0"})]);
    server.query_ok(&root, "DROP STORAGE archive").await;
    let (status, body) = server.sql(&root, "DROP STORAGE archive").await;
    assert_eq!(status, 400);
    assert!(message(&body).contains("does not exist"), "{body}");
    server
        .query_ok(&root, "DROP STORAGE IF EXISTS archive")
        .await;
}

/// A moto S3 server on a free port, stopped on drop.
struct Moto {
    child: std::process::Child,
    endpoint: String,
}

impl Drop for Moto {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn moto_binary() -> PathBuf {
    if let Ok(path) = std::env::var("KALAMDB_TEST_MOTO") {
        return PathBuf::from(path);
    }
    let workspace = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let bin = workspace.join("target/moto-venv/bin/moto_server");
    assert!(
        bin.exists(),
        "{} is missing: ./scripts/test.sh installs moto (the local S3 server) there, or set KALAMDB_TEST_MOTO",
        bin.display()
    );
    bin
}

async fn start_moto() -> Moto {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let child = std::process::Command::new(moto_binary())
        .args(["-H", "127.0.0.1", "-p", &port.to_string()])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("start moto_server");
    let endpoint = format!("http://127.0.0.1:{port}");
    let moto = Moto { child, endpoint };
    let client = reqwest::Client::new();
    let deadline = Instant::now() + Duration::from_secs(30);
    while client.get(&moto.endpoint).send().await.is_err() {
        assert!(Instant::now() < deadline, "moto did not start");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let created = client
        .put(format!("{}/kalam-bucket", moto.endpoint))
        .send()
        .await
        .unwrap();
    assert!(created.status().is_success(), "create bucket: {created:?}");
    moto
}

#[tokio::test]
async fn s3_location_end_to_end() {
    let moto = start_moto().await;
    let (server, root, alice, bob) = setup(&MANUAL_ONLY).await;
    server
        .query_ok(
            &root,
            &format!(
                "CREATE STORAGE s3main TYPE s3 PATH 's3://kalam-bucket/prod' OPTIONS (endpoint = '{}', region = 'us-east-1', access_key_id = 'test', secret_access_key = 'test')",
                moto.endpoint
            ),
        )
        .await;
    let location = server
        .query_ok(
            &root,
            "SELECT * FROM system.storage_locations WHERE location_name = 's3main'",
        )
        .await;
    assert_eq!(location[0]["location_type"], "s3");
    assert_eq!(location[0]["credentials_ref"], "options");
    assert!(
        location[0].get("options").is_none() && !location[0].to_string().contains("\"test\""),
        "secrets must not be returned: {location:?}"
    );
    server
        .query_ok(
            &root,
            "CREATE USER TABLE app.chat (id BIGINT PRIMARY KEY, body TEXT, at TIMESTAMP DEFAULT NOW()) LOCATION REFERENCE 's3main'",
        )
        .await;
    server
        .query_ok(
            &alice,
            "INSERT INTO app.chat (id, body) VALUES (1, 'hi'), (2, 'there'), (3, 'gone')",
        )
        .await;
    server
        .query_ok(&bob, "INSERT INTO app.chat (id, body) VALUES (1, 'bob')")
        .await;
    let before = server
        .query_ok(&alice, "SELECT id, body, _seq FROM app.chat ORDER BY id")
        .await;
    let job = server.run_job(&root, "FLUSH TABLE app.chat").await;
    assert_eq!(result(&job)["rows_flushed"], 4);
    assert_eq!(
        server
            .query_ok(&alice, "SELECT id, body, _seq FROM app.chat ORDER BY id")
            .await,
        before
    );
    // The objects are in the bucket, under the prefix, per user.
    let listing = reqwest::get(format!("{}/kalam-bucket?list-type=2", moto.endpoint))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        listing.contains("prod/app/chat/alice/batch-")
            && listing.contains("prod/app/chat/bob/batch-"),
        "{listing}"
    );
    // Rows only in S3 can be changed, and a flushed key is still a duplicate.
    server
        .query_ok(
            &alice,
            "UPDATE app.chat SET body = 'hello' WHERE id = 1; DELETE FROM app.chat WHERE id = 3",
        )
        .await;
    let (status, _) = server
        .sql(&alice, "INSERT INTO app.chat (id, body) VALUES (2, 'dup')")
        .await;
    assert_eq!(status, 400);
    server.run_job(&root, "FLUSH TABLE app.chat").await;
    server.run_job(&root, "COMPACT TABLE app.chat").await;
    let server = server.restart();
    let alice = server.token("alice", "pw-a").await;
    let rows = server
        .query_ok(&alice, "SELECT id, body FROM app.chat ORDER BY id")
        .await;
    assert_eq!(
        rows,
        vec![
            json!({"id": "1", "body": "hello"}),
            json!({"id": "2", "body": "there"})
        ]
    );
    let root = server.root_token().await;
    let (status, body) = server.sql(&root, "DROP STORAGE s3main").await;
    assert_eq!(status, 400);
    assert!(message(&body).contains("app.chat"), "{body}");

    // A backup to the bucket, and a restore from it under a second name.
    let backup = server
        .run_job(
            &root,
            "BACKUP DATABASE app TO STORAGE s3main PATH 'backups/first'",
        )
        .await;
    assert!(result(&backup)["files"].as_u64().unwrap() >= 2, "{backup}");
    let listed = server
        .query_ok(&root, "SHOW BACKUP STORAGE s3main PATH 'backups/first'")
        .await;
    assert_eq!(listed[0]["verified"], true, "{listed:?}");
    server
        .run_job(
            &root,
            "RESTORE DATABASE app FROM STORAGE s3main PATH 'backups/first' AS copy",
        )
        .await;
    assert_eq!(
        server
            .query_ok(&alice, "SELECT id, body FROM copy.chat ORDER BY id")
            .await,
        rows
    );

    // With the object store gone, a flush fails, says why, and moves nothing.
    drop(moto);
    server
        .query_ok(
            &alice,
            "INSERT INTO app.chat (id, body) VALUES (10, 'kept')",
        )
        .await;
    let rows = server.query_ok(&root, "FLUSH TABLE app.chat").await;
    let job_id = rows[0]["job_id"].as_str().unwrap().to_string();
    let failed = eventually(
        &server,
        &root,
        &format!("SELECT status, error_message FROM system.jobs WHERE job_id = '{job_id}'"),
        |rows| rows.first().is_some_and(|r| r["status"] == "failed"),
    )
    .await;
    assert!(
        failed[0]["error_message"]
            .as_str()
            .unwrap()
            .contains("s3main"),
        "{failed:?}"
    );
    let rows = server
        .query_ok(&alice, "SELECT body FROM app.chat WHERE id = 10")
        .await;
    assert_eq!(rows, vec![json!({"body": "kept"})]);
}

#[tokio::test]
async fn queued_flushes_survive_a_graceful_shutdown() {
    let (server, root, alice, _) = setup(&MANUAL_ONLY).await;
    let mut create = String::new();
    for t in 0..6 {
        create.push_str(&format!(
            "CREATE USER TABLE app.t{t} (id INT PRIMARY KEY, v TEXT);"
        ));
    }
    server.query_ok(&root, &create).await;
    for t in 0..6 {
        let rows: Vec<String> = (0..200).map(|i| format!("({i}, 'v{i}')")).collect();
        server
            .query_ok(
                &alice,
                &format!("INSERT INTO app.t{t} VALUES {}", rows.join(", ")),
            )
            .await;
    }
    let mut flush = String::new();
    for t in 0..6 {
        flush.push_str(&format!("FLUSH TABLE app.t{t};"));
    }
    let (status, body) = server.sql(&root, &flush).await;
    assert_eq!(status, 200, "{body}");
    let job_ids: Vec<String> = body["results"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["rows"][0]["job_id"].as_str().unwrap().to_string())
        .collect();
    // Shut down at once, with jobs still queued.
    let server = server.restart();
    let root = server.root_token().await;
    for job_id in &job_ids {
        let job = server.wait_job(&root, job_id).await;
        assert_eq!(result(&job)["rows_flushed"], 200, "{job}");
    }
    let alice = server.token("alice", "pw-a").await;
    for t in 0..6 {
        let rows = server
            .query_ok(&alice, &format!("SELECT count(*) AS c FROM app.t{t}"))
            .await;
        assert_eq!(rows[0]["c"], "200");
    }
}

#[tokio::test]
async fn a_crash_during_flushes_under_load_loses_and_duplicates_nothing() {
    let env = [("KALAMDB_COMPACT_MIN_FILES", "4")];
    let (server, root, alice, bob) = setup(&env).await;
    server
        .query_ok(
            &root,
            "CREATE USER TABLE app.log (id BIGINT PRIMARY KEY, w INT, body TEXT) FLUSH POLICY ROWS 40",
        )
        .await;
    let sql_url = server.url("/api/sql");
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let mut writers = Vec::new();
    for (w, token) in [(0, &alice), (1, &alice), (2, &bob), (3, &bob)] {
        let client = server.client.clone();
        let sql_url = sql_url.clone();
        let token = token.clone();
        let stop = stop.clone();
        writers.push(tokio::spawn(async move {
            let mut acknowledged = Vec::new();
            let mut next = 0i64;
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                let ids: Vec<i64> = (0..5).map(|k| w * 1_000_000 + next + k).collect();
                next += 5;
                let rows: Vec<String> = ids
                    .iter()
                    .map(|id| format!("({id}, {w}, 'row {id}')"))
                    .collect();
                let sent = client
                    .post(&sql_url)
                    .bearer_auth(&token)
                    .json(
                        &json!({"sql": format!("INSERT INTO app.log VALUES {}", rows.join(", "))}),
                    )
                    .send()
                    .await;
                match sent {
                    Ok(response) if response.status().as_u16() == 200 => acknowledged.extend(ids),
                    _ => break,
                }
            }
            (w, acknowledged)
        }));
    }
    tokio::time::sleep(Duration::from_millis(2500)).await;
    // SIGKILL while writers and flushes are running.
    let server = server.crash_and_restart();
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let mut acknowledged: Vec<(i64, Vec<i64>)> = Vec::new();
    for writer in writers {
        acknowledged.push(writer.await.unwrap());
    }
    let alice = server.token("alice", "pw-a").await;
    let bob = server.token("bob", "pw-b").await;
    let root = server.root_token().await;
    let flushed = server
        .query_ok(
            &root,
            "SELECT count(*) AS c FROM system.jobs WHERE job_type = 'flush' AND status = 'completed'",
        )
        .await;
    assert_ne!(flushed[0]["c"], "0", "no flush ran before the crash");
    for (w, ids) in acknowledged {
        assert!(ids.len() > 40, "writer {w} wrote only {} rows", ids.len());
        let token = if w < 2 { &alice } else { &bob };
        let rows = server
            .query_ok(
                token,
                &format!("SELECT id FROM app.log WHERE w = {w} ORDER BY id"),
            )
            .await;
        let stored: Vec<i64> = rows
            .iter()
            .map(|r| r["id"].as_str().unwrap().parse().unwrap())
            .collect();
        let mut unique = stored.clone();
        unique.dedup();
        assert_eq!(unique.len(), stored.len(), "writer {w}: duplicated rows");
        for id in &ids {
            assert!(
                stored.binary_search(id).is_ok(),
                "writer {w}: acknowledged row {id} is missing"
            );
        }
    }
    // Jobs interrupted by the crash run again; none stays running.
    eventually(
        &server,
        &root,
        "SELECT job_id FROM system.jobs WHERE status IN ('queued', 'running')",
        |rows| rows.is_empty(),
    )
    .await;
    let failed = server
        .query_ok(
            &root,
            "SELECT job_id, error_message FROM system.jobs WHERE status = 'failed'",
        )
        .await;
    assert!(failed.is_empty(), "{failed:?}");
}

#[tokio::test]
async fn many_small_files_are_compacted_automatically() {
    let env = [
        ("KALAMDB_FLUSH_ROWS", "0"),
        ("KALAMDB_FLUSH_INTERVAL_SECS", "0"),
        ("KALAMDB_COMPACT_MIN_FILES", "3"),
    ];
    let (server, root, alice, _) = setup(&env).await;
    server
        .query_ok(
            &root,
            "CREATE USER TABLE app.feed (id INT PRIMARY KEY, v TEXT)",
        )
        .await;
    for round in 0..3 {
        server
            .query_ok(
                &alice,
                &format!("INSERT INTO app.feed VALUES ({round}, 'v{round}')"),
            )
            .await;
        server.run_job(&root, "FLUSH TABLE app.feed").await;
    }
    let jobs = eventually(
        &server,
        &root,
        "SELECT parameters, result FROM system.jobs WHERE job_type = 'compact' AND status = 'completed'",
        |rows| !rows.is_empty(),
    )
    .await;
    assert!(
        jobs[0]["parameters"].as_str().unwrap().contains("files"),
        "{jobs:?}"
    );
    assert_eq!(result(&jobs[0])["files_before"], 3);
    let dir = server.data_dir().join("storage/app/feed/alice");
    assert_eq!(parquet_files(&dir).len(), 1);
    let rows = server
        .query_ok(&alice, "SELECT id, v FROM app.feed ORDER BY id")
        .await;
    assert_eq!(rows.len(), 3);
}
