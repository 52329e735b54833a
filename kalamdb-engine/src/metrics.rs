//! The server's Prometheus metrics: one registry per engine, every metric
//! declared here (its name, help and labels are the list in
//! `docs/http-api.md`). The engine records statements and jobs; the HTTP
//! layer records requests and WebSocket traffic through the public methods;
//! gauges of things on disk are set when they are scraped
//! (`Engine::render_metrics`).
//!
//! Labels take values from small fixed sets (route templates, statement
//! kinds, job kinds, outcomes), never from user input, so the number of
//! series stays bounded.

use std::time::{Duration, Instant};

use kalamdb_model::JobKind;
use parking_lot::Mutex;
use prometheus::{
    Encoder, HistogramOpts, HistogramVec, IntCounter, IntCounterVec, IntGauge, IntGaugeVec, Opts,
    Registry, TextEncoder,
};

use crate::error::{EngineError, Result};

/// Content type of the text the scrape returns: Prometheus text
/// exposition format 0.0.4.
pub const METRICS_CONTENT_TYPE: &str = prometheus::TEXT_FORMAT;

/// What a statement does, as counted by `kalamdb_sql_statements_total`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StatementKind {
    /// Queries: `SELECT`, `WITH`, `VALUES`, `EXPLAIN`.
    Select,
    Insert,
    Update,
    Delete,
    /// `CREATE`, `ALTER`, `DROP` of anything (namespaces, tables, users, storage).
    Ddl,
    /// `SHOW …`, `DESCRIBE …`.
    Show,
    /// `FLUSH TABLE`, `COMPACT TABLE`, `KILL LIVE QUERY`.
    Admin,
    /// Anything else, and text that does not start like a statement.
    Other,
}

impl StatementKind {
    pub const ALL: [StatementKind; 8] = [
        StatementKind::Select,
        StatementKind::Insert,
        StatementKind::Update,
        StatementKind::Delete,
        StatementKind::Ddl,
        StatementKind::Show,
        StatementKind::Admin,
        StatementKind::Other,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            StatementKind::Select => "select",
            StatementKind::Insert => "insert",
            StatementKind::Update => "update",
            StatementKind::Delete => "delete",
            StatementKind::Ddl => "ddl",
            StatementKind::Show => "show",
            StatementKind::Admin => "admin",
            StatementKind::Other => "other",
        }
    }

    /// The kind of a statement starting with `word` (any case).
    pub(crate) fn of_leading_word(word: &str) -> StatementKind {
        match word.to_ascii_uppercase().as_str() {
            "SELECT" | "WITH" | "VALUES" | "EXPLAIN" => StatementKind::Select,
            "INSERT" => StatementKind::Insert,
            "UPDATE" => StatementKind::Update,
            "DELETE" => StatementKind::Delete,
            "CREATE" | "ALTER" | "DROP" => StatementKind::Ddl,
            "SHOW" | "DESCRIBE" | "DESC" => StatementKind::Show,
            "FLUSH" | "COMPACT" | "KILL" => StatementKind::Admin,
            _ => StatementKind::Other,
        }
    }
}

/// Latency buckets (seconds) for requests, statements and jobs: 0.5 ms to
/// about 65 s, doubling.
fn latency_buckets() -> Vec<f64> {
    prometheus::exponential_buckets(0.0005, 2.0, 18).expect("valid buckets")
}

/// Every metric of one server.
pub struct Metrics {
    registry: Registry,
    started: Instant,
    http_requests: IntCounterVec,
    http_duration: HistogramVec,
    statements: IntCounterVec,
    statement_duration: HistogramVec,
    ws_connections: IntGauge,
    live_subscriptions: IntGauge,
    changes_delivered: IntCounter,
    slow_consumers: IntCounter,
    jobs: IntCounterVec,
    job_rows: IntCounterVec,
    job_bytes: IntCounterVec,
    job_duration: HistogramVec,
    rocksdb_bytes: IntGauge,
    parquet_bytes: IntGauge,
    parquet_files: IntGauge,
    uptime: IntGauge,
    /// Statements per second over the last minute.
    recent_statements: Mutex<RateWindow>,
}

