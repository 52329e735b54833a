//! Cold-tier (Parquet) benchmarks at the engine level (no HTTP).
//!
//! Run: `./scripts/bench-cold.sh` (this bench, then the DuckDB comparison),
//! or just this part: `cargo bench --workspace --bench cold_tier`.
//!
//! What it prints:
//! - flush throughput (rows/s and Parquet MB/s) of 200,000 rows of one user
//!   and of 100 users × 2,000 rows;
//! - over ONE user with 1,000,000 rows of `bench.events`: a point lookup
//!   `WHERE id = k` (p50/p99 over 1,000 random keys) and a 30-day range
//!   query (~15 % of the rows; rows returned, and a `count(*)`/`sum(n)`
//!   variant), once with the rows in 20 Parquet files (20 flushes of 50,000
//!   rows) and once with the same rows all in RocksDB (never flushed).
//!
//! The Parquet data directory stays in `target/bench-cold-data/cold` (wiped
//! at each run) so that `scripts/bench-duckdb.py` can run the same range
//! query on the same files: their paths go to `target/bench-cold-files.txt`,
//! and KalamDB's timings to `target/bench-cold-results.json`.
//!
//! `COLD_BENCH_ROWS` (default 1,000,000) scales the 20-file dataset down for
//! a quick check; `COLD_BENCH_EXPLAIN=1` prints `EXPLAIN ANALYZE` of the
//! queries on both tiers, and the time of the `count(*)`/`sum(n)` query over
//! an empty window and over all rows.

mod common;
use common::exec;
use std::path::{Path, PathBuf};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use kalamdb_engine::{Caller, Engine, EngineConfig};
use kalamdb_model::Role;
use serde_json::{Value, json};
use tokio::runtime::Runtime;

/// Files the 1,000,000 rows are flushed into.
const FLUSHES: u64 = 20;
/// Rows per multi-row `INSERT`.
const ROWS_PER_INSERT: u64 = 5_000;
/// `created` of id 0: 2026-01-01T00:00:00Z.
const START_SECS: i64 = 1_767_225_600;
/// Seconds between consecutive ids for 1,000,000 rows: they span ~197 days
/// (a smaller `COLD_BENCH_ROWS` spreads its rows over the same days).
const STEP_SECS_1M: i64 = 17;
static STEP_SECS: OnceLock<i64> = OnceLock::new();
/// The 30-day window of the range query.
const WINDOW_FROM: &str = "2026-03-01T00:00:00Z";
const WINDOW_TO: &str = "2026-03-31T00:00:00Z";
const WINDOW_FROM_SECS: i64 = START_SECS + (31 + 28) * 86_400;
const WINDOW_TO_SECS: i64 = WINDOW_FROM_SECS + 30 * 86_400;

const POINT_SAMPLES: usize = 1_000;
const RANGE_SAMPLES: usize = 20;

const KINDS: [&str; 8] = [
    "click", "view", "purchase", "login", "logout", "share", "like", "comment",
];

const CREATE_TABLE: &str = "CREATE USER TABLE bench.{table} (id BIGINT PRIMARY KEY, \
     created TIMESTAMP NOT NULL, kind TEXT, body TEXT, n INT)";

fn range_rows_sql() -> String {
    format!(
        "SELECT id, created, kind, n FROM bench.events \
         WHERE created >= TIMESTAMP '{WINDOW_FROM}' AND created < TIMESTAMP '{WINDOW_TO}'"
    )
}

fn range_agg_sql() -> String {
    format!(
        "SELECT count(*) AS c, sum(n) AS s FROM bench.events \
         WHERE created >= TIMESTAMP '{WINDOW_FROM}' AND created < TIMESTAMP '{WINDOW_TO}'"
    )
}

/// The text of a result cell (BIGINTs come back as JSON strings).
fn cell(row: &serde_json::Map<String, Value>, column: &str) -> String {
    match row.get(column) {
        Some(Value::String(s)) => s.clone(),
        Some(other) => other.to_string(),
        None => panic!("no column {column} in {row:?}"),
    }
}

fn created_secs(id: u64) -> i64 {
    START_SECS + id as i64 * STEP_SECS.get().copied().unwrap_or(STEP_SECS_1M)
}

