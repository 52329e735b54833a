//! Observability against the real server: `GET /metrics` (read with a real
//! Prometheus text-format parser), `SHOW STATS FOR TABLE`, `SHOW STATS` and
//! `information_schema`, with their role checks and hostile input.

use std::time::Duration;

use kalamdb_tests::ws::{connect, next, send};
use kalamdb_tests::{TestServer, parquet_files};
use prometheus_parse::{Sample, Scrape, Value as Metric};
use serde_json::{Value, json};

const TEXT_FORMAT: &str = "text/plain; version=0.0.4";

/// A server with a USER table and one user of each role.
async fn setup() -> (TestServer, String) {
    TestServer::prepared(
        &[],
        "CREATE NAMESPACE app;
         CREATE USER TABLE app.messages (id BIGINT PRIMARY KEY, body TEXT);
         CREATE USER 'alice' WITH PASSWORD 'pw-a' ROLE user;
         CREATE USER 'bob' WITH PASSWORD 'pw-b' ROLE user;
         CREATE USER 'svc' WITH PASSWORD 'pw-s' ROLE service;
         CREATE USER 'ops' WITH PASSWORD 'pw-o' ROLE dba",
    )
    .await
}

/// `GET /metrics`: status, Content-Type and body.
async fn get_metrics(server: &TestServer, token: Option<&str>) -> (u16, String, String) {
    let mut request = server.client.get(server.url("/metrics"));
    if let Some(token) = token {
        request = request.bearer_auth(token);
    }
    let response = request.send().await.expect("GET /metrics");
    let status = response.status().as_u16();
    let content_type = response
        .headers()
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_string();
    (
        status,
        content_type,
        response.text().await.unwrap_or_default(),
    )
}

/// A successful scrape, parsed.
async fn scrape(server: &TestServer, token: &str) -> Scrape {
    let (status, content_type, body) = get_metrics(server, Some(token)).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(content_type, TEXT_FORMAT);
    Scrape::parse(body.lines().map(|l| Ok(l.to_string()))).expect("Prometheus text format")
}

fn matching<'a>(
    scrape: &'a Scrape,
    name: &'a str,
    labels: &'a [(&str, &str)],
) -> impl Iterator<Item = &'a Sample> {
    scrape.samples.iter().filter(move |s| {
        s.metric == name && labels.iter().all(|(k, v)| s.labels.get(k) == Some(*v))
    })
}

/// The sum of the samples of `name` with these labels; fails if there is
/// none (every series the tests read exists from the start).
fn value(scrape: &Scrape, name: &str, labels: &[(&str, &str)]) -> f64 {
    let mut found = false;
    let mut total = 0.0;
    for sample in matching(scrape, name, labels) {
        found = true;
        total += match &sample.value {
            Metric::Counter(v) | Metric::Gauge(v) | Metric::Untyped(v) => *v,
            other => panic!("{name} is not a single number: {other:?}"),
        };
    }
    assert!(found, "no sample {name} {labels:?}");
    total
}

/// Like [`value`], 0 when no such series exists yet.
fn value_or_zero(scrape: &Scrape, name: &str, labels: &[(&str, &str)]) -> f64 {
    if matching(scrape, name, labels).next().is_none() {
        0.0
    } else {
        value(scrape, name, labels)
    }
}