impl std::fmt::Debug for Metrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Metrics").finish()
    }
}

impl Metrics {
    /// A fresh registry with every metric at zero.
    pub(crate) fn new() -> Result<Metrics> {
        let registry = Registry::new_custom(Some("kalamdb".into()), None)?;
        let counter_vec = |name: &str, help: &str, labels: &[&str]| {
            let metric = IntCounterVec::new(Opts::new(name, help), labels)?;
            registry.register(Box::new(metric.clone()))?;
            Ok::<_, prometheus::Error>(metric)
        };
        let histogram_vec = |name: &str, help: &str, labels: &[&str]| {
            let opts = HistogramOpts::new(name, help).buckets(latency_buckets());
            let metric = HistogramVec::new(opts, labels)?;
            registry.register(Box::new(metric.clone()))?;
            Ok::<_, prometheus::Error>(metric)
        };
        let gauge = |name: &str, help: &str| {
            let metric = IntGauge::new(name, help)?;
            registry.register(Box::new(metric.clone()))?;
            Ok::<_, prometheus::Error>(metric)
        };
        let counter = |name: &str, help: &str| {
            let metric = IntCounter::new(name, help)?;
            registry.register(Box::new(metric.clone()))?;
            Ok::<_, prometheus::Error>(metric)
        };
        let build_info = IntGaugeVec::new(
            Opts::new("build_info", "Always 1; the server's version as a label."),
            &["version"],
        )?;
        registry.register(Box::new(build_info.clone()))?;
        build_info
            .with_label_values(&[env!("CARGO_PKG_VERSION")])
            .set(1);
        let metrics = Metrics {
            http_requests: counter_vec(
                "http_requests_total",
                "HTTP requests answered, by method, route template and status code.",
                &["method", "route", "status"],
            )?,
            http_duration: histogram_vec(
                "http_request_duration_seconds",
                "Time to answer an HTTP request (a WebSocket: its upgrade), by method and route template.",
                &["method", "route"],
            )?,
            statements: counter_vec(
                "sql_statements_total",
                "SQL statements run, by kind and outcome (ok or error).",
                &["kind", "outcome"],
            )?,
            statement_duration: histogram_vec(
                "sql_statement_duration_seconds",
                "Time to run one SQL statement, by kind.",
                &["kind"],
            )?,
            ws_connections: gauge("ws_connections", "Open WebSocket connections on /ws.")?,
            live_subscriptions: gauge(
                "live_subscriptions",
                "Live-query subscriptions registered now.",
            )?,
            changes_delivered: counter(
                "live_changes_delivered_total",
                "Change messages written to WebSocket clients.",
            )?,
            slow_consumers: counter(
                "live_slow_consumer_disconnects_total",
                "WebSocket connections closed with SLOW_CONSUMER because their queue overflowed.",
            )?,
            jobs: counter_vec(
                "jobs_total",
                "Background jobs finished, by kind (flush, compact, cleanup) and outcome (completed, failed).",
                &["kind", "outcome"],
            )?,
            job_rows: counter_vec(
                "job_rows_total",
                "Rows written to Parquet by completed jobs (flush: rows flushed; compact: rows after compaction), by kind.",
                &["kind"],
            )?,
            job_bytes: counter_vec(
                "job_bytes_total",
                "Bytes of Parquet written by completed jobs, by kind.",
                &["kind"],
            )?,
            job_duration: histogram_vec(
                "job_duration_seconds",
                "Time a background job ran, by kind.",
                &["kind"],
            )?,
            rocksdb_bytes: gauge(
                "rocksdb_size_bytes",
                "RocksDB size: SST files plus live memtables, over every column family.",
            )?,
            parquet_bytes: gauge(
                "parquet_bytes",
                "Bytes of the Parquet files every table's manifest lists.",
            )?,
            parquet_files: gauge(
                "parquet_files",
                "Parquet files every table's manifest lists.",
            )?,
            uptime: gauge("uptime_seconds", "Seconds since the server started.")?,
            registry,
            started: Instant::now(),
            recent_statements: Mutex::new(RateWindow::default()),
        };
        // Every fixed label combination starts at 0, so a series exists
        // (and rate() works) before the first event.
        for kind in StatementKind::ALL {
            for outcome in ["ok", "error"] {
                metrics
                    .statements
                    .with_label_values(&[kind.as_str(), outcome]);
            }
        }
        for kind in JobKind::ALL {
            for outcome in ["completed", "failed"] {
                metrics.jobs.with_label_values(&[kind.as_str(), outcome]);
            }
            metrics.job_rows.with_label_values(&[kind.as_str()]);
            metrics.job_bytes.with_label_values(&[kind.as_str()]);
        }
        Ok(metrics)
    }

