//! KalamDB's system-table models and the small types every crate shares.
//!
//! A model is a plain serde struct marked `#[system_table]`; the macro
//! implements [`SystemTable`] for it. Storage (`SystemStore<M>`) and SQL
//! access (`SystemTableProvider<M>`) are written once, in `kalamdb-engine`,
//! over that trait.

extern crate self as kalamdb_model;

mod column;
mod models;
mod types;

pub use column::{ArrowColumn, column_field, table_schema};
pub use kalamdb_macros::system_table;
pub use models::{Job, LiveQuery, Namespace, StorageLocation, Table, TableSchema, User};
pub use types::{JobKind, JobStatus, Role, StorageKey, StorageKind, TableKind, Timestamp};

use arrow_array::RecordBatch;
use arrow_schema::{ArrowError, SchemaRef};

/// A struct stored in a RocksDB column family and queried as `system.<TABLE_NAME>`.
///
/// Implemented by `#[system_table]`; write it by hand only in tests.
pub trait SystemTable:
    serde::Serialize + serde::de::DeserializeOwned + Clone + Send + Sync + 'static
{
    /// Name inside the `system` schema (`users` for `system.users`).
    const TABLE_NAME: &'static str;
    /// RocksDB column family holding the rows (`system_users`).
    const COLUMN_FAMILY: &'static str;
    /// Type of the key field.
    type Key: StorageKey + ?Sized;

    /// The row's key.
    fn key(&self) -> &Self::Key;
    /// Arrow schema of the visible columns; doc comments are in the `comment` metadata.
    fn schema() -> SchemaRef;
    /// Converts rows to one Arrow batch with [`Self::schema`].
    fn to_record_batch(rows: &[Self]) -> Result<RecordBatch, ArrowError>;
}

/// Used by generated code; not a public API.
#[doc(hidden)]
pub mod __private {
    pub use arrow_array::RecordBatch;
    pub use arrow_schema::{ArrowError, SchemaRef};

    /// Finishes any builder into an `ArrayRef`.
    pub fn finish<B: arrow_array::builder::ArrayBuilder>(builder: &mut B) -> arrow_array::ArrayRef {
        builder.finish()
    }
}
