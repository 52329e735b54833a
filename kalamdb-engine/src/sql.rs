//! SQL: KalamDB's statements on top of DataFusion's dialect.
//!
//! `parser` splits a batch into statements and parses KalamDB's own
//! statements with sqlparser's token API; everything else goes to DataFusion.
//! `execute` runs a batch for a caller.

pub(crate) use bounded::bounded_functions;
pub mod execute;
pub mod functions;
pub mod parser;
pub mod result;
pub mod subscribe;

mod bounded;
mod dml;
mod namespaces;
mod storage;
mod tables;
mod users;
