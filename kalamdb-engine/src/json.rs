//! Arrow → JSON as the public contract defines it: 64-bit integers as
//! strings, other numbers and booleans as JSON numbers/booleans, timestamps
//! as RFC 3339 UTC with microseconds, NULL as null.

use std::cell::Cell;

use datafusion::arrow::array::{Array, AsArray, RecordBatch};
use datafusion::arrow::datatypes::{
    ArrowPrimitiveType, DataType, Date32Type, Date64Type, Float16Type, Float32Type, Float64Type,
    Int8Type, Int16Type, Int32Type, Int64Type, TimeUnit, TimestampMicrosecondType,
    TimestampMillisecondType, TimestampNanosecondType, TimestampSecondType, UInt8Type, UInt16Type,
    UInt32Type, UInt64Type,
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

/// All rows of `batches` as JSON objects (parsed from [`write_rows`], so
/// both forms carry the same values).
pub(crate) fn batches_to_rows(batches: &[RecordBatch]) -> Result<Vec<JsonRow>> {
    let mut text = Vec::new();
    write_rows(batches, &mut text)?;
    serde_json::from_slice(&text)
        .map_err(|e| EngineError::Internal(format!("cannot read encoded rows: {e}")))
}

/// Writes the rows of `batches` to `out` as a JSON array of objects keyed
/// by column name, in column order, straight from the Arrow arrays: the
/// text serde_json would write for [`batches_to_rows`], without building a
/// map per row.
pub(crate) fn write_rows(batches: &[RecordBatch], out: &mut Vec<u8>) -> Result<()> {
    out.push(b'[');
    let total: usize = batches.iter().map(|b| b.num_rows()).sum();
    let (start, mut written) = (out.len(), 0);
    let mut first = true;
    for batch in batches.iter().filter(|b| b.num_rows() > 0) {
        let schema = batch.schema();
        // `{"a":` for the first column, `,"b":` for the others.
        let keys: Vec<Vec<u8>> = schema
            .fields()
            .iter()
            .enumerate()
            .map(|(i, field)| {
                let mut key = vec![if i == 0 { b'{' } else { b',' }];
                write_str(field.name(), &mut key);
                key.push(b':');
                key
            })
            .collect();
        let columns = batch
            .columns()
            .iter()
            .map(|c| writer_for(c.as_ref()))
            .collect::<Result<Vec<_>>>()?;
        for row in 0..batch.num_rows() {
            if !first {
                out.push(b',');
            }
            first = false;
            if columns.is_empty() {
                out.push(b'{');
            }
            for (key, (array, write)) in keys.iter().zip(&columns) {
                out.extend_from_slice(key);
                if array.is_null(row) {
                    out.extend_from_slice(b"null");
                } else {
                    write(row, out);
                }
            }
            out.push(b'}');
        }
        // Room for the rest at the size per row so far: a large result is
        // not copied again and again as the buffer doubles.
        written += batch.num_rows();
        if written < total {
            out.reserve((out.len() - start) / written * (total - written) * 9 / 8);
        }
    }
    out.push(b']');
    Ok(())
}

/// Writes a column's non-null value at a row index.
type CellWriter<'a> = Box<dyn Fn(usize, &mut Vec<u8>) + 'a>;

fn primitive<'a, T: ArrowPrimitiveType>(
    array: &'a dyn Array,
    write: impl Fn(T::Native, &mut Vec<u8>) + 'a,
) -> CellWriter<'a> {
    let a = array.as_primitive::<T>();
    Box::new(move |i, out| write(a.value(i), out))
}

fn strings<'a, F>(get: F) -> CellWriter<'a>
where
    F: Fn(usize) -> &'a str + 'a,
{
    Box::new(move |i, out| write_str(get(i), out))
}

fn integer<T: itoa::Integer>(v: T, out: &mut Vec<u8>) {
    out.extend_from_slice(itoa::Buffer::new().format(v).as_bytes());
}

/// 64-bit integers are strings (JavaScript numbers lose precision above 2^53).
fn quoted_integer<T: itoa::Integer>(v: T, out: &mut Vec<u8>) {
    out.push(b'"');
    integer(v, out);
    out.push(b'"');
}

