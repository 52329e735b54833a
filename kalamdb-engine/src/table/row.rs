//! One stored row version and its conversion to and from Arrow.
//!
//! Cells are JSON values typed by the column: BOOLEAN → bool, INT/BIGINT →
//! integer, DOUBLE → number (or "NaN"/"inf"/"-inf"), TEXT/JSON → string,
//! TIMESTAMP → microseconds, DATE → days since the epoch; NULL → null.

use std::sync::Arc;

use datafusion::arrow::array::{
    Array, ArrayRef, AsArray, BooleanBuilder, Date32Builder, Float64Builder, Int32Builder,
    Int64Builder, RecordBatch, StringBuilder, TimestampMicrosecondBuilder,
};
use datafusion::arrow::compute::{CastOptions, cast_with_options};
use datafusion::arrow::datatypes::{
    Date32Type, Float64Type, Int32Type, Int64Type, SchemaRef, TimestampMicrosecondType,
};
use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::def::{ColumnType, TableDef};
use crate::error::{EngineError, Result};

/// A row version as stored in RocksDB.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub(crate) struct StoredRow {
    #[serde(rename = "s")]
    pub seq: i64,
    /// Commit time, microseconds since the epoch.
    #[serde(rename = "u")]
    pub updated: i64,
    #[serde(rename = "d", default, skip_serializing_if = "std::ops::Not::not")]
    pub deleted: bool,
    /// The schema version the row was written under (rows from before
    /// schema versions were recorded are version 1). Readers bring it to
    /// their version with [`TableDef::upgrade`].
    #[serde(
        rename = "w",
        default = "first_version",
        skip_serializing_if = "is_first_version"
    )]
    pub version: i32,
    /// One cell per user column of that version.
    #[serde(rename = "v")]
    pub values: Vec<Value>,
}

fn first_version() -> i32 {
    1
}

fn is_first_version(version: &i32) -> bool {
    *version == 1
}

impl StoredRow {
    pub(crate) fn encode(&self) -> Result<Vec<u8>> {
        serde_json::to_vec(self)
            .map_err(|e| EngineError::Internal(format!("cannot encode row: {e}")))
    }

    pub(crate) fn decode(bytes: &[u8]) -> Result<StoredRow> {
        serde_json::from_slice(bytes)
            .map_err(|e| EngineError::Internal(format!("corrupt row: {e}")))
    }
}

pub(crate) fn float_cell(v: f64) -> Value {
    serde_json::Number::from_f64(v)
        .map(Value::Number)
        .unwrap_or_else(|| Value::String(v.to_string()))
}

fn cell_f64(cell: &Value) -> Option<f64> {
    match cell {
        Value::Number(n) => n.as_f64(),
        Value::String(s) => s.parse().ok(),
        _ => None,
    }
}

/// The cells of `array`, cast to the column's type first.
pub(crate) fn array_to_cells(array: &ArrayRef, ty: ColumnType, column: &str) -> Result<Vec<Value>> {
    let array = if array.data_type() == &ty.arrow_type() {
        array.clone()
    } else {
        let strict = CastOptions {
            safe: false,
            ..Default::default()
        };
        cast_with_options(array, &ty.arrow_type(), &strict).map_err(|e| {
            EngineError::InvalidInput(format!(
                "value for column {column} cannot be converted to {}: {e}",
                ty.sql_name()
            ))
        })?
    };
    let cells = (0..array.len()).map(|i| -> Result<Value> {
        if array.is_null(i) {
            return Ok(Value::Null);
        }
        Ok(match ty {
            ColumnType::Boolean => Value::Bool(array.as_boolean().value(i)),
            ColumnType::Int => Value::from(array.as_primitive::<Int32Type>().value(i)),
            ColumnType::BigInt => Value::from(array.as_primitive::<Int64Type>().value(i)),
            ColumnType::Double => float_cell(array.as_primitive::<Float64Type>().value(i)),
            ColumnType::Text => Value::String(array.as_string::<i32>().value(i).to_string()),
            ColumnType::Json => {
                let text = array.as_string::<i32>().value(i);
                serde_json::from_str::<Value>(text).map_err(|e| {
                    EngineError::InvalidInput(format!("column {column} must hold valid JSON: {e}"))
                })?;
                Value::String(text.to_string())
            }
            ColumnType::Timestamp => {
                Value::from(array.as_primitive::<TimestampMicrosecondType>().value(i))
            }
            ColumnType::Date => Value::from(array.as_primitive::<Date32Type>().value(i)),
        })
    });
    cells.collect()
}

