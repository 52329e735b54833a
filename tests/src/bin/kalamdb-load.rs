//! Load tool: sends many `POST /api/sql` requests to a server and prints
//! latency percentiles and throughput.
//!
//! ```sh
//! cargo build --release --bin kalamdb-server --bin kalamdb-load
//! target/release/kalamdb-load --spawn --requests 20000 --concurrency 1 --sql 'SELECT 1'
//! target/release/kalamdb-load --url http://127.0.0.1:8080 --password "$PW" --concurrency 16
//! ```
//!
//! `--spawn` starts `kalamdb-server` from the same target directory on a
//! free port with a temporary data directory. `--setup` runs SQL once as
//! root before measuring. The number that matters is the median (p50) with
//! `--concurrency 1`: the round trip of one request on loopback.

use std::sync::Arc;
use std::time::{Duration, Instant};

use kalamdb_tests::{ROOT_PASSWORD, TestServer};
use serde_json::json;

struct Args {
    url: Option<String>,
    spawn: bool,
    user: String,
    password: String,
    sql: String,
    setup: Option<String>,
    requests: usize,
    concurrency: usize,
    warmup: usize,
    scenario: Option<String>,
    users: usize,
    rows: usize,
    max_subscribers: usize,
    min_subscribers: usize,
    connections: usize,
    per_connection: usize,
}

fn parse_args() -> Args {
    let mut args = Args {
        url: None,
        spawn: false,
        user: "root".into(),
        password: ROOT_PASSWORD.into(),
        sql: "SELECT 1".into(),
        setup: None,
        requests: 10_000,
        concurrency: 1,
        warmup: 500,
        scenario: None,
        users: 1000,
        rows: 100_000,
        max_subscribers: 10_000,
        min_subscribers: 1,
        connections: 10_000,
        per_connection: 100,
    };
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        let mut value = || it.next().unwrap_or_else(|| panic!("{flag} needs a value"));
        match flag.as_str() {
            "--url" => args.url = Some(value()),
            "--spawn" => args.spawn = true,
            "--user" => args.user = value(),
            "--password" => args.password = value(),
            "--sql" => args.sql = value(),
            "--setup" => args.setup = Some(value()),
            "--requests" => args.requests = value().parse().expect("--requests N"),
            "--concurrency" => args.concurrency = value().parse().expect("--concurrency N"),
            "--warmup" => args.warmup = value().parse().expect("--warmup N"),
            "--scenario" => args.scenario = Some(value()),
            "--users" => args.users = value().parse().expect("--users N"),
            "--connections" => args.connections = value().parse().expect("--connections N"),
            "--per-connection" => {
                args.per_connection = value().parse().expect("--per-connection N")
            }
            "--rows" => args.rows = value().parse().expect("--rows N"),
            "--min-subscribers" => {
                args.min_subscribers = value().parse().expect("--min-subscribers N")
            }
            "--max-subscribers" => {
                args.max_subscribers = value().parse().expect("--max-subscribers N")
            }
            "--help" | "-h" => {
                println!(
                    "kalamdb-load [--spawn | --url URL] [--user U] [--password P] [--sql SQL] [--setup SQL] [--requests N] [--concurrency C] [--warmup N]\n\
                     kalamdb-load --spawn --scenario users [--users 1000] [--rows 100000] [--requests N]: USER-table insert and point-lookup latency, and insert throughput with 16 clients\n\
                     kalamdb-load --spawn --scenario live [--requests N]: commit-to-delivery latency with 1, 1000 and 10000 subscribers, and a SHARED-table fan-out\n\
                     kalamdb-load --spawn --scenario hold [--connections 10000] [--per-connection 100] [--users 1000] [--requests N]: server RSS and commit-to-delivery latency before and after opening connections × per-connection idle subscriptions\n\
                     kalamdb-load --spawn --scenario stream [--requests N]: STREAM-table INSERT-to-delivery latency with 0 and 10000 idle subscriptions of other users, and events/s from one writer to one subscriber"
                );
                std::process::exit(0);
            }
            other => panic!("unknown flag {other}; see --help"),
        }
    }
    assert!(args.spawn || args.url.is_some(), "give --spawn or --url");
    args
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    let index = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[index.min(sorted.len() - 1)]
}