/// As serde_json writes an `f64`; NaN and infinities (not JSON numbers) as
/// strings.
fn float(v: f64, out: &mut Vec<u8>) {
    if v.is_finite() {
        out.extend_from_slice(zmij::Buffer::new().format_finite(v).as_bytes());
    } else {
        write_str(&v.to_string(), out);
    }
}

fn writer_for(array: &dyn Array) -> Result<(&dyn Array, CellWriter<'_>)> {
    let write: CellWriter<'_> = match array.data_type() {
        DataType::Null => Box::new(|_, out| out.extend_from_slice(b"null")),
        DataType::Boolean => {
            let a = array.as_boolean();
            Box::new(move |i, out| {
                out.extend_from_slice(if a.value(i) { b"true" } else { b"false" })
            })
        }
        DataType::Int8 => primitive::<Int8Type>(array, integer),
        DataType::Int16 => primitive::<Int16Type>(array, integer),
        DataType::Int32 => primitive::<Int32Type>(array, integer),
        DataType::UInt8 => primitive::<UInt8Type>(array, integer),
        DataType::UInt16 => primitive::<UInt16Type>(array, integer),
        DataType::UInt32 => primitive::<UInt32Type>(array, integer),
        DataType::Int64 => primitive::<Int64Type>(array, quoted_integer),
        DataType::UInt64 => primitive::<UInt64Type>(array, quoted_integer),
        DataType::Float16 => primitive::<Float16Type>(array, |v, out| float(v.to_f64(), out)),
        DataType::Float32 => primitive::<Float32Type>(array, |v, out| float(v as f64, out)),
        DataType::Float64 => primitive::<Float64Type>(array, float),
        DataType::Utf8 => {
            let a = array.as_string::<i32>();
            strings(move |i| a.value(i))
        }
        DataType::LargeUtf8 => {
            let a = array.as_string::<i64>();
            strings(move |i| a.value(i))
        }
        DataType::Utf8View => {
            let a = array.as_string_view();
            strings(move |i| a.value(i))
        }
        DataType::Timestamp(unit, _) => {
            // Rows of one result are mostly from a few days: the date part
            // of the last one is reused.
            let day = Cell::new((i64::MIN, [0u8; 11]));
            let write =
                move |micros: i64, out: &mut Vec<u8>| write_timestamp_cached(micros, &day, out);
            match unit {
                TimeUnit::Second => primitive::<TimestampSecondType>(array, move |v, out| {
                    write(v.saturating_mul(1_000_000), out)
                }),
                TimeUnit::Millisecond => {
                    primitive::<TimestampMillisecondType>(array, move |v, out| {
                        write(v.saturating_mul(1_000), out)
                    })
                }
                TimeUnit::Microsecond => primitive::<TimestampMicrosecondType>(array, write),
                TimeUnit::Nanosecond => {
                    primitive::<TimestampNanosecondType>(array, move |v, out| {
                        write(v.div_euclid(1_000), out)
                    })
                }
            }
        }
        DataType::Date32 => primitive::<Date32Type>(array, write_date_days),
        DataType::Date64 => primitive::<Date64Type>(array, |v, out| {
            write_date_days((v / 86_400_000) as i32, out)
        }),
        _ => {
            let formatter = ArrayFormatter::try_new(array, &FormatOptions::default())
                .map_err(|e| EngineError::Internal(format!("cannot format column: {e}")))?;
            Box::new(move |i, out| write_str(&formatter.value(i).to_string(), out))
        }
    };
    Ok((array, write))
}

/// `s` as a JSON string, escaped as serde_json escapes it: `"`, `\` and
/// control characters only.
pub(crate) fn write_str(s: &str, out: &mut Vec<u8>) {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    let bytes = s.as_bytes();
    out.reserve(bytes.len() + 2);
    out.push(b'"');
    let mut start = 0;
    for (i, &b) in bytes.iter().enumerate() {
        let escape: &[u8] = match b {
            b'"' => b"\\\"",
            b'\\' => b"\\\\",
            b'\n' => b"\\n",
            b'\r' => b"\\r",
            b'\t' => b"\\t",
            0x08 => b"\\b",
            0x0c => b"\\f",
            0x00..=0x1f => &[
                b'\\',
                b'u',
                b'0',
                b'0',
                HEX[(b >> 4) as usize],
                HEX[(b & 0xf) as usize],
            ],
            _ => continue,
        };
        out.extend_from_slice(&bytes[start..i]);
        out.extend_from_slice(escape);
        start = i + 1;
    }
    out.extend_from_slice(&bytes[start..]);
    out.push(b'"');
}

