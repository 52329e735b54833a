//! Arrow → JSON as the public contract defines it: 64-bit integers as
//! strings, other numbers and booleans as JSON numbers/booleans, timestamps
//! as RFC 3339 UTC with microseconds, NULL as null.

use datafusion::arrow::array::{Array, ArrayRef, AsArray, RecordBatch};
use datafusion::arrow::datatypes::{
    DataType, Date32Type, Date64Type, Float16Type, Float32Type, Float64Type, Int8Type, Int16Type,
    Int32Type, Int64Type, TimeUnit, TimestampMicrosecondType, TimestampMillisecondType,
    TimestampNanosecondType, TimestampSecondType, UInt8Type, UInt16Type, UInt32Type, UInt64Type,
};
use datafusion::arrow::util::display::{ArrayFormatter, FormatOptions};
use serde_json::{Map, Value};

use crate::error::{EngineError, Result};

/// A row as a JSON object keyed by column name, in column order.
pub(crate) type JsonRow = Map<String, Value>;

/// The SQL name clients see for an Arrow type.
pub(crate) fn sql_type_name(data_type: &DataType) -> String {
    match data_type {
        DataType::Null => "NULL".into(),
        DataType::Boolean => "BOOLEAN".into(),
        DataType::Int8 => "TINYINT".into(),
        DataType::Int16 => "SMALLINT".into(),
        DataType::Int32 => "INT".into(),
        DataType::Int64 => "BIGINT".into(),
        DataType::UInt8 => "TINYINT UNSIGNED".into(),
        DataType::UInt16 => "SMALLINT UNSIGNED".into(),
        DataType::UInt32 => "INT UNSIGNED".into(),
        DataType::UInt64 => "BIGINT UNSIGNED".into(),
        DataType::Float16 | DataType::Float32 => "FLOAT".into(),
        DataType::Float64 => "DOUBLE".into(),
        DataType::Utf8 | DataType::LargeUtf8 | DataType::Utf8View => "TEXT".into(),
        DataType::Timestamp(..) => "TIMESTAMP".into(),
        DataType::Date32 | DataType::Date64 => "DATE".into(),
        DataType::Binary | DataType::LargeBinary | DataType::BinaryView => "BYTES".into(),
        DataType::Decimal128(p, s) | DataType::Decimal256(p, s) => format!("DECIMAL({p},{s})"),
        other => other.to_string().to_uppercase(),
    }
}

/// All rows of `batches` as JSON objects.
pub(crate) fn batches_to_rows(batches: &[RecordBatch]) -> Result<Vec<JsonRow>> {
    let mut rows = Vec::with_capacity(batches.iter().map(|b| b.num_rows()).sum());
    for batch in batches {
        let schema = batch.schema();
        // Each cell is moved into its row, not cloned.
        let mut columns = batch
            .columns()
            .iter()
            .map(|c| column_values(c).map(Vec::into_iter))
            .collect::<Result<Vec<_>>>()?;
        for _ in 0..batch.num_rows() {
            let mut row = Map::with_capacity(columns.len());
            for (field, values) in schema.fields().iter().zip(columns.iter_mut()) {
                row.insert(field.name().clone(), values.next().unwrap_or(Value::Null));
            }
            rows.push(row);
        }
    }
    Ok(rows)
}

fn number<T: Into<serde_json::Number>>(v: T) -> Value {
    Value::Number(v.into())
}

fn float(v: f64) -> Value {
    serde_json::Number::from_f64(v)
        .map(Value::Number)
        .unwrap_or_else(|| Value::String(v.to_string()))
}

/// RFC 3339, UTC, microseconds.
pub(crate) fn format_timestamp_micros(micros: i64) -> Value {
    use chrono::{Datelike, Timelike};
    match chrono::DateTime::from_timestamp_micros(micros) {
        // Years 0–9999 by hand: strftime-style formatting re-parses its
        // pattern for every value and dominated large results.
        Some(t) if (0..=9999).contains(&t.year()) => Value::String(format!(
            "{:04}-{:02}-{:02}T{:02}:{:02}:{:02}.{:06}Z",
            t.year(),
            t.month(),
            t.day(),
            t.hour(),
            t.minute(),
            t.second(),
            micros.rem_euclid(1_000_000)
        )),
        Some(t) => Value::String(t.format("%Y-%m-%dT%H:%M:%S%.6fZ").to_string()),
        None => Value::Null,
    }
}

fn format_date_days(days: i32) -> Value {
    match chrono::DateTime::from_timestamp(days as i64 * 86_400, 0) {
        Some(t) => Value::String(t.format("%Y-%m-%d").to_string()),
        None => Value::Null,
    }
}

macro_rules! map_primitive {
    ($array:expr, $ty:ty, |$v:ident| $conv:expr) => {{
        let a = $array.as_primitive::<$ty>();
        (0..a.len())
            .map(|i| {
                if a.is_null(i) {
                    Value::Null
                } else {
                    let $v = a.value(i);
                    $conv
                }
            })
            .collect()
    }};
}