#[tokio::main]
async fn main() {
    let args = parse_args();
    match args.scenario.as_deref() {
        Some("users") => return users_scenario(&args).await,
        Some("live") => return live_scenario(&args).await,
        Some("stream") => return stream_scenario(&args).await,
        Some("hold") => return hold_scenario(&args).await,
        Some(other) => panic!("unknown scenario {other}; use users, live, stream or hold"),
        None => {}
    }
    let server = args.spawn.then(TestServer::start);
    let base = match (&server, &args.url) {
        (Some(s), _) => s.base_url.clone(),
        (None, Some(u)) => u.trim_end_matches('/').to_string(),
        _ => unreachable!(),
    };
    let client = reqwest::Client::builder()
        .pool_max_idle_per_host(args.concurrency.max(1))
        .build()
        .unwrap();
    let login: serde_json::Value = client
        .post(format!("{base}/api/auth/login"))
        .json(&json!({"username": args.user, "password": args.password}))
        .send()
        .await
        .expect("login")
        .json()
        .await
        .expect("login body");
    let token = login["access_token"]
        .as_str()
        .expect("login failed")
        .to_string();
    if let Some(setup) = &args.setup {
        let response = client
            .post(format!("{base}/api/sql"))
            .bearer_auth(&token)
            .json(&json!({"sql": setup}))
            .send()
            .await
            .expect("setup");
        assert!(
            response.status().is_success(),
            "setup failed: {}",
            response.text().await.unwrap_or_default()
        );
    }

    let body = Arc::new(serde_json::to_vec(&json!({"sql": args.sql})).unwrap());
    let url = Arc::new(format!("{base}/api/sql"));
    let token = Arc::new(token);
    let send = move |client: reqwest::Client,
                     url: Arc<String>,
                     token: Arc<String>,
                     body: Arc<Vec<u8>>| async move {
        let started = Instant::now();
        let response = client
            .post(url.as_str())
            .bearer_auth(token.as_str())
            .header("content-type", "application/json")
            .body(body.as_ref().clone())
            .send()
            .await
            .expect("request");
        let ok = response.status().is_success();
        let _ = response.bytes().await;
        (started.elapsed(), ok)
    };
    for _ in 0..args.warmup {
        send(client.clone(), url.clone(), token.clone(), body.clone()).await;
    }

    let per_worker = args.requests / args.concurrency.max(1);
    let started = Instant::now();
    let mut workers = Vec::new();
    for _ in 0..args.concurrency.max(1) {
        let (client, url, token, body) = (client.clone(), url.clone(), token.clone(), body.clone());
        workers.push(tokio::spawn(async move {
            let mut samples = Vec::with_capacity(per_worker);
            let mut errors = 0usize;
            for _ in 0..per_worker {
                let (elapsed, ok) =
                    send(client.clone(), url.clone(), token.clone(), body.clone()).await;
                samples.push(elapsed);
                errors += usize::from(!ok);
            }
            (samples, errors)
        }));
    }
    let (samples, errors) = join_workers(workers).await;
    println!("sql: {}  concurrency: {}", args.sql, args.concurrency);
    report("requests", samples, started.elapsed(), errors);
    drop(server);
}

fn report(label: &str, mut samples: Vec<Duration>, wall: Duration, errors: usize) {
    samples.sort();
    let ms = |d: Duration| d.as_secs_f64() * 1000.0;
    println!(
        "{label}: {} requests, {errors} errors, {:.0} req/s, latency ms p50 {:.3} p90 {:.3} p99 {:.3} max {:.3}",
        samples.len(),
        samples.len() as f64 / wall.as_secs_f64(),
        ms(percentile(&samples, 0.50)),
        ms(percentile(&samples, 0.90)),
        ms(percentile(&samples, 0.99)),
        ms(*samples.last().unwrap())
    );
}

struct Api {
    client: reqwest::Client,
    base: String,
}

impl Api {
    async fn sql(&self, token: &str, sql: String) -> (bool, String) {
        let response = self
            .client
            .post(format!("{}/api/sql", self.base))
            .bearer_auth(token)
            .json(&json!({ "sql": sql }))
            .send()
            .await
            .expect("request");
        let ok = response.status().is_success();
        (ok, response.text().await.unwrap_or_default())
    }