fn timestamp(secs: i64) -> String {
    chrono::DateTime::from_timestamp(secs, 0)
        .expect("timestamp in range")
        .format("%Y-%m-%dT%H:%M:%SZ")
        .to_string()
}

fn value_tuple(id: u64, user: &str) -> String {
    format!(
        "({id}, '{}', '{}', 'event {id} of {user}: the quick brown fox jumps over the lazy dog #{}', {})",
        timestamp(created_secs(id)),
        KINDS[(id % KINDS.len() as u64) as usize],
        id % 97,
        id % 1000
    )
}

/// Inserts ids `from..=to` for `user` in statements of `ROWS_PER_INSERT` rows.
async fn insert_ids(engine: &Engine, user: &str, table: &str, from: u64, to: u64) {
    let caller = Caller::new(user, Role::User);
    let mut start = from;
    while start <= to {
        let end = (start + ROWS_PER_INSERT - 1).min(to);
        let values: Vec<String> = (start..=end).map(|id| value_tuple(id, user)).collect();
        let sql = format!(
            "INSERT INTO bench.{table} (id, created, kind, body, n) VALUES {}",
            values.join(", ")
        );
        exec(engine, &caller, sql).await;
        start = end + 1;
    }
}

/// What one `FLUSH TABLE` did, from its job row and the wall clock.
#[derive(Debug, Default, Clone, Copy)]
struct Flushed {
    rows: u64,
    users: u64,
    files: u64,
    bytes: u64,
    /// The job's own `duration_ms`.
    job: Duration,
    /// `FLUSH TABLE` → job seen `completed` (20 ms polling).
    wall: Duration,
}

impl Flushed {
    fn add(&mut self, other: Flushed) {
        self.rows += other.rows;
        self.users = self.users.max(other.users);
        self.files += other.files;
        self.bytes += other.bytes;
        self.job += other.job;
        self.wall += other.wall;
    }

    fn print(&self, label: &str) {
        let secs = self.job.as_secs_f64();
        println!(
            "flush {label}: {} rows, {} users, {} files, {:.1} MB in {:.0} ms (job; wall {:.0} ms): \
             {:.0} rows/s, {:.1} MB/s",
            self.rows,
            self.users,
            self.files,
            self.bytes as f64 / 1e6,
            secs * 1e3,
            self.wall.as_secs_f64() * 1e3,
            self.rows as f64 / secs,
            self.bytes as f64 / 1e6 / secs
        );
    }

    fn to_json(self) -> Value {
        let secs = self.job.as_secs_f64();
        json!({
            "rows": self.rows,
            "users": self.users,
            "files": self.files,
            "bytes": self.bytes,
            "job_ms": secs * 1e3,
            "wall_ms": self.wall.as_secs_f64() * 1e3,
            "rows_per_sec": self.rows as f64 / secs,
            "mb_per_sec": self.bytes as f64 / 1e6 / secs,
        })
    }
}

/// `FLUSH TABLE bench.{table}` as root, waiting for its job to complete.
async fn flush(engine: &Engine, table: &str) -> Flushed {
    let root = Caller::internal();
    let started = Instant::now();
    let results = exec(engine, &root, format!("FLUSH TABLE bench.{table}")).await;
    let job_id = cell(&results[0].json_rows().unwrap()[0], "job_id");
    loop {
        let results = exec(
            engine,
            &root,
            format!(
                "SELECT status, result, error_message FROM system.jobs WHERE job_id = '{job_id}'"
            ),
        )
        .await;
        let row = &results[0].json_rows().unwrap()[0];
        match cell(row, "status").as_str() {
            "completed" => {
                let wall = started.elapsed();
                let result: Value = serde_json::from_str(&cell(row, "result")).unwrap();
                let int = |k: &str| {
                    result[k]
                        .as_u64()
                        .unwrap_or_else(|| panic!("{k} in {result}"))
                };
                return Flushed {
                    rows: int("rows_flushed"),
                    users: int("users_count"),
                    files: int("files"),
                    bytes: int("bytes"),
                    job: Duration::from_secs_f64(result["duration_ms"].as_f64().unwrap() / 1e3),
                    wall,
                };
            }
            "failed" => panic!("flush job {job_id} failed: {}", cell(row, "error_message")),
            _ => tokio::time::sleep(Duration::from_millis(20)).await,
        }
    }
}

