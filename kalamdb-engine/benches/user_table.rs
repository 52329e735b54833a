//! USER-table benchmarks at the engine level (no HTTP), WAL on.
//!
//! Run: `cargo bench -p kalamdb-engine --bench user_table`
//!
//! Numbers that matter:
//! - `insert_one_row`: one `INSERT … VALUES (…)` through SQL planning and a
//!   RocksDB write batch; the p99 printed after the criterion run is the
//!   figure to keep under 1 ms.
//! - `point_lookup/users=10` vs `point_lookup/users=10000`: the same
//!   `WHERE id = …` lookup with 10 or 10,000 users' partitions in the table;
//!   the two must stay equal (cost independent of other users).

mod common;
use common::exec;
use std::sync::Arc;
use std::time::{Duration, Instant};

use criterion::{BenchmarkId, Criterion, criterion_group};
use kalamdb_engine::{Caller, Engine, EngineConfig};
use kalamdb_model::Role;
use tokio::runtime::Runtime;

const ROWS_PER_USER: usize = 10;

struct Fixture {
    engine: Arc<Engine>,
    _dir: tempfile::TempDir,
}

fn fixture(rt: &Runtime, users: usize) -> Fixture {
    let dir = tempfile::tempdir().unwrap();
    let mut config = EngineConfig::new(dir.path());
    config.root_password = Some("bench".into());
    let (engine, _) = Engine::open(config).unwrap();
    rt.block_on(async {
        let root = Caller::internal();
        exec(
            &engine,
            &root,
            "CREATE NAMESPACE bench; CREATE USER TABLE bench.items (id BIGINT PRIMARY KEY, body TEXT, n INT)".into(),
        )
        .await;
        for u in 0..users {
            let caller = Caller::new(format!("user{u}"), Role::User);
            let values: Vec<String> = (0..ROWS_PER_USER)
                .map(|i| format!("({i}, 'message {i} of user {u}', {i})"))
                .collect();
            exec(&engine, &caller, format!("INSERT INTO bench.items (id, body, n) VALUES {}", values.join(", "))).await;
        }
    });
    Fixture { engine, _dir: dir }
}

fn percentiles(mut samples: Vec<Duration>) -> (Duration, Duration) {
    samples.sort();
    let at = |p: f64| samples[((samples.len() - 1) as f64 * p) as usize];
    (at(0.5), at(0.99))
}

fn insert_one_row(c: &mut Criterion) {
    let rt = Runtime::new().unwrap();
    let f = fixture(&rt, 10);
    let caller = Caller::new("writer", Role::User);
    let mut next = 0u64;
    c.bench_function("insert_one_row", |b| {
        b.iter(|| {
            next += 1;
            rt.block_on(exec(
                &f.engine,
                &caller,
                format!("INSERT INTO bench.items (id, body, n) VALUES ({next}, 'hello', 1)"),
            ));
        })
    });
    // Per-statement latency distribution (criterion reports means).
    let samples: Vec<Duration> = (0..5_000)
        .map(|_| {
            next += 1;
            let sql = format!("INSERT INTO bench.items (id, body, n) VALUES ({next}, 'hello', 1)");
            let started = Instant::now();
            rt.block_on(exec(&f.engine, &caller, sql));
            started.elapsed()
        })
        .collect();
    let (p50, p99) = percentiles(samples);
    println!(
        "insert_one_row: 5000 statements  p50 {:.1} µs  p99 {:.1} µs",
        p50.as_secs_f64() * 1e6,
        p99.as_secs_f64() * 1e6
    );
}

fn point_lookup(c: &mut Criterion) {
    let rt = Runtime::new().unwrap();
    let mut group = c.benchmark_group("point_lookup");
    for users in [10usize, 10_000] {
        let f = fixture(&rt, users);
        let caller = Caller::new(format!("user{}", users / 2), Role::User);
        group.bench_with_input(BenchmarkId::new("users", users), &users, |b, _| {
            b.iter(|| {
                rt.block_on(exec(
                    &f.engine,
                    &caller,
                    "SELECT body FROM bench.items WHERE id = 7".into(),
                ))
            })
        });
        let samples: Vec<Duration> = (0..2_000)
            .map(|_| {
                let started = Instant::now();
                rt.block_on(exec(
                    &f.engine,
                    &caller,
                    "SELECT body FROM bench.items WHERE id = 7".into(),
                ));
                started.elapsed()
            })
            .collect();
        let (p50, p99) = percentiles(samples);
        println!(
            "point_lookup users={users}: p50 {:.1} µs  p99 {:.1} µs",
            p50.as_secs_f64() * 1e6,
            p99.as_secs_f64() * 1e6
        );
    }
    group.finish();
}

criterion_group! {
    name = benches;
    config = Criterion::default().sample_size(50).measurement_time(Duration::from_secs(5));
    targets = insert_one_row, point_lookup
}

fn main() {
    benches();
    Criterion::default().configure_from_args().final_summary();
}
