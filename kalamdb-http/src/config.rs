//! Server configuration: an optional TOML file, then `KALAMDB_*` environment
//! variables, environment winning. Every setting is documented in
//! `docs/configuration.md`.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use serde::Deserialize;

/// Default request body limit: 10 MiB.
pub const DEFAULT_MAX_REQUEST_BYTES: usize = 10 * 1024 * 1024;

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    /// Address to bind; port 0 picks a free port.
    pub listen: String,
    /// Postgres wire protocol listener: a host:port, or `off`. Absent, it
    /// tries [`DEFAULT_PG_LISTEN`] and goes on without it if that port is
    /// taken; given, a failure to bind stops the server.
    pub pg_listen: Option<String>,
    /// RocksDB, Parquet and everything else on disk.
    pub data_dir: PathBuf,
    /// The only local directory backups are written to and restored from;
    /// `{data_dir}/backups` when absent.
    pub backup_dir: Option<PathBuf>,
    /// Run plain INSERT … VALUES and point SELECTs without DataFusion
    /// planning; off only to compare with the planned path.
    pub fast_path: bool,
    /// Password of `root`, used at first start only.
    pub root_password: Option<String>,
    /// HS256 secret for tokens; generated once and kept in the data dir when absent.
    pub jwt_secret: Option<String>,
    /// Log filter (tracing EnvFilter syntax).
    pub log: String,
    /// Origins allowed by CORS; `*` allows any.
    pub cors_origins: Vec<String>,
    /// Largest request body accepted, in bytes.
    pub max_request_bytes: usize,
    /// Lifetime of access tokens, in seconds.
    pub token_ttl_secs: u64,
    /// Live-query subscriptions one WebSocket connection may hold.
    pub ws_max_subscriptions: usize,
    /// Changes queued for one WebSocket connection before it is
    /// disconnected as a slow consumer.
    pub ws_queue_capacity: usize,
    /// Rows written to one partition (one user of a USER table, or a SHARED
    /// table) that trigger its flush, for tables without a FLUSH POLICY;
    /// 0 turns the row trigger off.
    pub flush_rows: u64,
    /// Seconds between background flushes of a table without a FLUSH
    /// POLICY; 0 turns the interval trigger off.
    pub flush_interval_secs: u64,
    /// Small Parquet files of one partition that trigger an automatic
    /// compaction; 0 turns it off.
    pub compact_min_files: usize,
    /// Seconds a completed or failed job row is kept in system.jobs.
    pub job_retention_secs: u64,
    /// Seconds between cleanup jobs (tombstone purge, orphan files); 0 turns
    /// them off.
    pub cleanup_interval_secs: u64,
    /// Statements one `/api/sql` request may hold.
    pub max_statements: usize,
    /// Bytes of SQL text one request may hold.
    pub max_sql_bytes: usize,
    /// Bytes of one live query's SQL (also bounds WebSocket messages).
    pub max_subscribe_sql_bytes: usize,
    /// How deep one statement may chain or nest expressions.
    pub max_expression_depth: usize,
    /// Tables one statement may join.
    pub max_joins: usize,
    /// Milliseconds a statement may run before it is cancelled; 0 for no limit.
    pub statement_timeout_ms: u64,
    /// Bytes all running queries may hold for joins, sorts and aggregations.
    pub query_memory_bytes: usize,
    /// Bytes (Arrow, in memory) one statement's result may hold.
    pub max_result_bytes: usize,
    /// Bytes of one STREAM table event.
    pub max_stream_event_bytes: usize,
    /// Who may read `GET /metrics` without a dba/system token.
    pub metrics_access: MetricsAccess,
}

/// Who may read `GET /metrics` (`KALAMDB_METRICS_ACCESS`). A Bearer token of
/// role dba or system is accepted in every mode.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum MetricsAccess {
    /// Only a dba/system token. The default: like every other endpoint but
    /// `/health`, nothing is readable without a token, and a reverse proxy
    /// on the same host cannot make the metrics public by accident.
    #[default]
    Token,
    /// Also requests from a loopback address (127.0.0.0/8, ::1) without a
    /// token: a Prometheus agent on the same host. Behind a reverse proxy
    /// on the same host every proxied request is such a request.
    Loopback,
    /// Anyone who can reach the server.
    Open,
}

impl MetricsAccess {
    fn parse(value: &str) -> Option<MetricsAccess> {
        match value.trim().to_ascii_lowercase().as_str() {
            "token" => Some(MetricsAccess::Token),
            "loopback" => Some(MetricsAccess::Loopback),
            "open" => Some(MetricsAccess::Open),
            _ => None,
        }
    }
}