    async fn must(&self, token: &str, sql: String) {
        let (ok, body) = self.sql(token, sql).await;
        assert!(ok, "{body}");
    }

    /// Creates users with password `pw` and role `user`, 100 per request.
    async fn create_users(&self, root: &str, names: &[String]) {
        for chunk in names.chunks(100) {
            let sql: Vec<String> = chunk
                .iter()
                .map(|n| format!("CREATE USER IF NOT EXISTS '{n}' WITH PASSWORD 'pw' ROLE user"))
                .collect();
            self.must(root, sql.join("; ")).await;
        }
    }

    async fn login(&self, user: &str, password: &str) -> String {
        let body: serde_json::Value = self
            .client
            .post(format!("{}/api/auth/login", self.base))
            .json(&json!({"username": user, "password": password}))
            .send()
            .await
            .expect("login")
            .json()
            .await
            .expect("login body");
        body["access_token"]
            .as_str()
            .expect("login failed")
            .to_string()
    }
}

/// `--scenario users`: a USER table with `--rows` rows spread over `--users`
/// users, then single-row INSERT and point SELECT latency (one client,
/// random users, each with their own token) and INSERT throughput with 16
/// concurrent clients.
async fn users_scenario(args: &Args) {
    let (server, _, api) = target(args);
    let root = api.login(&args.user, &args.password).await;
    let started = Instant::now();
    api.must(&root, "CREATE NAMESPACE IF NOT EXISTS loadtest; CREATE USER TABLE IF NOT EXISTS loadtest.items (id BIGINT PRIMARY KEY, body TEXT, n INT); CREATE USER IF NOT EXISTS 'loader' WITH PASSWORD 'loader-pw' ROLE service".into()).await;
    for chunk in (0..args.users).collect::<Vec<_>>().chunks(100) {
        let sql: Vec<String> = chunk
            .iter()
            .map(|u| format!("CREATE USER IF NOT EXISTS 'lu{u}' WITH PASSWORD 'pw' ROLE user"))
            .collect();
        api.must(&root, sql.join("; ")).await;
    }
    let loader = api.login("loader", "loader-pw").await;
    let per_user = (args.rows / args.users.max(1)).max(1);
    for u in 0..args.users {
        let values: Vec<String> = (0..per_user)
            .map(|i| format!("({i}, 'row {i} of user {u}', {i})"))
            .collect();
        api.must(
            &loader,
            format!(
                "EXECUTE AS USER 'lu{u}' (INSERT INTO loadtest.items (id, body, n) VALUES {})",
                values.join(", ")
            ),
        )
        .await;
    }
    println!(
        "setup: {} users x {per_user} rows in {:.1} s",
        args.users,
        started.elapsed().as_secs_f64()
    );

    let sample_users: Vec<usize> = (0..args.users).step_by((args.users / 50).max(1)).collect();
    let mut tokens = Vec::new();
    for u in &sample_users {
        tokens.push((*u, api.login(&format!("lu{u}"), "pw").await));
    }
    let next_id = Arc::new(std::sync::atomic::AtomicU64::new(1_000_000));

    // Single client: INSERT one row, then point lookup.
    let mut samples = Vec::new();
    let wall = Instant::now();
    for i in 0..args.requests {
        let (_, token) = &tokens[i % tokens.len()];
        let id = next_id.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let t = Instant::now();
        let (ok, body) = api
            .sql(
                token,
                format!("INSERT INTO loadtest.items (id, body, n) VALUES ({id}, 'hello', 1)"),
            )
            .await;
        samples.push(t.elapsed());
        assert!(ok, "{body}");
    }
    report("insert one row (1 client)", samples, wall.elapsed(), 0);

    let mut samples = Vec::new();
    let wall = Instant::now();
    for i in 0..args.requests {
        let (_, token) = &tokens[i % tokens.len()];
        let key = i % per_user;
        let t = Instant::now();
        let (ok, body) = api
            .sql(
                token,
                format!("SELECT body FROM loadtest.items WHERE id = {key}"),
            )
            .await;
        samples.push(t.elapsed());
        assert!(ok && body.contains("row"), "{body}");
    }
    report("point select by id (1 client)", samples, wall.elapsed(), 0);

    // 16 concurrent clients inserting.
    let clients = 16;
    let wall = Instant::now();
    let tokens = Arc::new(tokens);
    let mut workers = Vec::new();
    for w in 0..clients {
        let (api, tokens, next_id) = (api.clone(), tokens.clone(), next_id.clone());
        let per_worker = args.requests / clients;
        workers.push(tokio::spawn(async move {
            let mut samples = Vec::with_capacity(per_worker);
            let mut errors = 0;
            for i in 0..per_worker {
                let (_, token) = &tokens[(w + i * clients) % tokens.len()];
                let id = next_id.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                let t = Instant::now();
                let (ok, _) = api
                    .sql(
                        token,
                        format!(
                            "INSERT INTO loadtest.items (id, body, n) VALUES ({id}, 'hello', 1)"
                        ),
                    )
                    .await;
                samples.push(t.elapsed());
                errors += usize::from(!ok);
            }
            (samples, errors)
        }));
    }
    let (samples, errors) = join_workers(workers).await;
    report(
        "insert one row (16 clients)",
        samples,
        wall.elapsed(),
        errors,
    );
    drop(server);
}

