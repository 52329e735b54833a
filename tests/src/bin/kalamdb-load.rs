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
            "--help" | "-h" => {
                println!(
                    "kalamdb-load [--spawn | --url URL] [--user U] [--password P] [--sql SQL] [--setup SQL] [--requests N] [--concurrency C] [--warmup N]"
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
        let send = send.clone();
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
    let mut samples = Vec::new();
    let mut errors = 0;
    for worker in workers {
        let (s, e) = worker.await.unwrap();
        samples.extend(s);
        errors += e;
    }
    let wall = started.elapsed();
    samples.sort();
    let ms = |d: Duration| d.as_secs_f64() * 1000.0;
    println!("sql: {}", args.sql);
    println!(
        "requests: {}  concurrency: {}  errors: {}  wall: {:.2} s  throughput: {:.0} req/s",
        samples.len(),
        args.concurrency,
        errors,
        wall.as_secs_f64(),
        samples.len() as f64 / wall.as_secs_f64()
    );
    println!(
        "latency ms: p50 {:.3}  p90 {:.3}  p99 {:.3}  max {:.3}",
        ms(percentile(&samples, 0.50)),
        ms(percentile(&samples, 0.90)),
        ms(percentile(&samples, 0.99)),
        ms(*samples.last().unwrap())
    );
    drop(server);
}