fn open(rt: &Runtime, dir: &Path) -> Arc<Engine> {
    if dir.exists() {
        std::fs::remove_dir_all(dir).unwrap();
    }
    std::fs::create_dir_all(dir).unwrap();
    let mut config = EngineConfig::new(dir);
    config.root_password = Some("bench".into());
    config.cold.default_flush_rows = 0;
    config.cold.default_flush_interval_secs = 0;
    config.cold.compact_min_files = 0;
    let (engine, _) = Engine::open(config).unwrap();
    let _guard = rt.enter();
    engine.start_jobs().unwrap();
    engine
}

/// Summary of a latency sample.
#[derive(Debug, Clone, Copy)]
struct Stats {
    p50: Duration,
    p99: Duration,
    mean: Duration,
    min: Duration,
}

impl Stats {
    fn of(mut samples: Vec<Duration>) -> Stats {
        samples.sort();
        let at = |p: f64| samples[((samples.len() - 1) as f64 * p).round() as usize];
        Stats {
            p50: at(0.5),
            p99: at(0.99),
            mean: samples.iter().sum::<Duration>() / samples.len() as u32,
            min: samples[0],
        }
    }

    fn to_json(self) -> Value {
        json!({
            "p50_ms": self.p50.as_secs_f64() * 1e3,
            "p99_ms": self.p99.as_secs_f64() * 1e3,
            "mean_ms": self.mean.as_secs_f64() * 1e3,
            "min_ms": self.min.as_secs_f64() * 1e3,
        })
    }
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}

/// The keys of the point lookups: the same pseudo-random ids on both tiers.
fn lookup_ids(total: u64) -> Vec<u64> {
    let mut state = 0x9E37_79B9_7F4A_7C15u64;
    (0..POINT_SAMPLES)
        .map(|_| {
            // splitmix64
            state = state.wrapping_add(0x9E37_79B9_7F4A_7C15);
            let mut z = state;
            z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
            z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
            z ^= z >> 31;
            z % total + 1
        })
        .collect()
}

struct Expected {
    range_rows: u64,
    range_sum: u64,
}

fn expected(total: u64) -> Expected {
    let ids = (1..=total).filter(|&id| {
        let t = created_secs(id);
        (WINDOW_FROM_SECS..WINDOW_TO_SECS).contains(&t)
    });
    let (mut range_rows, mut range_sum) = (0, 0);
    for id in ids {
        range_rows += 1;
        range_sum += id % 1000;
    }
    Expected {
        range_rows,
        range_sum,
    }
}

/// `RANGE_SAMPLES` timed runs (after 2 warm-up runs) of a range query,
/// checked against the expected rows (or `c`/`s` of the aggregate).
async fn range_bench(
    engine: &Engine,
    alice: &Caller,
    tier: &str,
    sql: String,
    expected: &Expected,
) -> Stats {
    let aggregate = sql.contains("count(*)");
    let mut samples = Vec::with_capacity(RANGE_SAMPLES);
    for i in 0..RANGE_SAMPLES + 2 {
        let started = Instant::now();
        let results = exec(engine, alice, sql.clone()).await;
        let elapsed = started.elapsed();
        if aggregate {
            let row = &results[0].json_rows().unwrap()[0];
            assert_eq!(cell(row, "c"), expected.range_rows.to_string(), "{tier}");
            assert_eq!(cell(row, "s"), expected.range_sum.to_string(), "{tier}");
        } else {
            assert_eq!(
                results[0].json_rows().unwrap().len() as u64,
                expected.range_rows,
                "{tier}"
            );
        }
        if i >= 2 {
            samples.push(elapsed);
        }
    }
    let stats = Stats::of(samples);
    println!(
        "{tier}: 30-day range ({}, {} rows matched), {RANGE_SAMPLES} runs: \
         p50 {:.1} ms  mean {:.1} ms  min {:.1} ms",
        if aggregate { "count/sum" } else { "rows" },
        expected.range_rows,
        ms(stats.p50),
        ms(stats.mean),
        ms(stats.min)
    );
    stats
}