type Ws =
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

fn now_micros() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_micros() as i64
}

/// Commit time of a change, from its `_updated` column.
fn commit_micros(row: &serde_json::Value) -> i64 {
    let text = row["_updated"]
        .as_str()
        .expect("_updated in the projection");
    chrono_like_parse(text)
}

/// Parses `YYYY-MM-DDTHH:MM:SS.ffffffZ` to microseconds since the epoch.
fn chrono_like_parse(text: &str) -> i64 {
    let (date, time) = text.trim_end_matches('Z').split_once('T').unwrap();
    let d: Vec<i64> = date.split('-').map(|p| p.parse().unwrap()).collect();
    let (hms, frac) = time.split_once('.').unwrap_or((time, "0"));
    let t: Vec<i64> = hms.split(':').map(|p| p.parse().unwrap()).collect();
    // Days from civil (Howard Hinnant's algorithm).
    let (y, m) = if d[1] <= 2 {
        (d[0] - 1, d[1] + 9)
    } else {
        (d[0], d[1] - 3)
    };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let doy = (153 * m + 2) / 5 + d[2] - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    let days = era * 146_097 + doe - 719_468;
    let micros: i64 = format!("{frac:0<6}")[..6].parse().unwrap();
    ((days * 86_400 + t[0] * 3600 + t[1] * 60 + t[2]) * 1_000_000) + micros
}

async fn ws_connect(base: &str, token: &str) -> Ws {
    use tokio_tungstenite::tungstenite::client::IntoClientRequest;
    let mut request = (base.replace("http://", "ws://") + "/ws")
        .into_client_request()
        .unwrap();
    request
        .headers_mut()
        .insert("authorization", format!("Bearer {token}").parse().unwrap());
    tokio_tungstenite::connect_async(request)
        .await
        .expect("ws connect")
        .0
}

async fn ws_subscribe(ws: &mut Ws, id: &str, sql: &str) {
    use futures::{SinkExt, StreamExt};
    use tokio_tungstenite::tungstenite::Message;
    let message = json!({"type": "subscribe", "id": id, "sql": sql});
    ws.send(Message::Text(message.to_string().into()))
        .await
        .unwrap();
    let mut seen_initial = false;
    while !seen_initial {
        let Some(Ok(Message::Text(text))) = ws.next().await else {
            panic!("socket closed")
        };
        let value: serde_json::Value = serde_json::from_str(&text).unwrap();
        assert_ne!(value["type"], "error", "{value}");
        seen_initial = value["type"] == "initial_data" && value["has_more"] == false;
    }
}

/// Reads a socket's messages; calls `on_change` with each `change` and the
/// time (µs) it was read. An `error` message ends the run.
fn spawn_change_reader(mut ws: Ws, on_change: impl Fn(&serde_json::Value, i64) + Send + 'static) {
    use futures::StreamExt;
    use tokio_tungstenite::tungstenite::Message;
    tokio::spawn(async move {
        while let Some(Ok(message)) = ws.next().await {
            let Message::Text(text) = message else {
                continue;
            };
            let received = now_micros();
            let value: serde_json::Value = serde_json::from_str(&text).unwrap();
            match value["type"].as_str() {
                Some("change") => on_change(&value, received),
                Some("error") => panic!("subscriber got {value}"),
                _ => {}
            }
        }
    });
}