/// Scrapes until `check` holds for the value (the server updates some
/// counters just after the client saw the effect); fails after 10 s.
async fn eventually(
    server: &TestServer,
    token: &str,
    name: &str,
    labels: &[(&str, &str)],
    check: impl Fn(f64) -> bool,
) -> f64 {
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    loop {
        let v = value(&scrape(server, token).await, name, labels);
        if check(v) {
            return v;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "{name} {labels:?} stayed at {v}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// The one row of a `SHOW STATS …` result.
async fn stats_row(server: &TestServer, token: &str, sql: &str) -> Value {
    let rows = server.query_ok(token, sql).await;
    assert_eq!(rows.len(), 1, "{sql}: {rows:?}");
    rows[0].clone()
}

fn count(row: &Value, column: &str) -> u64 {
    row[column]
        .as_str()
        .unwrap_or_else(|| panic!("{column} is not a BIGINT string: {row}"))
        .parse()
        .unwrap()
}

#[tokio::test]
async fn metrics_need_a_dba_or_system_token() {
    let (server, root) = setup().await;
    let (status, _, body) = get_metrics(&server, None).await;
    assert_eq!(status, 401, "{body}");
    let body: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(body["error"]["code"], "UNAUTHORIZED");

    let (status, _, body) = get_metrics(&server, Some("not-a-token")).await;
    assert_eq!(status, 401, "{body}");
    assert!(body.contains("token"), "{body}");

    for (user, password) in [("alice", "pw-a"), ("svc", "pw-s")] {
        let token = server.token(user, password).await;
        let (status, _, body) = get_metrics(&server, Some(&token)).await;
        assert_eq!(status, 403, "{user}: {body}");
        let body: Value = serde_json::from_str(&body).unwrap();
        assert_eq!(body["error"]["code"], "PERMISSION_DENIED");
    }

    let ops = server.token("ops", "pw-o").await;
    for token in [&ops, &root] {
        let scrape = scrape(&server, token).await;
        assert_eq!(value(&scrape, "kalamdb_build_info", &[]), 1.0);
    }
    // The refusals above were counted under the route, not the raw path.
    let scrape = scrape(&server, &root).await;
    let at = |status| [("route", "/metrics"), ("method", "GET"), ("status", status)];
    assert_eq!(
        value(&scrape, "kalamdb_http_requests_total", &at("401")),
        2.0
    );
    assert_eq!(
        value(&scrape, "kalamdb_http_requests_total", &at("403")),
        2.0
    );
    assert_eq!(
        value(&scrape, "kalamdb_http_requests_total", &at("200")),
        2.0
    );
}

#[tokio::test]
async fn metrics_move_when_work_happens() {
    let (server, root) = setup().await;
    let alice = server.token("alice", "pw-a").await;
    let before = scrape(&server, &root).await;
    assert!(value(&before, "kalamdb_rocksdb_size_bytes", &[]) > 0.0);
    assert_eq!(value(&before, "kalamdb_parquet_files", &[]), 0.0);
    assert_eq!(value(&before, "kalamdb_ws_connections", &[]), 0.0);

    // Statements: three inserts, one failing query.
    for id in 1..=3 {
        server
            .query_ok(
                &alice,
                &format!("INSERT INTO app.messages (id, body) VALUES ({id}, 'm{id}')"),
            )
            .await;
    }
    let (status, _) = server.sql(&alice, "SELECT * FROM app.nope").await;
    assert_eq!(status, 400);
    // An unknown path, which must not become a label.
    assert_eq!(server.get("/no/such/path").await.0, 404);

    // A live query that gets one change.
    let mut ws = connect(&server, Some(&alice)).await;
    send(
        &mut ws,
        json!({"type": "subscribe", "id": "s", "sql": "SELECT id, body FROM app.messages"}),
    )
    .await;
    assert_eq!(next(&mut ws).await["type"], "subscribed");
    assert_eq!(next(&mut ws).await["type"], "initial_data");
    server
        .query_ok(
            &alice,
            "INSERT INTO app.messages (id, body) VALUES (4, 'live')",
        )
        .await;
    assert_eq!(next(&mut ws).await["type"], "change");

    // A flush of the four rows.
    let job = server.run_job(&root, "FLUSH TABLE app.messages").await;
    let result: Value = serde_json::from_str(job["result"].as_str().unwrap()).unwrap();
    assert_eq!(result["rows_flushed"], 4);

    let after = scrape(&server, &root).await;
    let delta = |name: &str, labels: &[(&str, &str)]| {
        value(&after, name, labels) - value_or_zero(&before, name, labels)
    };
    let statements = "kalamdb_sql_statements_total";
    assert_eq!(
        delta(statements, &[("kind", "insert"), ("outcome", "ok")]),
        4.0
    );
    assert_eq!(
        delta(statements, &[("kind", "select"), ("outcome", "error")]),
        1.0
    );
    assert_eq!(
        delta(statements, &[("kind", "admin"), ("outcome", "ok")]),
        1.0
    );
    assert_eq!(delta(statements, &[("kind", "ddl")]), 0.0);
    assert_eq!(
        delta(
            "kalamdb_sql_statement_duration_seconds_count",
            &[("kind", "insert")]
        ),
        4.0
    );
    let sql_requests = |status| {
        [
            ("route", "/api/sql"),
            ("method", "POST"),
            ("status", status),
        ]
    };
    assert!(delta("kalamdb_http_requests_total", &sql_requests("200")) >= 5.0);
    assert_eq!(
        delta("kalamdb_http_requests_total", &sql_requests("400")),
        1.0
    );
    assert_eq!(
        delta(
            "kalamdb_http_requests_total",
            &[("route", "unmatched"), ("status", "404")]
        ),
        1.0
    );
    assert!(
        after
            .samples
            .iter()
            .all(|s| s.labels.values().all(|v| !v.contains("/no/such"))),
        "a raw path became a label"
    );
    assert!(
        matching(
            &after,
            "kalamdb_http_request_duration_seconds",
            &[("route", "/api/sql"), ("method", "POST")]
        )
        .any(|s| matches!(&s.value, Metric::Histogram(buckets) if !buckets.is_empty()))
    );

    assert_eq!(value(&after, "kalamdb_ws_connections", &[]), 1.0);
    assert_eq!(value(&after, "kalamdb_live_subscriptions", &[]), 1.0);
    let delivered = "kalamdb_live_changes_delivered_total";
    let before_delivered = value(&before, delivered, &[]);
    let now = eventually(&server, &root, delivered, &[], |v| {
        v >= before_delivered + 1.0
    })
    .await;
    assert_eq!(now, before_delivered + 1.0);
    assert_eq!(
        delta("kalamdb_live_slow_consumer_disconnects_total", &[]),
        0.0
    );

    let flush = [("kind", "flush")];
    assert_eq!(
        delta(
            "kalamdb_jobs_total",
            &[("kind", "flush"), ("outcome", "completed")]
        ),
        1.0
    );
    assert_eq!(delta("kalamdb_job_rows_total", &flush), 4.0);
    assert_eq!(delta("kalamdb_job_duration_seconds_count", &flush), 1.0);
    let on_disk: u64 = parquet_files(&server.data_dir())
        .iter()
        .map(|f| std::fs::metadata(f).unwrap().len())
        .sum();
    assert!(on_disk > 0);
    assert_eq!(delta("kalamdb_job_bytes_total", &flush), on_disk as f64);
    assert_eq!(value(&after, "kalamdb_parquet_files", &[]), 1.0);
    assert_eq!(value(&after, "kalamdb_parquet_bytes", &[]), on_disk as f64);

    // Closing the socket ends the connection and its subscription.
    drop(ws);
    eventually(&server, &root, "kalamdb_ws_connections", &[], |v| v == 0.0).await;
    eventually(&server, &root, "kalamdb_live_subscriptions", &[], |v| {
        v == 0.0
    })
    .await;
}

#[tokio::test]
async fn metrics_access_loopback_and_open_let_requests_in_without_a_token() {
    for access in ["loopback", "open"] {
        let server = TestServer::start_with(&[("KALAMDB_METRICS_ACCESS", access)]);
        let (status, content_type, body) = get_metrics(&server, None).await;
        assert_eq!(status, 200, "{access}: {body}");
        assert_eq!(content_type, TEXT_FORMAT);
        let scrape = Scrape::parse(body.lines().map(|l| Ok(l.to_string()))).unwrap();
        assert_eq!(value(&scrape, "kalamdb_build_info", &[]), 1.0);
    }
}

#[tokio::test]
async fn show_stats_for_table_counts_hot_and_flushed_rows_of_two_users() {
    let (server, root) = setup().await;
    let alice = server.token("alice", "pw-a").await;
    let bob = server.token("bob", "pw-b").await;
    let stats = "SHOW STATS FOR TABLE app.messages";
    let empty = stats_row(&server, &alice, stats).await;
    assert_eq!(empty["table_type"], "USER");
    assert_eq!(empty["schema_version"], 1);
    for column in [
        "hot_rows",
        "cold_rows",
        "parquet_files",
        "partitions",
        "deleted_rows",
    ] {
        assert_eq!(count(&empty, column), 0, "{column}");
    }
    assert_eq!(empty["last_flush_at"], Value::Null);

    server
        .query_ok(
            &alice,
            "INSERT INTO app.messages (id, body) VALUES (1, 'a1'), (2, 'a2'), (3, 'a3')",
        )
        .await;
    server
        .query_ok(
            &bob,
            "INSERT INTO app.messages (id, body) VALUES (1, 'b1'), (2, 'b2')",
        )
        .await;
    server.run_job(&root, "FLUSH TABLE app.messages").await;
    // Then, hot: a new row of each user and a tombstone of alice's row 1
    // (its flushed version stays in Parquet until a compaction).
    server
        .query_ok(
            &alice,
            "INSERT INTO app.messages (id, body) VALUES (4, 'a4'); DELETE FROM app.messages WHERE id = 1",
        )
        .await;
    server
        .query_ok(&bob, "INSERT INTO app.messages (id, body) VALUES (3, 'b3')")
        .await;

    let row = stats_row(&server, &bob, stats).await;
    assert_eq!(row["namespace"], "app");
    assert_eq!(row["table_name"], "messages");
    assert_eq!(count(&row, "hot_rows"), 2);
    assert_eq!(count(&row, "cold_rows"), 5);
    assert_eq!(count(&row, "deleted_rows"), 1);
    assert_eq!(count(&row, "partitions"), 2);
    assert_eq!(count(&row, "parquet_files"), 2, "one file per user");
    let on_disk: u64 = parquet_files(&server.data_dir())
        .iter()
        .map(|f| std::fs::metadata(f).unwrap().len())
        .sum();
    assert_eq!(count(&row, "parquet_bytes"), on_disk);
    assert!(
        row["last_flush_at"].as_str().unwrap().ends_with('Z'),
        "{row}"
    );
    assert_eq!(count(&row, "live_subscriptions"), 0);
    // What each user's query sees: 3 rows each.
    for token in [&alice, &bob] {
        let rows = server
            .query_ok(token, "SELECT COUNT(*) AS n FROM app.messages")
            .await;
        assert_eq!(rows[0]["n"], "3");
    }

    // A subscription shows; the namespace may come from the request.
    let mut ws = connect(&server, Some(&bob)).await;
    send(
        &mut ws,
        json!({"type": "subscribe", "id": "s", "sql": "SELECT * FROM app.messages"}),
    )
    .await;
    assert_eq!(next(&mut ws).await["type"], "subscribed");
    let (status, body) = server
        .sql_body(
            &alice,
            json!({"sql": "SHOW STATS FOR TABLE messages", "namespace": "app"}),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(
        count(&body["results"][0]["rows"][0], "live_subscriptions"),
        1
    );

    // A SHARED table has one partition.
    server
        .query_ok(
            &root,
            "CREATE SHARED TABLE app.rooms (name TEXT PRIMARY KEY);
             INSERT INTO app.rooms (name) VALUES ('a'), ('b')",
        )
        .await;
    let rooms = stats_row(&server, &alice, "SHOW STATS FOR TABLE app.rooms").await;
    assert_eq!(rooms["table_type"], "SHARED");
    assert_eq!(
        (count(&rooms, "hot_rows"), count(&rooms, "partitions")),
        (2, 1)
    );
}

#[tokio::test]
async fn show_stats_for_table_refuses_unknown_and_hostile_names() {
    let (server, _root) = setup().await;
    let alice = server.token("alice", "pw-a").await;
    let (status, body) = server.sql(&alice, "SHOW STATS FOR TABLE app.nope").await;
    assert_eq!(status, 400, "{body}");
    assert_eq!(body["error"]["code"], "NOT_FOUND");
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("app.nope"),
        "{body}"
    );
    let (status, body) = server.sql(&alice, "SHOW STATS FOR TABLE ghost.t").await;
    assert_eq!(status, 400, "{body}");
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("ghost.t")
    );

    for hostile in [
        "SHOW STATS FOR TABLE app..messages",
        "SHOW STATS FOR TABLE app/../messages",
        "SHOW STATS FOR TABLE ../../etc/passwd",
        "SHOW STATS FOR TABLE \"..\".\"messages\"",
        "SHOW STATS FOR TABLE app.\"../messages\"",
        "SHOW STATS FOR TABLE \"app/x\".messages",
        "SHOW STATS FOR TABLE a.b.c.d",
        "SHOW STATS FOR TABLE",
        "SHOW STATS FOR TABLE app.messages; extra",
    ] {
        let (status, body) = server.sql(&alice, hostile).await;
        assert_eq!(status, 400, "{hostile}: {body}");
        let code = body["error"]["code"].as_str().unwrap();
        assert!(
            ["INVALID_SQL", "INVALID_INPUT", "NOT_FOUND"].contains(&code),
            "{hostile}: {body}"
        );
    }
    assert_eq!(server.get("/health").await.0, 200);
}

#[tokio::test]
async fn server_stats_are_for_dba_and_system() {
    let (server, root) = setup().await;
    for (user, password) in [("alice", "pw-a"), ("svc", "pw-s")] {
        let token = server.token(user, password).await;
        let (status, body) = server.sql(&token, "SHOW STATS").await;
        assert_eq!(status, 403, "{user}: {body}");
        assert_eq!(body["error"]["code"], "PERMISSION_DENIED");
    }
    let ops = server.token("ops", "pw-o").await;
    let mut ws = connect(&server, Some(&ops)).await;
    send(
        &mut ws,
        json!({"type": "subscribe", "id": "s", "sql": "SELECT * FROM app.messages"}),
    )
    .await;
    assert_eq!(next(&mut ws).await["type"], "subscribed");

    let first = stats_row(&server, &ops, "SHOW STATS").await;
    for _ in 0..3 {
        server.query_ok(&root, "SELECT 1").await;
    }
    let second = stats_row(&server, &root, "SHOW STATS").await;
    // The three queries and the first SHOW STATS itself.
    assert_eq!(
        count(&second, "statements_total") - count(&first, "statements_total"),
        4
    );
    assert!(second["statements_per_second"].as_f64().unwrap() > 0.0);
    assert_eq!(count(&second, "ws_connections"), 1);
    assert_eq!(count(&second, "live_subscriptions"), 1);
    assert_eq!(count(&second, "tables"), 1);
    assert!(count(&second, "rocksdb_bytes") > 0);
    assert_eq!(count(&second, "parquet_files"), 0);
    assert!(count(&second, "uptime_seconds") >= count(&first, "uptime_seconds"));
    let (_, health) = server.get("/health").await;
    assert_eq!(second["version"], health["version"]);
}

#[tokio::test]
async fn information_schema_lists_kinds_and_columns_for_every_role() {
    let (server, root) = setup().await;
    server
        .query_ok(
            &root,
            "CREATE SHARED TABLE app.rooms (name TEXT PRIMARY KEY, title TEXT DEFAULT 'untitled');
             CREATE STREAM TABLE app.typing (room TEXT NOT NULL) WITH (retention = '10s')",
        )
        .await;
    let tables_sql = "SELECT table_catalog, table_schema, table_name, table_type \
                      FROM information_schema.tables WHERE table_schema = 'app' ORDER BY table_name";
    let expected = json!([
        {"table_catalog": "kalam", "table_schema": "app", "table_name": "messages", "table_type": "USER"},
        {"table_catalog": "kalam", "table_schema": "app", "table_name": "rooms", "table_type": "SHARED"},
        {"table_catalog": "kalam", "table_schema": "app", "table_name": "typing", "table_type": "STREAM"},
    ]);
    for (user, password) in [
        ("alice", "pw-a"),
        ("svc", "pw-s"),
        ("ops", "pw-o"),
        ("root", kalamdb_tests::ROOT_PASSWORD),
    ] {
        let token = server.token(user, password).await;
        let rows = server.query_ok(&token, tables_sql).await;
        assert_eq!(Value::Array(rows), expected, "{user}");
        // Exactly the tables system.tables shows the same caller.
        let listed = server
            .query_ok(
                &token,
                "SELECT table_schema || '.' || table_name AS t FROM information_schema.tables \
                 WHERE table_type <> 'SYSTEM' ORDER BY t",
            )
            .await;
        let system = server
            .query_ok(
                &token,
                "SELECT namespace || '.' || table_name AS t FROM system.tables ORDER BY t",
            )
            .await;
        assert_eq!(listed, system, "{user}");
    }

    let alice = server.token("alice", "pw-a").await;
    let system = server
        .query_ok(
            &alice,
            "SELECT table_name FROM information_schema.tables \
             WHERE table_schema = 'system' AND table_type = 'SYSTEM' ORDER BY table_name",
        )
        .await;
    assert_eq!(system.len(), 7, "{system:?}");
    let columns = server
        .query_ok(
            &alice,
            "SELECT column_name, ordinal_position, data_type, is_nullable, column_default \
             FROM information_schema.columns \
             WHERE table_schema = 'app' AND table_name = 'rooms' ORDER BY ordinal_position",
        )
        .await;
    assert_eq!(
        Value::Array(columns),
        json!([
            {"column_name": "name", "ordinal_position": "1", "data_type": "TEXT", "is_nullable": "NO", "column_default": null},
            {"column_name": "title", "ordinal_position": "2", "data_type": "TEXT", "is_nullable": "YES", "column_default": "'untitled'"},
            {"column_name": "_seq", "ordinal_position": "3", "data_type": "BIGINT", "is_nullable": "NO", "column_default": null},
            {"column_name": "_updated", "ordinal_position": "4", "data_type": "TIMESTAMP", "is_nullable": "NO", "column_default": null},
            {"column_name": "_deleted", "ordinal_position": "5", "data_type": "BOOLEAN", "is_nullable": "NO", "column_default": null},
        ])
    );
    let typing = server
        .query_ok(
            &alice,
            "SELECT column_name FROM information_schema.columns \
             WHERE table_name = 'typing' ORDER BY ordinal_position",
        )
        .await;
    assert_eq!(
        Value::Array(typing),
        json!([{"column_name": "id"}, {"column_name": "room"}, {"column_name": "_seq"}])
    );
    // After ALTER TABLE both follow the new schema version.
    server
        .query_ok(
            &root,
            "ALTER TABLE app.rooms ADD COLUMN seats INT DEFAULT 4",
        )
        .await;
    let added = server
        .query_ok(
            &alice,
            "SELECT ordinal_position, data_type, column_default FROM information_schema.columns \
             WHERE table_name = 'rooms' AND column_name = 'seats'",
        )
        .await;
    assert_eq!(
        Value::Array(added),
        json!([{"ordinal_position": "3", "data_type": "INT", "column_default": "4"}])
    );
    let rooms = stats_row(&server, &alice, "SHOW STATS FOR TABLE app.rooms").await;
    assert_eq!(rooms["schema_version"], 2);
    // DataFusion's own views are gone, with a clear error.
    let (status, body) = server
        .sql(&alice, "SELECT * FROM information_schema.df_settings")
        .await;
    assert_eq!(status, 400, "{body}");
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("df_settings"),
        "{body}"
    );
}