/// Point lookups and range queries over `bench.events` of alice.
fn query_bench(
    rt: &Runtime,
    engine: &Engine,
    tier: &str,
    total: u64,
    expected: &Expected,
) -> Value {
    let alice = Caller::new("alice", Role::User);
    rt.block_on(async {
        let count = exec(
            engine,
            &alice,
            "SELECT count(*) AS c FROM bench.events".into(),
        )
        .await;
        assert_eq!(
            cell(&count[0].json_rows().unwrap()[0], "c"),
            total.to_string(),
            "{tier}: row count"
        );

        // Point lookups: a few to warm up, then the timed ones.
        let ids = lookup_ids(total);
        for &id in ids.iter().take(20) {
            exec(
                engine,
                &alice,
                format!("SELECT id, created, kind, body, n FROM bench.events WHERE id = {id}"),
            )
            .await;
        }
        let mut samples = Vec::with_capacity(ids.len());
        for &id in &ids {
            let sql =
                format!("SELECT id, created, kind, body, n FROM bench.events WHERE id = {id}");
            let started = Instant::now();
            let results = exec(engine, &alice, sql).await;
            samples.push(started.elapsed());
            assert_eq!(results[0].json_rows().unwrap().len(), 1, "{tier}: id {id}");
            assert_eq!(
                cell(&results[0].json_rows().unwrap()[0], "id"),
                id.to_string()
            );
        }
        let point = Stats::of(samples);
        println!(
            "{tier}: point lookup WHERE id = k, {} keys: p50 {:.2} ms  p99 {:.2} ms  mean {:.2} ms",
            ids.len(),
            ms(point.p50),
            ms(point.p99),
            ms(point.mean)
        );

        let rows = range_bench(engine, &alice, tier, range_rows_sql(), expected).await;
        let agg = range_bench(engine, &alice, tier, range_agg_sql(), expected).await;

        if std::env::var_os("COLD_BENCH_EXPLAIN").is_some() {
            for sql in [
                range_rows_sql(),
                range_agg_sql(),
                format!(
                    "SELECT id, created, kind, body, n FROM bench.events WHERE id = {}",
                    ids[0]
                ),
            ] {
                let results = exec(engine, &alice, format!("EXPLAIN ANALYZE {sql}")).await;
                println!("--- {tier}: EXPLAIN ANALYZE {sql}");
                for row in &results[0].json_rows().unwrap() {
                    for value in row.values() {
                        if let Value::String(s) = value {
                            println!("{s}");
                        }
                    }
                }
            }
            // Where the range query's time goes: a window no row falls in
            // (fixed cost: opening and pruning the files, planning) and the
            // whole table (every row through the same path).
            for (label, from, to) in [
                (
                    "empty window",
                    "2030-01-01T00:00:00Z",
                    "2030-01-31T00:00:00Z",
                ),
                ("all rows", "2025-01-01T00:00:00Z", "2027-01-01T00:00:00Z"),
            ] {
                let sql = format!(
                    "SELECT count(*) AS c, sum(n) AS s FROM bench.events \
                     WHERE created >= TIMESTAMP '{from}' AND created < TIMESTAMP '{to}'"
                );
                let mut samples = Vec::new();
                for _ in 0..10 {
                    let started = Instant::now();
                    exec(engine, &alice, sql.clone()).await;
                    samples.push(started.elapsed());
                }
                let stats = Stats::of(samples);
                println!(
                    "{tier}: count/sum over the {label}: p50 {:.1} ms",
                    ms(stats.p50)
                );
            }
        }

        json!({
            "point_lookup": point.to_json(),
            "range_rows": rows.to_json(),
            "range_count_sum": agg.to_json(),
        })
    })
}

fn parquet_files(dir: &Path) -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "parquet"))
        .collect();
    files.sort();
    files
}