/// Sends the commit-to-delivery latency of each change (from the row's
/// `_updated`).
fn spawn_reader(ws: Ws, latencies: tokio::sync::mpsc::UnboundedSender<Duration>) {
    spawn_change_reader(ws, move |change, received| {
        let commit = commit_micros(&change["rows"][0]);
        let _ = latencies.send(Duration::from_micros((received - commit).max(0) as u64));
    });
}

/// `--scenario live`: commit-to-delivery latency (commit time from the row's
/// `_updated`, delivery time when the subscriber reads the change) with 1,
/// 1,000 and 10,000 subscribers spread over users (100 per connection), each
/// write matching exactly one subscriber; then a SHARED-table insert fanned
/// out to every connection.
async fn live_scenario(args: &Args) {
    let (server, base, api) = target(args);
    let root = api.login(&args.user, &args.password).await;
    api.must(&root, "CREATE NAMESPACE IF NOT EXISTS livetest; CREATE USER TABLE IF NOT EXISTS livetest.items (id BIGINT PRIMARY KEY, room INT, body TEXT); CREATE SHARED TABLE IF NOT EXISTS livetest.feed (id BIGINT PRIMARY KEY, body TEXT)".into()).await;
    let per_connection = 100usize;
    let mut next_id = 0u64;
    for subscribers in [1usize, 1_000, 10_000]
        .into_iter()
        .filter(|n| (args.min_subscribers..=args.max_subscribers).contains(n))
    {
        let users = subscribers.div_ceil(per_connection);
        let subs_per_user = subscribers.min(per_connection);
        let names: Vec<String> = (0..users)
            .map(|u| format!("sub{subscribers}_{u}"))
            .collect();
        api.create_users(&root, &names).await;
        let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
        let mut tokens = Vec::new();
        for name in &names {
            let token = api.login(name, "pw").await;
            let mut ws = ws_connect(&base, &token).await;
            for room in 0..subs_per_user {
                ws_subscribe(
                    &mut ws,
                    &format!("r{room}"),
                    &format!("SELECT id, _updated FROM livetest.items WHERE room = {room}"),
                )
                .await;
            }
            spawn_reader(ws, tx.clone());
            tokens.push(token);
        }
        let writes = args.requests.min(2_000);
        let mut samples = Vec::with_capacity(writes);
        let wall = Instant::now();
        for i in 0..writes {
            let token = &tokens[i % tokens.len()];
            let room = (i / tokens.len()) % subs_per_user;
            next_id += 1;
            api.must(
                token,
                format!(
                    "INSERT INTO livetest.items (id, room, body) VALUES ({next_id}, {room}, 'x')"
                ),
            )
            .await;
            let latency = tokio::time::timeout(Duration::from_secs(10), rx.recv())
                .await
                .expect("delivery within 10 s")
                .unwrap();
            samples.push(latency);
        }
        report(
            &format!("commit-to-delivery, {subscribers} subscribers, 1 matching"),
            samples,
            wall.elapsed(),
            0,
        );

        // SHARED fan-out: every connection subscribes to the feed.
        if subscribers > 1 {
            let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
            for token in &tokens {
                let mut ws = ws_connect(&base, token).await;
                for k in 0..subs_per_user {
                    ws_subscribe(
                        &mut ws,
                        &format!("feed{k}"),
                        "SELECT id, _updated FROM livetest.feed",
                    )
                    .await;
                }
                spawn_reader(ws, tx.clone());
            }
            let mut samples = Vec::new();
            let wall = Instant::now();
            for _ in 0..20 {
                next_id += 1;
                api.must(
                    &root,
                    format!("INSERT INTO livetest.feed (id, body) VALUES ({next_id}, 'all')"),
                )
                .await;
                for _ in 0..subscribers {
                    samples.push(
                        tokio::time::timeout(Duration::from_secs(10), rx.recv())
                            .await
                            .expect("fan-out delivery")
                            .unwrap(),
                    );
                }
            }
            report(
                &format!("SHARED fan-out to {subscribers} subscribers"),
                samples,
                wall.elapsed(),
                0,
            );
        }
    }
    drop(server);
}