impl Default for Config {
    fn default() -> Self {
        let limits = kalamdb_engine::Limits::default();
        Config {
            listen: "127.0.0.1:8080".into(),
            pg_listen: None,
            data_dir: PathBuf::from("./data"),
            backup_dir: None,
            fast_path: true,
            root_password: None,
            jwt_secret: None,
            log: "info".into(),
            cors_origins: vec!["*".into()],
            max_request_bytes: DEFAULT_MAX_REQUEST_BYTES,
            token_ttl_secs: 3600,
            ws_max_subscriptions: 100,
            ws_queue_capacity: 4096,
            flush_rows: 10_000,
            flush_interval_secs: 300,
            compact_min_files: 10,
            job_retention_secs: 7 * 86_400,
            cleanup_interval_secs: 3_600,
            max_statements: limits.max_statements,
            max_sql_bytes: limits.max_sql_bytes,
            max_subscribe_sql_bytes: limits.max_subscribe_sql_bytes,
            max_expression_depth: limits.max_expression_depth,
            max_joins: limits.max_joins,
            query_memory_bytes: limits.query_memory_bytes,
            max_result_bytes: limits.max_result_bytes,
            max_stream_event_bytes: limits.max_stream_event_bytes,
            statement_timeout_ms: limits.statement_timeout.map_or(0, |t| t.as_millis() as u64),
            metrics_access: MetricsAccess::default(),
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read config file {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("invalid config file {path}: {message}")]
    Parse { path: PathBuf, message: String },
    #[error("invalid value for {name}: {message}")]
    Invalid { name: String, message: String },
}

impl Config {
    /// Reads `file` (if given), then applies the environment.
    pub fn load(file: Option<&Path>) -> Result<Config, ConfigError> {
        Config::load_from(file, |name| std::env::var(name).ok())
    }

    /// Like [`Config::load`] with an explicit environment, for tests.
    pub fn load_from(
        file: Option<&Path>,
        env: impl Fn(&str) -> Option<String>,
    ) -> Result<Config, ConfigError> {
        let mut config = match file {
            Some(path) => {
                let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
                    path: path.to_path_buf(),
                    source,
                })?;
                toml::from_str(&text).map_err(|e| ConfigError::Parse {
                    path: path.to_path_buf(),
                    message: e.to_string(),
                })?
            }
            None => Config::default(),
        };
        let var = |name: &str| env(name).filter(|v| !v.is_empty());
        if let Some(v) = var("KALAMDB_LISTEN") {
            config.listen = v;
        }
        if let Some(v) = var("KALAMDB_PG_LISTEN") {
            config.pg_listen = Some(v);
        }
        if let Some(v) = var("KALAMDB_DATA_DIR") {
            config.data_dir = PathBuf::from(v);
        }
        if let Some(v) = var("KALAMDB_BACKUP_DIR") {
            config.backup_dir = Some(PathBuf::from(v));
        }
        if let Some(v) = var("KALAMDB_ROOT_PASSWORD") {
            config.root_password = Some(v);
        }
        if let Some(v) = var("KALAMDB_JWT_SECRET") {
            config.jwt_secret = Some(v);
        }
        if let Some(v) = var("KALAMDB_LOG") {
            config.log = v;
        }
        if let Some(v) = var("KALAMDB_CORS_ORIGINS") {
            config.cors_origins = v
                .split(',')
                .map(|s| s.trim().to_string())
                .filter(|s| !s.is_empty())
                .collect();
        }
        if let Some(v) = var("KALAMDB_MAX_REQUEST_BYTES") {
            config.max_request_bytes = parse_number("KALAMDB_MAX_REQUEST_BYTES", &v)?;
        }
        if let Some(v) = var("KALAMDB_TOKEN_TTL_SECS") {
            config.token_ttl_secs = parse_number("KALAMDB_TOKEN_TTL_SECS", &v)?;
        }
        if let Some(v) = var("KALAMDB_WS_MAX_SUBSCRIPTIONS") {
            config.ws_max_subscriptions = parse_number("KALAMDB_WS_MAX_SUBSCRIPTIONS", &v)?;
        }
        if let Some(v) = var("KALAMDB_WS_QUEUE_CAPACITY") {
            config.ws_queue_capacity = parse_number("KALAMDB_WS_QUEUE_CAPACITY", &v)?;
        }
        if let Some(v) = var("KALAMDB_FLUSH_ROWS") {
            config.flush_rows = parse_number("KALAMDB_FLUSH_ROWS", &v)?;
        }
        if let Some(v) = var("KALAMDB_FLUSH_INTERVAL_SECS") {
            config.flush_interval_secs = parse_number("KALAMDB_FLUSH_INTERVAL_SECS", &v)?;
        }
        if let Some(v) = var("KALAMDB_COMPACT_MIN_FILES") {
            config.compact_min_files = parse_number("KALAMDB_COMPACT_MIN_FILES", &v)?;
        }
        if let Some(v) = var("KALAMDB_JOB_RETENTION_SECS") {
            config.job_retention_secs = parse_number("KALAMDB_JOB_RETENTION_SECS", &v)?;
        }
        if let Some(v) = var("KALAMDB_CLEANUP_INTERVAL_SECS") {
            config.cleanup_interval_secs = parse_number("KALAMDB_CLEANUP_INTERVAL_SECS", &v)?;
        }
        for (name, field) in [
            ("KALAMDB_MAX_STATEMENTS", &mut config.max_statements),
            ("KALAMDB_MAX_SQL_BYTES", &mut config.max_sql_bytes),
            (
                "KALAMDB_MAX_SUBSCRIBE_SQL_BYTES",
                &mut config.max_subscribe_sql_bytes,
            ),
            (
                "KALAMDB_MAX_EXPRESSION_DEPTH",
                &mut config.max_expression_depth,
            ),
            ("KALAMDB_MAX_JOINS", &mut config.max_joins),
            ("KALAMDB_QUERY_MEMORY_BYTES", &mut config.query_memory_bytes),
            ("KALAMDB_MAX_RESULT_BYTES", &mut config.max_result_bytes),
            (
                "KALAMDB_MAX_STREAM_EVENT_BYTES",
                &mut config.max_stream_event_bytes,
            ),
        ] {
            if let Some(v) = var(name) {
                *field = parse_number(name, &v)?;
            }
        }
        if let Some(v) = var("KALAMDB_STATEMENT_TIMEOUT_MS") {
            config.statement_timeout_ms = parse_number("KALAMDB_STATEMENT_TIMEOUT_MS", &v)?;
        }
        if let Some(v) = var("KALAMDB_FAST_PATH") {
            config.fast_path = match v.to_ascii_lowercase().as_str() {
                "on" | "true" | "1" => true,
                "off" | "false" | "0" => false,
                _ => {
                    return Err(invalid(
                        "KALAMDB_FAST_PATH",
                        &format!("'{v}' is not on or off"),
                    ));
                }
            };
        }
        if let Some(v) = var("KALAMDB_METRICS_ACCESS") {
            config.metrics_access = MetricsAccess::parse(&v).ok_or_else(|| {
                invalid(
                    "KALAMDB_METRICS_ACCESS",
                    &format!("'{v}' is not one of token, loopback, open"),
                )
            })?;
        }
        config.validate()?;
        Ok(config)
    }

