//! The KalamDB engine: storage (RocksDB hot tier, Parquet cold tier),
//! catalog, SQL, live queries, jobs and auth.
//!
//! [`Engine`] is the one object the HTTP layer talks to; nothing outside this
//! crate touches RocksDB or the data directory. Modules are private: the
//! re-exports below are the whole public API.

#![warn(unreachable_pub)]

// Modules import only from the layers below them (`docs/architecture.md`):
// error, ids, session, auth, metrics, storage → table → json, keyspace, system →
// hot, cold → tiers, stream → live → registry → provider, functions,
// information_schema → catalog,
// queue → engine → backup → jobs, stats → sql. `../shared/tools/module_cycles.py` checks it.
pub(crate) mod auth;
pub(crate) mod backup;
pub(crate) mod catalog;
pub(crate) mod cold;
mod engine;
pub(crate) mod error;
pub(crate) mod functions;
pub(crate) mod hot;
pub(crate) mod ids;
pub(crate) mod information_schema;
pub(crate) mod jobs;
pub(crate) mod json;
pub(crate) mod keyspace;
pub(crate) mod live;
pub(crate) mod metrics;
pub(crate) mod provider;
pub(crate) mod queue;
pub(crate) mod registry;
pub(crate) mod session;
pub(crate) mod sql;
pub(crate) mod stats;
pub(crate) mod storage;
pub(crate) mod stream;
pub(crate) mod system;
pub(crate) mod table;
pub(crate) mod tiers;

#[cfg(test)]
mod testing;

pub use cold::ColdConfig;
pub use engine::{Bootstrap, Engine, EngineConfig};
pub use error::{EngineError, ErrorKind, ObjectKind, Result};
pub use live::{ChangeEvent, ChangeKind, ChangeRows, LiveEvent};
pub use metrics::{ConnectionGuard, METRICS_CONTENT_TYPE, Metrics, StatementKind};
pub use queue::JobConfig;
pub use session::{Caller, DEFAULT_MAX_EXPRESSION_DEPTH, Limits, worker_stack_bytes};
pub use sql::execute::{
    BatchOutcome, Described, ResultColumn, SqlRequest, StatementError, StatementResult,
};
pub use sql::subscribe::{SubscribeRequest, Subscribed};
