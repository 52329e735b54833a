//! The KalamDB engine: storage (RocksDB hot tier), catalog, SQL and auth.
//!
//! [`Engine`] is the one object the HTTP layer talks to; nothing outside this
//! crate touches RocksDB or the data directory.

pub mod auth;
pub mod catalog;
pub mod cold;
pub mod error;
pub mod ids;
pub mod jobs;
pub mod json;
pub mod live;
pub mod session;
pub mod sql;
pub mod storage;
pub mod system;
pub mod table;

mod engine;

pub use engine::{
    Bootstrap, DEFAULT_MAX_EXPRESSION_DEPTH, Engine, EngineConfig, Limits, worker_stack_bytes,
};
pub use error::{EngineError, ErrorKind, Result};
pub use session::Caller;
pub use sql::execute::{BatchOutcome, SqlRequest, StatementError, StatementResult};
