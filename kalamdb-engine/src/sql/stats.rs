//! `SHOW STATS FOR TABLE ns.t` and `SHOW STATS`: one wide row each
//! (columns in docs/sql.md), built from [`crate::stats`].

use std::sync::Arc;

use datafusion::arrow::array::{
    ArrayRef, Float64Array, Int32Array, Int64Array, RecordBatch, StringArray,
    TimestampMicrosecondArray,
};
use datafusion::arrow::datatypes::{DataType, Field, Schema, TimeUnit};

use super::parser::TableRef;
use super::result::StatementResult;
use super::tables::table_not_found;
use crate::engine::Engine;
use crate::error::{EngineError, Result};
use crate::session::Caller;
use crate::system::visible_table;
use crate::table::TableId;

fn int64(n: u64) -> ArrayRef {
    Arc::new(Int64Array::from(vec![i64::try_from(n).unwrap_or(i64::MAX)]))
}

fn text(s: &str) -> ArrayRef {
    Arc::new(StringArray::from(vec![s]))
}

/// One row of the given columns.
fn one_row(columns: Vec<(&str, DataType, ArrayRef)>) -> Result<(Arc<Schema>, RecordBatch)> {
    let schema = Arc::new(Schema::new(
        columns
            .iter()
            .map(|(name, ty, _)| Field::new(*name, ty.clone(), true))
            .collect::<Vec<_>>(),
    ));
    let arrays = columns.into_iter().map(|(_, _, array)| array).collect();
    let batch = RecordBatch::try_new(schema.clone(), arrays)
        .map_err(|e| EngineError::Internal(format!("cannot build a stats row: {e}")))?;
    Ok((schema, batch))
}

impl Engine {
    /// Any caller may ask about a table `system.tables` shows them; the
    /// numbers are the table's totals over every partition.
    pub(crate) fn show_table_stats(
        &self,
        caller: &Caller,
        name: &TableRef,
        default_namespace: Option<&str>,
    ) -> Result<StatementResult> {
        let namespace = self.resolve_namespace(name, default_namespace)?;
        let table_id = TableId::new(&namespace, &name.name);
        let row = self
            .stores
            .tables
            .get(table_id.to_string().as_str())?
            .and_then(|row| visible_table(row, caller));
        let (Some(row), Some(def)) = (row, self.tables.by_id(&table_id)) else {
            return Err(table_not_found(&table_id));
        };
        let stats = self.table_stats(&def)?;
        let last_flush: ArrayRef = Arc::new(
            TimestampMicrosecondArray::from(vec![stats.last_flush.map(|t| t.0)])
                .with_timezone("UTC"),
        );
        let (schema, batch) = one_row(vec![
            ("namespace", DataType::Utf8, text(&row.namespace)),
            ("table_name", DataType::Utf8, text(&row.table_name)),
            ("table_type", DataType::Utf8, text(row.table_type.as_str())),
            (
                "schema_version",
                DataType::Int32,
                Arc::new(Int32Array::from(vec![def.version])),
            ),
            ("hot_rows", DataType::Int64, int64(stats.hot_rows)),
            ("cold_rows", DataType::Int64, int64(stats.cold_rows)),
            ("parquet_files", DataType::Int64, int64(stats.parquet_files)),
            ("parquet_bytes", DataType::Int64, int64(stats.parquet_bytes)),
            ("partitions", DataType::Int64, int64(stats.partitions)),
            ("deleted_rows", DataType::Int64, int64(stats.deleted_rows)),
            (
                "last_flush_at",
                DataType::Timestamp(TimeUnit::Microsecond, Some("UTC".into())),
                last_flush,
            ),
            (
                "live_subscriptions",
                DataType::Int64,
                int64(stats.live_subscriptions),
            ),
        ])?;
        Ok(StatementResult::arrow(schema, vec![batch]))
    }

    /// Server-wide numbers are the operator's: roles dba and system.
    pub(crate) fn show_server_stats(&self, caller: &Caller) -> Result<StatementResult> {
        if !caller.role.is_admin() {
            return Err(EngineError::PermissionDenied(format!(
                "SHOW STATS requires role dba or system; user {} has role {}",
                caller.user_id, caller.role
            )));
        }
        let stats = self.server_stats()?;
        let (schema, batch) = one_row(vec![
            ("uptime_seconds", DataType::Int64, int64(stats.uptime_secs)),
            (
                "ws_connections",
                DataType::Int64,
                int64(stats.ws_connections),
            ),
            (
                "live_subscriptions",
                DataType::Int64,
                int64(stats.sizes.live_subscriptions),
            ),
            (
                "statements_total",
                DataType::Int64,
                int64(stats.statements_total),
            ),
            (
                "statements_per_second",
                DataType::Float64,
                Arc::new(Float64Array::from(vec![
                    (stats.statements_per_second * 1000.0).round() / 1000.0,
                ])),
            ),
            ("tables", DataType::Int64, int64(stats.tables)),
            (
                "rocksdb_bytes",
                DataType::Int64,
                int64(stats.sizes.rocksdb_bytes),
            ),
            (
                "parquet_bytes",
                DataType::Int64,
                int64(stats.sizes.parquet_bytes),
            ),
            (
                "parquet_files",
                DataType::Int64,
                int64(stats.sizes.parquet_files),
            ),
            ("version", DataType::Utf8, text(env!("CARGO_PKG_VERSION"))),
        ])?;
        Ok(StatementResult::arrow(schema, vec![batch]))
    }
}