/// Sends, per change, the time since its first row's `sent` column (the
/// writer's clock, same machine) and its row count.
fn spawn_event_reader(ws: Ws, latencies: tokio::sync::mpsc::UnboundedSender<(Duration, usize)>) {
    spawn_change_reader(ws, move |change, received| {
        let rows = change["rows"].as_array().map_or(0, |r| r.len());
        let sent: i64 = change["rows"][0]["sent"]
            .as_str()
            .and_then(|s| s.parse().ok())
            .unwrap_or(received);
        let latency = Duration::from_micros((received - sent).max(0) as u64);
        let _ = latencies.send((latency, rows));
    });
}

/// `--scenario stream`: a STREAM table. INSERT-to-delivery latency (from the
/// writer's clock before it sends the INSERT to the subscriber reading the
/// change) with no other subscriptions and with 10,000 idle subscriptions of
/// other users on the same table; then how many events per second one
/// writer pushes to one subscriber with 500-row INSERTs.
async fn stream_scenario(args: &Args) {
    let (server, base, api) = target(args);
    let root = api.login(&args.user, &args.password).await;
    api.must(&root, "CREATE NAMESPACE IF NOT EXISTS streamtest; CREATE STREAM TABLE IF NOT EXISTS streamtest.events (room INT, sent BIGINT, body TEXT) WITH (retention = '1 minute', max_buffer = 1000000); CREATE USER IF NOT EXISTS 'writer' WITH PASSWORD 'pw' ROLE user".into()).await;
    let writer = api.login("writer", "pw").await;
    // A STREAM write against a USER-table write, nobody subscribed,
    // interleaved so both see the same machine.
    api.must(&root, "CREATE USER TABLE IF NOT EXISTS streamtest.items (id BIGINT PRIMARY KEY, sent BIGINT, body TEXT)".into()).await;
    let writes = args.requests.min(2_000);
    let (mut stream_writes, mut user_writes) = (Vec::new(), Vec::new());
    let wall = Instant::now();
    for i in 0..writes {
        let started = Instant::now();
        api.must(
            &writer,
            format!("INSERT INTO streamtest.events (room, sent, body) VALUES (0, {i}, 'x')"),
        )
        .await;
        stream_writes.push(started.elapsed());
        let started = Instant::now();
        api.must(
            &writer,
            format!("INSERT INTO streamtest.items (id, sent, body) VALUES ({i}, {i}, 'x')"),
        )
        .await;
        user_writes.push(started.elapsed());
    }
    report(
        "one-row INSERT round trip, nobody subscribed: STREAM table",
        stream_writes,
        wall.elapsed(),
        0,
    );
    report(
        "one-row INSERT round trip, nobody subscribed: USER table",
        user_writes,
        wall.elapsed(),
        0,
    );
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
    let mut ws = ws_connect(&base, &writer).await;
    ws_subscribe(&mut ws, "e", "SELECT sent, body FROM streamtest.events").await;
    spawn_event_reader(ws, tx);
    let mut idle = Vec::new();
    for idle_subscriptions in [0usize, 10_000] {
        // Other users' subscriptions on the same table: 100 per connection.
        while idle.len() * 100 < idle_subscriptions {
            let name = format!("idle{}", idle.len());
            api.must(
                &root,
                format!("CREATE USER IF NOT EXISTS '{name}' WITH PASSWORD 'pw' ROLE user"),
            )
            .await;
            let token = api.login(&name, "pw").await;
            let mut ws = ws_connect(&base, &token).await;
            for k in 0..100 {
                ws_subscribe(
                    &mut ws,
                    &format!("i{k}"),
                    &format!("SELECT sent FROM streamtest.events WHERE room = {k}"),
                )
                .await;
            }
            idle.push(ws);
        }
        let writes = args.requests.min(2_000);
        let mut samples = Vec::with_capacity(writes);
        let mut inserts = Vec::with_capacity(writes);
        let wall = Instant::now();
        for _ in 0..writes {
            let started = Instant::now();
            api.must(
                &writer,
                format!(
                    "INSERT INTO streamtest.events (room, sent, body) VALUES (1, {}, 'x')",
                    now_micros()
                ),
            )
            .await;
            inserts.push(started.elapsed());
            let (latency, _) = tokio::time::timeout(Duration::from_secs(10), rx.recv())
                .await
                .expect("delivery within 10 s")
                .unwrap();
            samples.push(latency);
        }
        report(
            &format!(
                "STREAM INSERT-to-delivery, {idle_subscriptions} idle subscriptions of other users"
            ),
            samples,
            wall.elapsed(),
            0,
        );
        report(
            &format!("STREAM one-row INSERT round trip, {idle_subscriptions} idle subscriptions"),
            inserts,
            wall.elapsed(),
            0,
        );
    }
    // Throughput: 500-row INSERTs, one after another, for about 5 s.
    let batch = 500usize;
    let body = "y".repeat(32);
    let wall = Instant::now();
    let mut sent_events = 0usize;
    let mut received = 0usize;
    while wall.elapsed() < Duration::from_secs(5) {
        let now = now_micros();
        let values: Vec<String> = (0..batch)
            .map(|_| format!("(2, {now}, '{body}')"))
            .collect();
        api.must(
            &writer,
            format!(
                "INSERT INTO streamtest.events (room, sent, body) VALUES {}",
                values.join(", ")
            ),
        )
        .await;
        sent_events += batch;
        while let Ok((_, rows)) = rx.try_recv() {
            received += rows;
        }
    }
    while received < sent_events {
        let (_, rows) = tokio::time::timeout(Duration::from_secs(10), rx.recv())
            .await
            .expect("every event delivered")
            .unwrap();
        received += rows;
    }
    let elapsed = wall.elapsed().as_secs_f64();
    println!(
        "STREAM one writer -> one subscriber, {batch}-row INSERTs: {received} events in {elapsed:.2} s = {:.0} events/s",
        received as f64 / elapsed
    );
    drop(idle);
    drop(server);
}