fn main() {
    let total: u64 = std::env::var("COLD_BENCH_ROWS")
        .ok()
        .map(|v| v.parse().expect("COLD_BENCH_ROWS is a number"))
        .unwrap_or(1_000_000);
    assert!(
        total >= FLUSHES && total.is_multiple_of(FLUSHES),
        "COLD_BENCH_ROWS must be a multiple of {FLUSHES}"
    );
    let per_flush = total / FLUSHES;
    STEP_SECS
        .set(STEP_SECS_1M * 1_000_000 / total as i64)
        .unwrap();
    let target = Path::new(env!("CARGO_MANIFEST_DIR")).join("../target");
    let target = target.canonicalize().unwrap_or(target);
    let base = target.join("bench-cold-data");
    let rt = Runtime::new().unwrap();
    let expected = expected(total);

    // ---- Parquet: flush throughput, then 20 flushes of `per_flush` rows.
    let cold = open(&rt, &base.join("cold"));
    let (flush_one, flush_many, cold_flushes, insert_rate) = rt.block_on(async {
        let root = Caller::internal();
        exec(&cold, &root, "CREATE NAMESPACE bench".into()).await;
        for table in ["flush_one", "flush_many", "events"] {
            exec(&cold, &root, CREATE_TABLE.replace("{table}", table)).await;
        }

        insert_ids(&cold, "alice", "flush_one", 1, 200_000).await;
        let one = flush(&cold, "flush_one").await;
        one.print("200,000 rows × 1 user");

        for u in 0..100 {
            insert_ids(&cold, &format!("user{u}"), "flush_many", 1, 2_000).await;
        }
        let many = flush(&cold, "flush_many").await;
        many.print("2,000 rows × 100 users");

        let mut all = Flushed::default();
        let mut inserting = Duration::ZERO;
        for f in 0..FLUSHES {
            let started = Instant::now();
            insert_ids(&cold, "alice", "events", f * per_flush + 1, (f + 1) * per_flush).await;
            inserting += started.elapsed();
            let flushed = flush(&cold, "events").await;
            assert_eq!(flushed.rows, per_flush);
            assert_eq!(flushed.files, 1);
            all.add(flushed);
        }
        all.print(&format!("{FLUSHES} × {per_flush} rows × 1 user (bench.events)"));
        let insert_rate = total as f64 / inserting.as_secs_f64();
        println!(
            "insert: {total} rows in INSERTs of {ROWS_PER_INSERT} rows: {:.1} s, {insert_rate:.0} rows/s",
            inserting.as_secs_f64()
        );
        (one, many, all, insert_rate)
    });
    let files = parquet_files(&base.join("cold/storage/bench/events/alice"));
    assert_eq!(files.len() as u64, FLUSHES, "Parquet files of bench.events");
    let parquet = query_bench(&rt, &cold, "parquet", total, &expected);

    // ---- RocksDB: the same rows, never flushed.
    let hot_dir = base.join("hot");
    let hot = open(&rt, &hot_dir);
    rt.block_on(async {
        let root = Caller::internal();
        exec(&hot, &root, "CREATE NAMESPACE bench".into()).await;
        exec(&hot, &root, CREATE_TABLE.replace("{table}", "events")).await;
        insert_ids(&hot, "alice", "events", 1, total).await;
    });
    let rocksdb = query_bench(&rt, &hot, "rocksdb", total, &expected);

    let list: String = files.iter().map(|f| format!("{}\n", f.display())).collect();
    std::fs::write(target.join("bench-cold-files.txt"), list).unwrap();
    let results = json!({
        "rows": total,
        "files": files.len(),
        "range_matched_rows": expected.range_rows,
        "range_sum_n": expected.range_sum,
        "range_samples": RANGE_SAMPLES,
        "window": [WINDOW_FROM, WINDOW_TO],
        "insert_rows_per_sec": insert_rate,
        "flush": {
            "one_user_200k": flush_one.to_json(),
            "100_users_2k": flush_many.to_json(),
            "events_20_files": cold_flushes.to_json(),
        },
        "parquet": parquet,
        "rocksdb": rocksdb,
    });
    std::fs::write(
        target.join("bench-cold-results.json"),
        serde_json::to_string_pretty(&results).unwrap(),
    )
    .unwrap();
    println!(
        "Parquet files: {} (listed in {})",
        files.len(),
        target.join("bench-cold-files.txt").display()
    );
    rt.block_on(async {
        cold.stop_jobs().await;
        hot.stop_jobs().await;
    });
    drop(hot);
    let _ = std::fs::remove_dir_all(hot_dir);
}