    /// Time since the engine opened.
    pub fn uptime(&self) -> Duration {
        self.started.elapsed()
    }

    /// Records one answered HTTP request. `route` must be a route template
    /// (or a fixed word for requests that matched none), never a raw path.
    pub fn record_http(&self, method: &str, route: &str, status: u16, elapsed: Duration) {
        let status = status.to_string();
        self.http_requests
            .with_label_values(&[method, route, &status])
            .inc();
        self.http_duration
            .with_label_values(&[method, route])
            .observe(elapsed.as_secs_f64());
    }

    /// Counts an open WebSocket connection until the guard is dropped.
    pub fn ws_connection(&self) -> ConnectionGuard {
        self.ws_connections.inc();
        ConnectionGuard(self.ws_connections.clone())
    }

    /// WebSocket connections open now.
    pub fn ws_connections(&self) -> i64 {
        self.ws_connections.get()
    }

    /// One change message written to a client.
    pub fn change_delivered(&self) {
        self.changes_delivered.inc();
    }

    /// One connection closed as a slow consumer.
    pub fn slow_consumer(&self) {
        self.slow_consumers.inc();
    }

    /// One statement ran.
    pub(crate) fn record_statement(&self, kind: StatementKind, ok: bool, elapsed: Duration) {
        let outcome = if ok { "ok" } else { "error" };
        self.statements
            .with_label_values(&[kind.as_str(), outcome])
            .inc();
        self.statement_duration
            .with_label_values(&[kind.as_str()])
            .observe(elapsed.as_secs_f64());
        self.recent_statements
            .lock()
            .record(self.started.elapsed().as_secs());
    }

    /// Statements run since the server started.
    pub(crate) fn statements_total(&self) -> u64 {
        StatementKind::ALL
            .iter()
            .flat_map(|kind| ["ok", "error"].map(|outcome| (kind.as_str(), outcome)))
            .map(|(kind, outcome)| self.statements.with_label_values(&[kind, outcome]).get())
            .sum()
    }

    /// Statements per second over the last minute (over the uptime while
    /// the server is younger than a minute).
    pub(crate) fn statements_per_second(&self) -> f64 {
        let uptime = self.started.elapsed();
        let window = uptime.as_secs_f64().clamp(1.0, RATE_WINDOW_SECS as f64);
        self.recent_statements.lock().count(uptime.as_secs()) as f64 / window
    }

    /// One finished job; `rows` and `bytes` are what it wrote.
    pub(crate) fn record_job(
        &self,
        kind: JobKind,
        completed: bool,
        rows: u64,
        bytes: u64,
        elapsed: Duration,
    ) {
        let outcome = if completed { "completed" } else { "failed" };
        self.jobs.with_label_values(&[kind.as_str(), outcome]).inc();
        self.job_duration
            .with_label_values(&[kind.as_str()])
            .observe(elapsed.as_secs_f64());
        if completed {
            self.job_rows
                .with_label_values(&[kind.as_str()])
                .inc_by(rows);
            self.job_bytes
                .with_label_values(&[kind.as_str()])
                .inc_by(bytes);
        }
    }

    /// Sets the gauges computed at scrape time.
    pub(crate) fn set_sizes(&self, sizes: &Sizes) {
        self.rocksdb_bytes.set(clamp_i64(sizes.rocksdb_bytes));
        self.parquet_bytes.set(clamp_i64(sizes.parquet_bytes));
        self.parquet_files.set(clamp_i64(sizes.parquet_files));
        self.live_subscriptions
            .set(clamp_i64(sizes.live_subscriptions));
        self.uptime.set(clamp_i64(self.started.elapsed().as_secs()));
    }