/// A cell of a column whose type was widened from `from` to `to` (INT →
/// BIGINT, INT/BIGINT → DOUBLE, anything → TEXT), converted as Arrow's cast
/// converts the same value in a Parquet file, so both tiers agree.
pub(crate) fn convert_cell(cell: Value, from: ColumnType, to: ColumnType) -> Value {
    if from == to || cell.is_null() {
        return cell;
    }
    match to {
        ColumnType::Double => cell_f64(&cell).map(float_cell).unwrap_or(Value::Null),
        ColumnType::Text if from == ColumnType::Json => cell,
        ColumnType::Text => {
            let array = cells_to_array(from, std::iter::once(&cell));
            cast_with_options(&array, &to.arrow_type(), &CastOptions::default())
                .ok()
                .and_then(|text| {
                    let text = text.as_string_opt::<i32>()?;
                    (!text.is_null(0)).then(|| Value::String(text.value(0).to_string()))
                })
                .unwrap_or(Value::Null)
        }
        _ => cell,
    }
}

/// An Arrow array of the column's type from cells.
pub(crate) fn cells_to_array<'a>(
    ty: ColumnType,
    cells: impl ExactSizeIterator<Item = &'a Value>,
) -> ArrayRef {
    let n = cells.len();
    match ty {
        ColumnType::Boolean => {
            let mut b = BooleanBuilder::with_capacity(n);
            cells.for_each(|c| b.append_option(c.as_bool()));
            Arc::new(b.finish())
        }
        ColumnType::Int => {
            let mut b = Int32Builder::with_capacity(n);
            cells.for_each(|c| b.append_option(c.as_i64().map(|v| v as i32)));
            Arc::new(b.finish())
        }
        ColumnType::BigInt => {
            let mut b = Int64Builder::with_capacity(n);
            cells.for_each(|c| b.append_option(c.as_i64()));
            Arc::new(b.finish())
        }
        ColumnType::Double => {
            let mut b = Float64Builder::with_capacity(n);
            cells.for_each(|c| b.append_option(cell_f64(c)));
            Arc::new(b.finish())
        }
        ColumnType::Text | ColumnType::Json => {
            let mut b = StringBuilder::with_capacity(n, n * 16);
            cells.for_each(|c| b.append_option(c.as_str()));
            Arc::new(b.finish())
        }
        ColumnType::Timestamp => {
            let mut b = TimestampMicrosecondBuilder::with_capacity(n).with_timezone("UTC");
            cells.for_each(|c| b.append_option(c.as_i64()));
            Arc::new(b.finish())
        }
        ColumnType::Date => {
            let mut b = Date32Builder::with_capacity(n);
            cells.for_each(|c| b.append_option(c.as_i64().map(|v| v as i32)));
            Arc::new(b.finish())
        }
    }
}

/// Rows as a batch of `schema`, which is `def.arrow_schema()` projected to
/// `projection` (indices into the full schema).
pub(crate) fn rows_to_batch(
    def: &TableDef,
    rows: &[StoredRow],
    schema: SchemaRef,
    projection: &[usize],
) -> Result<RecordBatch> {
    let user_columns = def.user_column_count();
    let columns: Vec<ArrayRef> = projection
        .iter()
        .map(|&i| -> ArrayRef {
            if i < user_columns {
                cells_to_array(def.columns[i].ty, rows.iter().map(|r| &r.values[i]))
            } else if i == user_columns {
                let mut b = Int64Builder::with_capacity(rows.len());
                rows.iter().for_each(|r| b.append_value(r.seq));
                Arc::new(b.finish())
            } else if i == user_columns + 1 {
                let mut b =
                    TimestampMicrosecondBuilder::with_capacity(rows.len()).with_timezone("UTC");
                rows.iter().for_each(|r| b.append_value(r.updated));
                Arc::new(b.finish())
            } else {
                let mut b = BooleanBuilder::with_capacity(rows.len());
                rows.iter().for_each(|r| b.append_value(r.deleted));
                Arc::new(b.finish())
            }
        })
        .collect();
    let options =
        datafusion::arrow::array::RecordBatchOptions::new().with_row_count(Some(rows.len()));
    RecordBatch::try_new_with_options(schema, columns, &options)
        .map_err(|e| EngineError::Internal(format!("cannot build batch: {e}")))
}