fn column_values(array: &ArrayRef) -> Result<Vec<Value>> {
    let values = match array.data_type() {
        DataType::Null => vec![Value::Null; array.len()],
        DataType::Boolean => {
            let a = array.as_boolean();
            (0..a.len())
                .map(|i| {
                    if a.is_null(i) {
                        Value::Null
                    } else {
                        Value::Bool(a.value(i))
                    }
                })
                .collect()
        }
        DataType::Int8 => map_primitive!(array, Int8Type, |v| number(v)),
        DataType::Int16 => map_primitive!(array, Int16Type, |v| number(v)),
        DataType::Int32 => map_primitive!(array, Int32Type, |v| number(v)),
        DataType::UInt8 => map_primitive!(array, UInt8Type, |v| number(v)),
        DataType::UInt16 => map_primitive!(array, UInt16Type, |v| number(v)),
        DataType::UInt32 => map_primitive!(array, UInt32Type, |v| number(v)),
        DataType::Int64 => map_primitive!(array, Int64Type, |v| Value::String(v.to_string())),
        DataType::UInt64 => map_primitive!(array, UInt64Type, |v| Value::String(v.to_string())),
        DataType::Float16 => map_primitive!(array, Float16Type, |v| float(v.to_f64())),
        DataType::Float32 => map_primitive!(array, Float32Type, |v| float(v as f64)),
        DataType::Float64 => map_primitive!(array, Float64Type, |v| float(v)),
        DataType::Utf8 => strings(array.as_string::<i32>().iter()),
        DataType::LargeUtf8 => strings(array.as_string::<i64>().iter()),
        DataType::Utf8View => strings(array.as_string_view().iter()),
        DataType::Timestamp(unit, _) => match unit {
            TimeUnit::Second => map_primitive!(array, TimestampSecondType, |v| {
                format_timestamp_micros(v.saturating_mul(1_000_000))
            }),
            TimeUnit::Millisecond => map_primitive!(array, TimestampMillisecondType, |v| {
                format_timestamp_micros(v.saturating_mul(1_000))
            }),
            TimeUnit::Microsecond => {
                map_primitive!(
                    array,
                    TimestampMicrosecondType,
                    |v| format_timestamp_micros(v)
                )
            }
            TimeUnit::Nanosecond => map_primitive!(array, TimestampNanosecondType, |v| {
                format_timestamp_micros(v.div_euclid(1_000))
            }),
        },
        DataType::Date32 => map_primitive!(array, Date32Type, |v| format_date_days(v)),
        DataType::Date64 => {
            map_primitive!(array, Date64Type, |v| format_date_days(
                (v / 86_400_000) as i32
            ))
        }
        _ => {
            let formatter = ArrayFormatter::try_new(array.as_ref(), &FormatOptions::default())
                .map_err(|e| EngineError::Internal(format!("cannot format column: {e}")))?;
            (0..array.len())
                .map(|i| {
                    if array.is_null(i) {
                        Value::Null
                    } else {
                        Value::String(formatter.value(i).to_string())
                    }
                })
                .collect()
        }
    };
    Ok(values)
}

fn strings<'a>(iter: impl Iterator<Item = Option<&'a str>>) -> Vec<Value> {
    iter.map(|v| v.map_or(Value::Null, |s| Value::String(s.to_string())))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use datafusion::arrow::array::{
        BooleanArray, Float64Array, Int32Array, Int64Array, StringArray, TimestampMicrosecondArray,
    };
    use datafusion::arrow::datatypes::{Field, Schema};
    use std::sync::Arc;

    #[test]
    fn values_follow_the_contract() {
        let schema = Arc::new(Schema::new(vec![
            Field::new("big", DataType::Int64, true),
            Field::new("small", DataType::Int32, true),
            Field::new("f", DataType::Float64, true),
            Field::new("b", DataType::Boolean, true),
            Field::new("s", DataType::Utf8, true),
            Field::new(
                "t",
                DataType::Timestamp(TimeUnit::Microsecond, Some("UTC".into())),
                true,
            ),
        ]));
        let batch = RecordBatch::try_new(
            schema,
            vec![
                Arc::new(Int64Array::from(vec![Some(9007199254740993), None])),
                Arc::new(Int32Array::from(vec![Some(7), None])),
                Arc::new(Float64Array::from(vec![Some(1.5), None])),
                Arc::new(BooleanArray::from(vec![Some(true), None])),
                Arc::new(StringArray::from(vec![Some("x"), None])),
                Arc::new(
                    TimestampMicrosecondArray::from(vec![Some(1_700_000_000_123_456), None])
                        .with_timezone("UTC"),
                ),
            ],
        )
        .unwrap();
        let rows = batches_to_rows(&[batch]).unwrap();
        assert_eq!(
            Value::Object(rows[0].clone()),
            serde_json::json!({"big": "9007199254740993", "small": 7, "f": 1.5, "b": true, "s": "x",
                "t": "2023-11-14T22:13:20.123456Z"})
        );
        assert!(rows[1].values().all(Value::is_null));
        let keys: Vec<_> = rows[0].keys().cloned().collect();
        assert_eq!(
            keys,
            ["big", "small", "f", "b", "s", "t"],
            "column order kept"
        );
    }

    #[test]
    fn timestamps_match_rfc3339_with_microseconds() {
        for micros in [
            0,
            -1,
            -1_000_001,
            1_700_000_000_123_456,
            253_402_300_799_999_999, // 9999-12-31T23:59:59.999999Z
            253_402_300_800_000_000, // year 10000: the slow path
            -62_167_219_200_000_000, // 0000-01-01T00:00:00Z
        ] {
            let expected = chrono::DateTime::from_timestamp_micros(micros)
                .unwrap()
                .format("%Y-%m-%dT%H:%M:%S%.6fZ")
                .to_string();
            assert_eq!(format_timestamp_micros(micros), Value::String(expected));
        }
    }
}