    fn validate(&self) -> Result<(), ConfigError> {
        self.listen_addr()?;
        self.pg_listen_addr()?;
        if self.max_request_bytes == 0 {
            return Err(invalid("max_request_bytes", "must be greater than 0"));
        }
        if self.ws_max_subscriptions == 0 || self.ws_queue_capacity == 0 {
            return Err(invalid(
                "ws_max_subscriptions/ws_queue_capacity",
                "must be greater than 0",
            ));
        }
        if self.max_statements == 0
            || self.max_sql_bytes == 0
            || self.max_subscribe_sql_bytes == 0
            || self.max_expression_depth == 0
            || self.query_memory_bytes == 0
            || self.max_result_bytes == 0
            || self.max_stream_event_bytes == 0
        {
            return Err(invalid(
                "max_statements/max_sql_bytes/max_subscribe_sql_bytes/max_expression_depth/query_memory_bytes/max_result_bytes/max_stream_event_bytes",
                "must be greater than 0",
            ));
        }
        if self.max_expression_depth > 100_000 {
            return Err(invalid("max_expression_depth", "must be at most 100000"));
        }
        if self.token_ttl_secs == 0 {
            return Err(invalid("token_ttl_secs", "must be greater than 0"));
        }
        if let Some(secret) = &self.jwt_secret
            && secret.len() < 16
        {
            return Err(invalid("jwt_secret", "must be at least 16 characters"));
        }
        if self.root_password.as_deref() == Some("") {
            return Err(invalid("root_password", "must not be empty"));
        }
        tracing_subscriber::EnvFilter::try_new(&self.log)
            .map_err(|e| invalid("log", &e.to_string()))?;
        Ok(())
    }

    /// The engine's request limits.
    pub fn limits(&self) -> kalamdb_engine::Limits {
        kalamdb_engine::Limits {
            max_statements: self.max_statements,
            max_sql_bytes: self.max_sql_bytes,
            max_subscribe_sql_bytes: self.max_subscribe_sql_bytes,
            max_expression_depth: self.max_expression_depth,
            max_joins: self.max_joins,
            query_memory_bytes: self.query_memory_bytes,
            max_result_bytes: self.max_result_bytes,
            max_stream_event_bytes: self.max_stream_event_bytes,
            statement_timeout: (self.statement_timeout_ms > 0)
                .then(|| std::time::Duration::from_millis(self.statement_timeout_ms)),
        }
    }