/// A committed write: the previous live version (if any) and the new one.
#[derive(Debug, Clone)]
pub(crate) struct Change {
    pub old: Option<StoredRow>,
    pub new: StoredRow,
}

#[cfg(test)]
mod tests {
    use super::*;
    use datafusion::arrow::array::{Int64Array, StringArray};
    use datafusion::arrow::datatypes::DataType;
    use serde_json::json;

    #[test]
    fn cells_round_trip_through_arrow() {
        let array: ArrayRef = Arc::new(Int64Array::from(vec![Some(1), None, Some(-7)]));
        let cells = array_to_cells(&array, ColumnType::BigInt, "n").unwrap();
        assert_eq!(cells, vec![json!(1), json!(null), json!(-7)]);
        let back = cells_to_array(ColumnType::BigInt, cells.iter());
        assert_eq!(back.as_ref(), array.as_ref());
        // Casting on the way in: INT64 literal into an INT column.
        let cells = array_to_cells(&array, ColumnType::Int, "n").unwrap();
        assert_eq!(cells[2], json!(-7));
        // A value that does not convert is an error, never a silent NULL.
        let text: ArrayRef = Arc::new(StringArray::from(vec!["12", "twelve"]));
        let err = array_to_cells(&text, ColumnType::Int, "n").unwrap_err();
        assert!(err.to_string().contains("column n"), "{err}");
    }

    #[test]
    fn widened_cells_read_as_arrow_casts_them() {
        use ColumnType::*;
        assert_eq!(convert_cell(json!(7), Int, BigInt), json!(7));
        assert_eq!(convert_cell(json!(7), BigInt, Double), json!(7.0));
        assert_eq!(convert_cell(json!(7), Int, Text), json!("7"));
        assert_eq!(convert_cell(json!(true), Boolean, Text), json!("true"));
        assert_eq!(convert_cell(json!(1.5), Double, Text), json!("1.5"));
        assert_eq!(convert_cell(json!("{}"), Json, Text), json!("{}"));
        assert_eq!(convert_cell(json!(null), Int, Text), json!(null));
        // The same as a Parquet column of the old type cast on read.
        let array: ArrayRef = Arc::new(datafusion::arrow::array::Date32Array::from(vec![20_000]));
        let cast = cast_with_options(&array, &DataType::Utf8, &CastOptions::default()).unwrap();
        assert_eq!(
            convert_cell(json!(20_000), Date, Text),
            json!(cast.as_string::<i32>().value(0))
        );
    }

    #[test]
    fn json_columns_must_hold_json() {
        let array: ArrayRef = Arc::new(StringArray::from(vec!["{\"a\":1}", "{oops"]));
        let err = array_to_cells(&array, ColumnType::Json, "meta").unwrap_err();
        assert!(err.to_string().contains("column meta must hold valid JSON"));
    }

    #[test]
    fn compact_encoding() {
        let mut row = StoredRow {
            seq: 5,
            updated: 6,
            deleted: false,
            version: 1,
            values: vec![json!(1), json!("x")],
        };
        let bytes = row.encode().unwrap();
        // Version 1 is left out: rows written before schema versions
        // existed read as version 1, and new ones encode the same.
        assert_eq!(
            String::from_utf8(bytes.clone()).unwrap(),
            r#"{"s":5,"u":6,"v":[1,"x"]}"#
        );
        assert_eq!(StoredRow::decode(&bytes).unwrap(), row);
        row.version = 3;
        let bytes = row.encode().unwrap();
        assert_eq!(
            String::from_utf8(bytes.clone()).unwrap(),
            r#"{"s":5,"u":6,"w":3,"v":[1,"x"]}"#
        );
        assert_eq!(StoredRow::decode(&bytes).unwrap(), row);
    }
}