fn two_digits(v: u32, out: &mut Vec<u8>) {
    out.push(b'0' + (v / 10 % 10) as u8);
    out.push(b'0' + (v % 10) as u8);
}

/// The proleptic Gregorian `(year, month, day)` of a day counted from
/// 1970-01-01 (Howard Hinnant's `civil_from_days`): a few integer
/// operations, where going through chrono's types cost more than the rest
/// of a large result's encoding.
fn civil_from_days(days: i64) -> (i64, u32, u32) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097); // day of the 400-year era
    let yoe = (doe - doe / 1_460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153; // March = 0
    let day = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let month = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let year = yoe + era * 400 + i64::from(month <= 2);
    (year, month, day)
}

/// `"YYYY-MM-DD` (no closing quote), or `None` outside years 0–9999.
fn write_ymd(days: i64, out: &mut Vec<u8>) -> Option<()> {
    let (year, month, day) = civil_from_days(days);
    if !(0..=9999).contains(&year) {
        return None;
    }
    let year = year as u32;
    out.push(b'"');
    two_digits(year / 100, out);
    two_digits(year % 100, out);
    out.push(b'-');
    two_digits(month, out);
    out.push(b'-');
    two_digits(day, out);
    Some(())
}

const DAY_MICROS: i64 = 86_400_000_000;

/// [`write_timestamp_micros`], reusing the text of the date when it is the
/// same day as the last value (`last`: a day number and its `"YYYY-MM-DD`).
fn write_timestamp_cached(micros: i64, last: &Cell<(i64, [u8; 11])>, out: &mut Vec<u8>) {
    let day = micros.div_euclid(DAY_MICROS);
    if last.get().0 != day {
        let start = out.len();
        if write_ymd(day, out).is_none() {
            return write_timestamp_micros(micros, out);
        }
        let mut text = [0u8; 11];
        text.copy_from_slice(&out[start..]);
        last.set((day, text));
        out.truncate(start);
    }
    out.extend_from_slice(&last.get().1);
    write_time_of_day(micros.rem_euclid(DAY_MICROS), out);
}

/// `THH:MM:SS.ffffffZ"`: the rest of a timestamp after its date.
fn write_time_of_day(of_day: i64, out: &mut Vec<u8>) {
    let secs = (of_day / 1_000_000) as u32;
    out.push(b'T');
    two_digits(secs / 3_600, out);
    out.push(b':');
    two_digits(secs / 60 % 60, out);
    out.push(b':');
    two_digits(secs % 60, out);
    out.push(b'.');
    let fraction = (of_day % 1_000_000) as u32;
    for div in [100_000, 10_000, 1_000, 100, 10, 1] {
        out.push(b'0' + (fraction / div % 10) as u8);
    }
    out.extend_from_slice(b"Z\"");
}

/// RFC 3339, UTC, microseconds: `"2024-01-02T03:04:05.000006Z"`.
pub(crate) fn write_timestamp_micros(micros: i64, out: &mut Vec<u8>) {
    if write_ymd(micros.div_euclid(DAY_MICROS), out).is_some() {
        write_time_of_day(micros.rem_euclid(DAY_MICROS), out);
        return;
    }
    match chrono::DateTime::from_timestamp_micros(micros) {
        Some(t) => write_str(&t.format("%Y-%m-%dT%H:%M:%S%.6fZ").to_string(), out),
        None => out.extend_from_slice(b"null"),
    }
}

