//! The KalamDB engine: storage (RocksDB hot tier, Parquet cold tier),
//! catalog, SQL, live queries, jobs and auth.
//!
//! [`Engine`] is the one object the HTTP layer talks to; nothing outside this
//! crate touches RocksDB or the data directory. Modules are private: the
//! re-exports below are the whole public API.

pub(crate) mod auth;
pub(crate) mod catalog;
pub(crate) mod cold;
pub(crate) mod error;
pub(crate) mod ids;
pub(crate) mod jobs;
pub(crate) mod json;
pub(crate) mod live;
pub(crate) mod session;
pub(crate) mod sql;
pub(crate) mod storage;
pub(crate) mod system;
pub(crate) mod table;

mod engine;

pub use cold::ColdConfig;
pub use engine::{
    Bootstrap, DEFAULT_MAX_EXPRESSION_DEPTH, Engine, EngineConfig, Limits, worker_stack_bytes,
};
pub use error::{EngineError, ErrorKind, Result};
pub use jobs::JobConfig;
pub use live::{ChangeEvent, ChangeKind, LiveEvent};
pub use session::Caller;
pub use sql::execute::{BatchOutcome, ResultColumn, SqlRequest, StatementError, StatementResult};
pub use sql::subscribe::{SubscribeRequest, Subscribed};
