//! Who is asking, and how much they may ask for: the caller and the
//! request [`Limits`] travel with each query inside DataFusion's session
//! config, so providers enforce visibility and bounds themselves and no
//! SQL can reach around them.

use std::sync::Arc;

use datafusion::catalog::Session;
use kalamdb_model::Role;

/// The authenticated user a statement runs for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Caller {
    pub user_id: String,
    pub role: Role,
}

impl Caller {
    pub fn new(user_id: impl Into<String>, role: Role) -> Self {
        Caller {
            user_id: user_id.into(),
            role,
        }
    }

    /// The engine itself (bootstrap, internal statements).
    pub fn internal() -> Self {
        Caller::new("root", Role::System)
    }

    /// The caller attached to a DataFusion session. A session without one is
    /// treated as a `user` with no id, which sees nothing private.
    pub fn of_session(state: &dyn Session) -> Caller {
        state
            .config()
            .get_extension::<Caller>()
            .map(Arc::unwrap_or_clone)
            .unwrap_or_else(|| Caller::new("", Role::User))
    }
}

/// Bounds on one request's work, so no client can exhaust a worker's stack,
/// a worker's time or the server's memory. Each has a setting
/// (`docs/configuration.md`) that the error message names.
#[derive(Debug, Clone)]
pub struct Limits {
    /// Statements in one `/api/sql` request (`KALAMDB_MAX_STATEMENTS`).
    pub max_statements: usize,
    /// Bytes of SQL text in one request (`KALAMDB_MAX_SQL_BYTES`).
    pub max_sql_bytes: usize,
    /// Bytes of a live query's SQL (`KALAMDB_MAX_SUBSCRIBE_SQL_BYTES`).
    pub max_subscribe_sql_bytes: usize,
    /// Expression depth of one statement (`KALAMDB_MAX_EXPRESSION_DEPTH`).
    pub max_expression_depth: usize,
    /// Tables one statement may join (`KALAMDB_MAX_JOINS`): DataFusion's
    /// join planning grows steeply with their number.
    pub max_joins: usize,
    /// Time one statement may run before it is cancelled
    /// (`KALAMDB_STATEMENT_TIMEOUT_MS`); `None` for no limit.
    pub statement_timeout: Option<std::time::Duration>,
    /// Bytes (Arrow, in memory) one statement's result may hold
    /// (`KALAMDB_MAX_RESULT_BYTES`).
    pub max_result_bytes: usize,
    /// Memory all running queries may hold for joins, sorts and
    /// aggregations (`KALAMDB_QUERY_MEMORY_BYTES`); sorts and aggregations
    /// spill to disk beyond their share, anything else fails the query.
    pub query_memory_bytes: usize,
    /// Bytes of one STREAM table event (`KALAMDB_MAX_STREAM_EVENT_BYTES`).
    pub max_stream_event_bytes: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_statements: 1000,
            max_sql_bytes: 1024 * 1024,
            max_subscribe_sql_bytes: 64 * 1024,
            max_expression_depth: DEFAULT_MAX_EXPRESSION_DEPTH,
            max_joins: 64,
            statement_timeout: Some(std::time::Duration::from_secs(60)),
            query_memory_bytes: 2 * 1024 * 1024 * 1024,
            max_result_bytes: 256 * 1024 * 1024,
            max_stream_event_bytes: 64 * 1024,
        }
    }
}

/// Default of [`Limits::max_expression_depth`].
pub const DEFAULT_MAX_EXPRESSION_DEPTH: usize = 500;

/// Stack size of the threads that run statements. DataFusion's planner,
/// optimiser and expression evaluator recurse once per level of an
/// expression; in a debug build a level costs up to ~8 KiB of stack in the
/// deepest phase. This leaves room for [`DEFAULT_MAX_EXPRESSION_DEPTH`]
/// many times over (the worst case is tested in `tests/hardening.rs`);
/// raise it with the depth limit. The memory is reserved, not committed.
pub fn worker_stack_bytes(max_expression_depth: usize) -> usize {
    (max_expression_depth * 128 * 1024).max(64 * 1024 * 1024)
}
