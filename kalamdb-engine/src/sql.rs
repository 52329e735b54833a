//! SQL: KalamDB's statements on top of DataFusion's dialect.
//!
//! `parser` splits a batch into statements and parses KalamDB's own
//! statements with sqlparser's token API; everything else goes to DataFusion.
//! `execute` runs a batch for a caller.

pub(crate) mod execute;
pub(crate) mod parser;
pub(crate) mod result;
pub(crate) mod subscribe;

mod alter;
mod backup;
mod dml;
mod fast;
mod namespaces;
mod stats;
mod storage;
mod tables;
mod users;
