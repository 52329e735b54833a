//! What a statement returns: columns, JSON rows, a count and a message.

use datafusion::arrow::array::RecordBatch;
use datafusion::arrow::datatypes::SchemaRef;

use crate::error::Result;
use crate::json::{JsonRow, batches_to_rows, sql_type_name, write_rows};

/// A column of a result.
#[derive(Debug, Clone, PartialEq)]
pub struct ResultColumn {
    pub name: String,
    /// SQL type name (`BIGINT`, `TEXT`, …).
    pub data_type: String,
}

impl ResultColumn {
    /// The columns of an Arrow schema, with their SQL type names.
    pub fn of_schema(schema: &datafusion::arrow::datatypes::Schema) -> Vec<ResultColumn> {
        schema
            .fields()
            .iter()
            .map(|f| ResultColumn {
                name: f.name().clone(),
                data_type: sql_type_name(f.data_type()),
            })
            .collect()
    }
}

/// The result of one statement.
#[derive(Debug, Clone, Default)]
pub struct StatementResult {
    pub columns: Vec<ResultColumn>,
    /// Rows the engine built as JSON (catalog statements, job rows); a
    /// query's rows are in [`StatementResult::arrow`] instead. Read either
    /// with [`StatementResult::json_rows`] or [`StatementResult::write_rows`].
    pub rows: Vec<JsonRow>,
    /// Rows returned (queries) or affected (DDL/DML).
    pub row_count: u64,
    /// Human summary for DDL/DML.
    pub message: Option<String>,
    /// The statement's leading keywords (`SELECT`, `INSERT`, `CREATE
    /// TABLE`, …): the command tag of the Postgres wire protocol.
    pub command: String,
    /// A query's rows as Arrow batches instead of `rows`: written as JSON
    /// text straight from the arrays, or sent as an Arrow IPC stream.
    pub arrow: Option<(SchemaRef, Vec<RecordBatch>)>,
}

impl StatementResult {
    /// A result with no rows and a message.
    pub fn message(row_count: u64, message: impl Into<String>) -> Self {
        StatementResult {
            row_count,
            message: Some(message.into()),
            ..Default::default()
        }
    }

    /// One row `{job_id, status: queued}` for a statement that queued a job.
    pub(crate) fn job(job_id: &str, message: String) -> Self {
        let row = serde_json::json!({"job_id": job_id, "status": "queued"});
        let mut result = Self::rows(&[("job_id", "TEXT"), ("status", "TEXT")], vec![row]);
        result.message = Some(message);
        result
    }

    /// Rows built by KalamDB (JSON objects) with the given column names and
    /// SQL types.
    pub(crate) fn rows(columns: &[(&str, &str)], rows: Vec<serde_json::Value>) -> Self {
        let rows: Vec<JsonRow> = rows
            .into_iter()
            .filter_map(|r| r.as_object().cloned())
            .collect();
        StatementResult {
            columns: columns
                .iter()
                .map(|(name, ty)| ResultColumn {
                    name: name.to_string(),
                    data_type: ty.to_string(),
                })
                .collect(),
            row_count: rows.len() as u64,
            rows,
            ..Default::default()
        }
    }

    /// A query's result kept as Arrow batches.
    pub(crate) fn arrow(schema: SchemaRef, batches: Vec<RecordBatch>) -> Self {
        StatementResult {
            columns: ResultColumn::of_schema(&schema),
            row_count: batches.iter().map(|b| b.num_rows() as u64).sum(),
            arrow: Some((schema, batches)),
            ..Default::default()
        }
    }

    /// The rows as JSON objects, whichever form they are kept in.
    pub fn json_rows(&self) -> Result<Vec<JsonRow>> {
        match &self.arrow {
            Some((_, batches)) => batches_to_rows(batches),
            None => Ok(self.rows.clone()),
        }
    }

    /// Writes the rows to `out` as a JSON array of objects.
    pub fn write_rows(&self, out: &mut Vec<u8>) -> Result<()> {
        match &self.arrow {
            Some((_, batches)) => write_rows(batches, out),
            None => serde_json::to_writer(out, &self.rows).map_err(|e| {
                crate::error::EngineError::Internal(format!("cannot encode rows: {e}"))
            }),
        }
    }
}