/// The server a scenario loads (spawned, or at `--url`), its base URL and
/// an API client for it.
fn target(args: &Args) -> (Option<TestServer>, String, Arc<Api>) {
    let server = args.spawn.then(TestServer::start);
    let base = server
        .as_ref()
        .map(|s| s.base_url.clone())
        .or(args.url.clone())
        .expect("--spawn or --url");
    let api = Arc::new(Api {
        client: reqwest::Client::new(),
        base: base.clone(),
    });
    (server, base, api)
}

/// Collects the latency samples and error counts of load workers.
async fn join_workers(
    workers: Vec<tokio::task::JoinHandle<(Vec<Duration>, usize)>>,
) -> (Vec<Duration>, usize) {
    let mut samples = Vec::new();
    let mut errors = 0;
    for worker in workers {
        let (s, e) = worker.await.expect("load worker");
        samples.extend(s);
        errors += e;
    }
    (samples, errors)
}

/// Resident memory of a process, in MiB (Linux), if it can be read.
fn rss_mib(pid: Option<u32>) -> Option<f64> {
    let status = std::fs::read_to_string(format!("/proc/{}/status", pid?)).ok()?;
    let kib: f64 = status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))?
        .trim()
        .trim_end_matches("kB")
        .trim()
        .parse()
        .ok()?;
    Some(kib / 1024.0)
}

/// Commit-to-delivery latency of `writes` inserts, each matching exactly one
/// subscription of `watcher_token`'s user.
async fn watched_deliveries(
    api: &Api,
    base: &str,
    watcher_token: &str,
    writes: usize,
    next_id: &mut u64,
) -> (Vec<Duration>, Duration) {
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
    let mut ws = ws_connect(base, watcher_token).await;
    ws_subscribe(
        &mut ws,
        "watch",
        "SELECT id, _updated FROM holdtest.items WHERE room = -1",
    )
    .await;
    spawn_reader(ws, tx);
    let mut samples = Vec::with_capacity(writes);
    let wall = Instant::now();
    for _ in 0..writes {
        *next_id += 1;
        api.must(
            watcher_token,
            format!(
                "INSERT INTO holdtest.items (id, room, body) VALUES ({}, -1, 'x')",
                next_id
            ),
        )
        .await;
        samples.push(
            tokio::time::timeout(Duration::from_secs(10), rx.recv())
                .await
                .expect("delivery within 10 s")
                .unwrap(),
        );
    }
    (samples, wall.elapsed())
}

