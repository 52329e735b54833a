//! What a statement returns: columns, JSON rows, a count and a message.

use datafusion::arrow::array::RecordBatch;
use datafusion::arrow::datatypes::SchemaRef;

use crate::error::Result;
use crate::json::{JsonRow, batches_to_rows, sql_type_name};

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
    pub rows: Vec<JsonRow>,
    /// Rows returned (queries) or affected (DDL/DML).
    pub row_count: u64,
    /// Human summary for DDL/DML.
    pub message: Option<String>,
    /// A query's rows as Arrow batches instead of `rows`, when the request
    /// asked for Arrow ([`crate::SqlRequest::arrow`]).
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
            message: None,
            arrow: None,
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

    pub(crate) fn from_batches(
        batches: &[RecordBatch],
        schema: &datafusion::arrow::datatypes::Schema,
    ) -> Result<Self> {
        let rows = batches_to_rows(batches)?;
        Ok(StatementResult {
            columns: ResultColumn::of_schema(schema),
            row_count: rows.len() as u64,
            rows,
            message: None,
            arrow: None,
        })
    }
}