    /// The address to bind.
    pub fn listen_addr(&self) -> Result<SocketAddr, ConfigError> {
        use std::net::ToSocketAddrs;
        self.listen
            .to_socket_addrs()
            .ok()
            .and_then(|mut addrs| addrs.next())
            .ok_or_else(|| {
                invalid(
                    "listen",
                    &format!("'{}' is not a host:port address", self.listen),
                )
            })
    }
}

/// Where the Postgres listener binds when `pg_listen` is not set.
pub const DEFAULT_PG_LISTEN: &str = "127.0.0.1:5433";

impl Config {
    /// The Postgres listener's address and whether it was configured
    /// explicitly; `None` when it is `off`.
    pub fn pg_listen_addr(&self) -> Result<Option<(SocketAddr, bool)>, ConfigError> {
        use std::net::ToSocketAddrs;
        let (text, explicit) = match self.pg_listen.as_deref() {
            Some(v) if v.eq_ignore_ascii_case("off") => return Ok(None),
            Some(v) => (v, true),
            None => (DEFAULT_PG_LISTEN, false),
        };
        text.to_socket_addrs()
            .ok()
            .and_then(|mut addrs| addrs.next())
            .map(|addr| Some((addr, explicit)))
            .ok_or_else(|| {
                invalid(
                    "pg_listen",
                    &format!("'{text}' is not a host:port address or off"),
                )
            })
    }
}

fn invalid(name: &str, message: &str) -> ConfigError {
    ConfigError::Invalid {
        name: name.to_string(),
        message: message.to_string(),
    }
}

fn parse_number<T: std::str::FromStr>(name: &str, value: &str) -> Result<T, ConfigError> {
    value
        .trim()
        .parse()
        .map_err(|_| invalid(name, &format!("'{value}' is not a whole number")))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn env(pairs: &[(&str, &str)]) -> impl Fn(&str) -> Option<String> {
        let map: HashMap<String, String> = pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        move |k| map.get(k).cloned()
    }

    #[test]
    fn environment_wins_over_file() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("kalamdb.toml");
        std::fs::write(
            &file,
            "listen = \"127.0.0.1:9000\"\ndata_dir = \"/tmp/x\"\nlog = \"debug\"\n",
        )
        .unwrap();
        let config =
            Config::load_from(Some(&file), env(&[("KALAMDB_LISTEN", "127.0.0.1:0")])).unwrap();
        assert_eq!(config.listen, "127.0.0.1:0");
        assert_eq!(config.data_dir, PathBuf::from("/tmp/x"));
        assert_eq!(config.log, "debug");
        assert_eq!(config.max_request_bytes, DEFAULT_MAX_REQUEST_BYTES);
    }

    #[test]
    fn bad_config_is_named() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("bad.toml");
        std::fs::write(&file, "listn = \"x\"\n").unwrap();
        let err = Config::load_from(Some(&file), env(&[]))
            .unwrap_err()
            .to_string();
        assert!(err.contains("unknown field `listn`"), "{err}");
        let err = Config::load_from(None, env(&[("KALAMDB_LISTEN", "nowhere")]))
            .unwrap_err()
            .to_string();
        assert!(err.contains("listen"), "{err}");
        let err = Config::load_from(None, env(&[("KALAMDB_MAX_REQUEST_BYTES", "ten")]))
            .unwrap_err()
            .to_string();
        assert!(err.contains("KALAMDB_MAX_REQUEST_BYTES"), "{err}");
        assert!(Config::load_from(Some(Path::new("/nonexistent.toml")), env(&[])).is_err());
    }

    #[test]
    fn metrics_access_from_file_and_environment() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("kalamdb.toml");
        assert_eq!(
            Config::load_from(None, env(&[])).unwrap().metrics_access,
            MetricsAccess::Token
        );
        std::fs::write(&file, "metrics_access = \"loopback\"\n").unwrap();
        let config = Config::load_from(Some(&file), env(&[])).unwrap();
        assert_eq!(config.metrics_access, MetricsAccess::Loopback);
        let config =
            Config::load_from(Some(&file), env(&[("KALAMDB_METRICS_ACCESS", "Open")])).unwrap();
        assert_eq!(config.metrics_access, MetricsAccess::Open);
        let err = Config::load_from(None, env(&[("KALAMDB_METRICS_ACCESS", "public")]))
            .unwrap_err()
            .to_string();
        assert!(err.contains("KALAMDB_METRICS_ACCESS"), "{err}");
        std::fs::write(&file, "metrics_access = \"everyone\"\n").unwrap();
        assert!(Config::load_from(Some(&file), env(&[])).is_err());
    }
}