    /// The registry in Prometheus text format.
    pub(crate) fn encode(&self) -> Result<String> {
        let mut out = Vec::new();
        TextEncoder::new()
            .encode(&self.registry.gather(), &mut out)
            .map_err(|e| EngineError::Internal(format!("cannot encode metrics: {e}")))?;
        String::from_utf8(out)
            .map_err(|e| EngineError::Internal(format!("cannot encode metrics: {e}")))
    }
}

fn clamp_i64(n: u64) -> i64 {
    i64::try_from(n).unwrap_or(i64::MAX)
}

/// What the scrape measures on disk and in memory.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct Sizes {
    pub rocksdb_bytes: u64,
    pub parquet_bytes: u64,
    pub parquet_files: u64,
    pub live_subscriptions: u64,
}

impl From<prometheus::Error> for EngineError {
    fn from(e: prometheus::Error) -> Self {
        EngineError::Internal(format!("metrics: {e}"))
    }
}

/// Decrements the connection gauge when the connection ends.
#[derive(Debug)]
pub struct ConnectionGuard(IntGauge);

impl Drop for ConnectionGuard {
    fn drop(&mut self) {
        self.0.dec();
    }
}

/// Seconds the statement rate looks back over.
const RATE_WINDOW_SECS: u64 = 60;

/// Events per second of uptime over the last [`RATE_WINDOW_SECS`]: one
/// bucket per second, reused as the window moves.
#[derive(Debug)]
struct RateWindow {
    /// (second of uptime, events in it), indexed by second modulo the window.
    buckets: [(u64, u64); RATE_WINDOW_SECS as usize],
}

impl Default for RateWindow {
    fn default() -> Self {
        RateWindow {
            buckets: [(u64::MAX, 0); RATE_WINDOW_SECS as usize],
        }
    }
}

impl RateWindow {
    fn record(&mut self, second: u64) {
        let slot = &mut self.buckets[(second % RATE_WINDOW_SECS) as usize];
        if slot.0 != second {
            *slot = (second, 0);
        }
        slot.1 += 1;
    }

    /// Events in the last window ending with `now` (a second of uptime).
    fn count(&self, now: u64) -> u64 {
        self.buckets
            .iter()
            .filter(|(second, _)| *second <= now && now - *second < RATE_WINDOW_SECS)
            .map(|(_, count)| count)
            .sum()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rate_window_forgets_old_seconds() {
        let mut window = RateWindow::default();
        window.record(0);
        window.record(0);
        window.record(59);
        assert_eq!(window.count(59), 3);
        // Second 60 reuses second 0's bucket.
        window.record(60);
        assert_eq!(window.count(60), 2);
        assert_eq!(window.count(200), 0);
    }

    #[test]
    fn statement_kinds_from_leading_words() {
        assert_eq!(
            StatementKind::of_leading_word("select"),
            StatementKind::Select
        );
        assert_eq!(StatementKind::of_leading_word("Drop"), StatementKind::Ddl);
        assert_eq!(StatementKind::of_leading_word("DESC"), StatementKind::Show);
        assert_eq!(
            StatementKind::of_leading_word("FLUSH"),
            StatementKind::Admin
        );
        assert_eq!(StatementKind::of_leading_word("SET"), StatementKind::Other);
    }

    #[test]
    fn encodes_every_metric_with_its_prefix() {
        let metrics = Metrics::new().unwrap();
        metrics.record_statement(StatementKind::Insert, true, Duration::from_millis(2));
        metrics.record_http("GET", "/health", 200, Duration::from_millis(1));
        let _connection = metrics.ws_connection();
        let text = metrics.encode().unwrap();
        assert!(text.contains("kalamdb_sql_statements_total{kind=\"insert\",outcome=\"ok\"} 1"));
        assert!(text.contains("kalamdb_ws_connections 1"));
        assert!(text.contains(
            "kalamdb_http_requests_total{method=\"GET\",route=\"/health\",status=\"200\"} 1"
        ));
        assert_eq!(metrics.statements_total(), 1);
        assert!(metrics.statements_per_second() > 0.0);
    }
}
