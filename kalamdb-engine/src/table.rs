//! USER and SHARED tables on the RocksDB hot tier.
//!
//! `def` describes a table (columns, key, options) and its Arrow schema;
//! `row` is how one row version is stored; `keys` how it is addressed;
//! `registry` holds every table's definition and does the reads and atomic
//! writes; `provider` is the DataFusion face of a table, scoped to the caller.

pub mod def;
pub mod keys;
pub mod provider;
pub mod registry;
pub mod row;

pub use def::{ColumnSpec, ColumnType, DefaultValue, TableDef, TableKind};
pub use registry::TableRegistry;