/// `"YYYY-MM-DD"`.
fn write_date_days(days: i32, out: &mut Vec<u8>) {
    if write_ymd(i64::from(days), out).is_some() {
        out.push(b'"');
        return;
    }
    match chrono::DateTime::from_timestamp(days as i64 * 86_400, 0) {
        Some(t) => write_str(&t.format("%Y-%m-%d").to_string(), out),
        None => out.extend_from_slice(b"null"),
    }
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

    /// The written timestamp is chrono's RFC 3339 text, quoted.
    fn same_as_chrono(micros: i64) {
        let expected = chrono::DateTime::from_timestamp_micros(micros)
            .unwrap()
            .format("%Y-%m-%dT%H:%M:%S%.6fZ")
            .to_string();
        let mut out = Vec::new();
        write_timestamp_micros(micros, &mut out);
        assert_eq!(out, serde_json::to_vec(&expected).unwrap(), "{micros}");
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
            same_as_chrono(micros);
        }
        // A sweep across four centuries in steps that hit every month,
        // leap days and both sides of the epoch.
        let mut micros = -12_219_292_800_000_000i64; // 1582-10-15
        let last = Cell::new((i64::MIN, [0u8; 11]));
        while micros < 32_503_680_000_000_000 {
            same_as_chrono(micros);
            // The same text through the cache, for this value and one an
            // hour later (usually the same day).
            for value in [micros, micros + 3_600_000_000] {
                let (mut cached, mut plain) = (Vec::new(), Vec::new());
                write_timestamp_cached(value, &last, &mut cached);
                write_timestamp_micros(value, &mut plain);
                assert_eq!(cached, plain, "{value}");
            }
            micros += 7_777_777_777_777;
        }
        for days in (-800_000..3_000_000)
            .step_by(997)
            .chain([0, -1, 19_000, 2_932_896, 2_932_897, -719_528])
        {
            let expected = chrono::DateTime::from_timestamp(days as i64 * 86_400, 0)
                .unwrap()
                .format("%Y-%m-%d")
                .to_string();
            let mut out = Vec::new();
            write_date_days(days, &mut out);
            assert_eq!(out, serde_json::to_vec(&expected).unwrap(), "{days}");
        }
    }

    /// Strings and floats are written exactly as serde_json writes them.
    #[test]
    fn text_matches_serde_json() {
        let mut every_ascii: String = (0u8..128).map(char::from).collect();
        every_ascii.push_str("é 漢 😀 \u{2028}");
        for s in [every_ascii.as_str(), "", "plain", "\"\\", "end\n"] {
            let mut out = Vec::new();
            write_str(s, &mut out);
            assert_eq!(
                String::from_utf8(out).unwrap(),
                serde_json::to_string(s).unwrap()
            );
        }
        for v in [
            0.0,
            -0.0,
            1.0,
            1.5,
            0.1,
            1e21,
            1e-7,
            f64::MAX,
            f64::MIN_POSITIVE,
            123456.789,
        ] {
            let mut out = Vec::new();
            float(v, &mut out);
            assert_eq!(
                String::from_utf8(out).unwrap(),
                serde_json::to_string(&v).unwrap()
            );
        }
        for (v, text) in [
            (f64::NAN, "\"NaN\""),
            (f64::INFINITY, "\"inf\""),
            (f64::NEG_INFINITY, "\"-inf\""),
        ] {
            let mut out = Vec::new();
            float(v, &mut out);
            assert_eq!(String::from_utf8(out).unwrap(), text);
        }
    }

    #[test]
    fn empty_results_and_batches() {
        let schema = Arc::new(Schema::new(vec![Field::new("a", DataType::Int32, true)]));
        let empty = RecordBatch::new_empty(schema.clone());
        let one =
            RecordBatch::try_new(schema, vec![Arc::new(Int32Array::from(vec![1, 2]))]).unwrap();
        let mut out = Vec::new();
        write_rows(&[empty.clone(), one, empty], &mut out).unwrap();
        assert_eq!(String::from_utf8(out).unwrap(), r#"[{"a":1},{"a":2}]"#);
        let mut out = Vec::new();
        write_rows(&[], &mut out).unwrap();
        assert_eq!(out, b"[]");
        let no_columns = RecordBatch::try_new_with_options(
            Arc::new(Schema::empty()),
            vec![],
            &datafusion::arrow::array::RecordBatchOptions::new().with_row_count(Some(2)),
        )
        .unwrap();
        let mut out = Vec::new();
        write_rows(&[no_columns], &mut out).unwrap();
        assert_eq!(out, b"[{},{}]");
    }
}