/// `--scenario hold`: how many subscriptions one server holds. Measures the
/// server's RSS and one watcher's commit-to-delivery latency, then opens
/// `--connections` WebSocket connections (spread over `--users` users, each
/// connection subscribing `--per-connection` live queries on its user's
/// partition of a USER table, none of which the writes match), and measures
/// both again with every subscription held.
async fn hold_scenario(args: &Args) {
    use futures::{SinkExt, StreamExt};
    use tokio_tungstenite::tungstenite::Message;
    let (server, base, api) = target(args);
    let pid = server.as_ref().and_then(TestServer::pid);
    let root = api.login(&args.user, &args.password).await;
    api.must(&root, "CREATE NAMESPACE IF NOT EXISTS holdtest; CREATE USER TABLE IF NOT EXISTS holdtest.items (id BIGINT PRIMARY KEY, room INT, body TEXT)".into()).await;
    let users = args.users.max(1);
    let names: Vec<String> = (0..users).map(|u| format!("hold_{u}")).collect();
    api.create_users(&root, &names).await;
    let mut tokens = Vec::with_capacity(users);
    for name in &names {
        tokens.push(api.login(name, "pw").await);
    }
    let writes = args.requests.min(2_000);
    let mut next_id = 0u64;
    let mib = |v: Option<f64>| v.map_or("n/a".to_string(), |m| format!("{m:.0} MiB"));
    let rss_before = rss_mib(pid);
    let (before, wall) = watched_deliveries(&api, &base, &tokens[0], writes, &mut next_id).await;
    report("commit-to-delivery, no idle subscriptions", before, wall, 0);
    println!("server RSS before: {}", mib(rss_before));

    let per = args.per_connection;
    let opened = Instant::now();
    let (done_tx, mut done_rx) = tokio::sync::mpsc::unbounded_channel::<()>();
    let tokens = Arc::new(tokens);
    let next = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let mut openers = Vec::new();
    // 32 connections subscribe at a time; each sends its subscribes at once
    // and waits for every initial_data.
    for _ in 0..32 {
        let (tokens, next, base, done_tx) =
            (tokens.clone(), next.clone(), base.clone(), done_tx.clone());
        let connections = args.connections;
        openers.push(tokio::spawn(async move {
            loop {
                let c = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                if c >= connections {
                    break;
                }
                let mut ws = ws_connect(&base, &tokens[c % tokens.len()]).await;
                for k in 0..per {
                    let message = json!({"type": "subscribe", "id": format!("h{k}"),
                        "sql": format!("SELECT id, body FROM holdtest.items WHERE room = {k}")});
                    ws.feed(Message::Text(message.to_string().into()))
                        .await
                        .unwrap();
                }
                ws.flush().await.unwrap();
                let mut ready = 0;
                while ready < per {
                    let Some(Ok(Message::Text(text))) = ws.next().await else {
                        panic!("socket closed while subscribing")
                    };
                    let value: serde_json::Value = serde_json::from_str(&text).unwrap();
                    assert_ne!(value["type"], "error", "{value}");
                    if value["type"] == "initial_data" && value["has_more"] == false {
                        ready += 1;
                    }
                }
                // Kept read, so pings are answered; no change ever matches.
                spawn_change_reader(ws, |change, _| panic!("unexpected change {change}"));
                let _ = done_tx.send(());
            }
        }));
    }
    drop(done_tx);
    let mut held = 0usize;
    while done_rx.recv().await.is_some() {
        held += 1;
        if held.is_multiple_of(1_000) {
            println!(
                "{held} connections, {} subscriptions, {:.0} s, server RSS {}",
                held * per,
                opened.elapsed().as_secs_f64(),
                mib(rss_mib(pid))
            );
        }
    }
    for opener in openers {
        opener.await.expect("opener");
    }
    let rss_held = rss_mib(pid);
    println!(
        "held {} subscriptions on {} connections ({} users), opened in {:.1} s; server RSS {}",
        held * per,
        held,
        users,
        opened.elapsed().as_secs_f64(),
        mib(rss_held)
    );
    let (after, wall) = watched_deliveries(&api, &base, &tokens[0], writes, &mut next_id).await;
    report(
        &format!("commit-to-delivery, {} idle subscriptions", held * per),
        after,
        wall,
        0,
    );
    drop(server);
}
