//! Functions whose output size is set by an argument, not by their input:
//! `repeat('x', 1e9)`, `lpad(s, 1e9)`, `range(1e10)`, `replace(s, 'a',
//! long)`. DataFusion evaluates them in one go — at planning time when the
//! arguments are constants — outside its memory pool and without a point
//! where a statement timeout could stop them, so one short query could take
//! every byte of the server's memory. Each is registered wrapped: before a
//! call runs, its output size is estimated from the actual arguments of the
//! batch, and a call over [`MAX_FUNCTION_RESULT_BYTES`] fails with
//! `LIMIT_EXCEEDED` instead.

use std::sync::Arc;

use datafusion::arrow::array::{Array, AsArray};
use datafusion::arrow::compute::cast;
use datafusion::arrow::datatypes::{
    DataType, FieldRef, Int64Type, IntervalMonthDayNanoType, IntervalUnit, TimeUnit,
};
use datafusion::error::{DataFusionError, Result};
use datafusion::logical_expr::simplify::{ExprSimplifyResult, SimplifyContext};
use datafusion::logical_expr::{
    ColumnarValue, Documentation, Expr, ReturnFieldArgs, ScalarFunctionArgs, ScalarUDF,
    ScalarUDFImpl, Signature,
};

use crate::error::EngineError;

/// Bytes one call of a size-setting function may build for one batch.
pub(super) const MAX_FUNCTION_RESULT_BYTES: u64 = 64 * 1024 * 1024;

/// How a function's output size follows from its arguments.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
enum Growth {
    /// `repeat(s, n)`: length of `s` times `n`.
    Repeat,
    /// `lpad(s, n [, fill])`, `rpad`: `n` characters.
    Pad,
    /// `replace(s, from, to)`, `regexp_replace(s, pattern, to [, flags])`:
    /// every character of `s` may become `to`.
    Replace,
    /// `range`/`generate_series(start, stop [, step])`: the number of steps.
    Series,
    /// `array_repeat(element, n)`, `array_resize(array, n [, fill])`.
    Elements,
}

const BOUNDED: [(&str, Growth); 9] = [
    ("repeat", Growth::Repeat),
    ("lpad", Growth::Pad),
    ("rpad", Growth::Pad),
    ("replace", Growth::Replace),
    ("regexp_replace", Growth::Replace),
    ("range", Growth::Series),
    ("generate_series", Growth::Series),
    ("array_repeat", Growth::Elements),
    ("array_resize", Growth::Elements),
];

/// The wrapped versions of the size-setting functions among `functions`.
pub(crate) fn bounded_functions<'a>(
    functions: impl Iterator<Item = &'a Arc<ScalarUDF>>,
) -> Vec<ScalarUDF> {
    functions
        .filter_map(|f| {
            let growth = BOUNDED.iter().find(|(n, _)| *n == f.name())?.1;
            Some(ScalarUDF::new_from_impl(Bounded {
                inner: f.as_ref().clone(),
                growth,
            }))
        })
        .collect()
}

#[derive(Debug, PartialEq, Eq, Hash)]
struct Bounded {
    inner: ScalarUDF,
    growth: Growth,
}

/// Per-row values of an argument, as i64 where it is a whole number.
fn integers(arg: &ColumnarValue, rows: usize) -> Option<Vec<u64>> {
    let array = arg.to_array(rows).ok()?;
    if !array.data_type().is_integer() {
        return None;
    }
    let array = cast(&array, &DataType::Int64).ok()?;
    Some(
        array
            .as_primitive::<Int64Type>()
            .iter()
            .map(|v| v.unwrap_or(0).max(0) as u64)
            .collect(),
    )
}

/// Per-row byte lengths of a string argument (zeros when not a string).
fn lengths(arg: &ColumnarValue, rows: usize) -> Vec<u64> {
    let strings = arg
        .to_array(rows)
        .ok()
        .and_then(|a| cast(&a, &DataType::Utf8).ok());
    match strings {
        Some(strings) => strings
            .as_string::<i32>()
            .iter()
            .map(|s| s.map_or(0, str::len) as u64)
            .collect(),
        None => vec![0; rows],
    }
}

/// Bytes one row of an argument takes.
fn row_bytes(arg: &ColumnarValue, rows: usize) -> u64 {
    match arg {
        ColumnarValue::Scalar(s) => s.size() as u64,
        ColumnarValue::Array(a) => (a.get_array_memory_size() / rows.max(1)) as u64 + 8,
    }
}

/// Bytes the arguments already hold: what a call may build without growing
/// what the query holds (a `replace` over a large text column).
fn input_bytes(args: &[ColumnarValue]) -> u64 {
    args.iter()
        .map(|a| match a {
            ColumnarValue::Scalar(s) => s.size() as u64,
            ColumnarValue::Array(a) => a.get_array_memory_size() as u64,
        })
        .sum()
}

/// A temporal or numeric argument as a count of nanoseconds (numbers as is).
fn instants(arg: &ColumnarValue, rows: usize) -> Option<Vec<i128>> {
    let array = arg.to_array(rows).ok()?;
    let scale: i128 = match array.data_type() {
        DataType::Date32 => 86_400_000_000_000,
        DataType::Date64 => 1_000_000,
        DataType::Timestamp(unit, _) => match unit {
            TimeUnit::Second => 1_000_000_000,
            TimeUnit::Millisecond => 1_000_000,
            TimeUnit::Microsecond => 1_000,
            TimeUnit::Nanosecond => 1,
        },
        t if t.is_integer() => 1,
        _ => return None,
    };
    let array = cast(&array, &DataType::Int64).ok()?;
    Some(
        array
            .as_primitive::<Int64Type>()
            .iter()
            .map(|v| v.unwrap_or(0) as i128 * scale)
            .collect(),
    )
}

/// A series step as nanoseconds (a month counted as 28 days, so the count
/// of steps is never underestimated); integers as is.
fn steps(arg: &ColumnarValue, rows: usize) -> Option<Vec<i128>> {
    let array = arg.to_array(rows).ok()?;
    if let DataType::Interval(IntervalUnit::MonthDayNano) = array.data_type() {
        let intervals = array.as_primitive::<IntervalMonthDayNanoType>();
        return Some(
            intervals
                .iter()
                .map(|v| {
                    v.map_or(1, |v| {
                        (v.months as i128 * 28 + v.days as i128) * 86_400_000_000_000
                            + v.nanoseconds as i128
                    })
                })
                .collect(),
        );
    }
    instants(arg, rows)
}

fn total(values: impl Iterator<Item = u64>) -> u64 {
    values.fold(0u64, u64::saturating_add)
}

impl Bounded {
    /// Estimated (worst-case) output bytes of one call, `None` when the
    /// arguments are of a kind the estimate does not cover (the call then
    /// runs as is).
    fn estimate(&self, args: &ScalarFunctionArgs) -> Option<u64> {
        let a = &args.args;
        // All-constant arguments make one value, whatever the batch.
        let rows = if a.iter().any(|v| matches!(v, ColumnarValue::Array(_))) {
            args.number_rows.max(1)
        } else {
            1
        };
        match self.growth {
            Growth::Repeat => {
                let counts = integers(a.get(1)?, rows)?;
                let lens = lengths(a.first()?, rows);
                Some(total(
                    lens.iter().zip(&counts).map(|(l, n)| l.saturating_mul(*n)),
                ))
            }
            Growth::Pad => Some(total(integers(a.get(1)?, rows)?.into_iter()).saturating_mul(4)),
            Growth::Replace => {
                let to = lengths(a.get(2)?, rows);
                let lens = lengths(a.first()?, rows);
                Some(total(
                    lens.iter()
                        .zip(&to)
                        .map(|(l, t)| (l + 1).saturating_mul((*t).max(1))),
                ))
            }
            Growth::Series => {
                let (start, stop, step) = match a.len() {
                    1 => (vec![0; rows], instants(&a[0], rows)?, vec![1; rows]),
                    2 => (
                        instants(&a[0], rows)?,
                        instants(&a[1], rows)?,
                        vec![1; rows],
                    ),
                    _ => (
                        instants(&a[0], rows)?,
                        instants(&a[1], rows)?,
                        steps(&a[2], rows)?,
                    ),
                };
                let counts = start.iter().zip(&stop).zip(&step).map(|((b, e), s)| {
                    u64::try_from((e - b).abs() / s.abs().max(1) + 1).unwrap_or(u64::MAX)
                });
                Some(total(counts).saturating_mul(8))
            }
            Growth::Elements => {
                let counts = integers(a.get(1)?, rows)?;
                Some(
                    row_bytes(a.first()?, rows)
                        .max(8)
                        .saturating_mul(total(counts.into_iter())),
                )
            }
        }
    }
}

impl ScalarUDFImpl for Bounded {
    fn name(&self) -> &str {
        self.inner.name()
    }

    fn aliases(&self) -> &[String] {
        self.inner.aliases()
    }

    fn schema_name(&self, args: &[Expr]) -> Result<String> {
        self.inner.schema_name(args)
    }

    fn signature(&self) -> &Signature {
        self.inner.signature()
    }

    fn return_type(&self, arg_types: &[DataType]) -> Result<DataType> {
        self.inner.return_type(arg_types)
    }

    fn return_field_from_args(&self, args: ReturnFieldArgs) -> Result<FieldRef> {
        self.inner.return_field_from_args(args)
    }

    fn invoke_with_args(&self, args: ScalarFunctionArgs) -> Result<ColumnarValue> {
        // A call may always build as much as its arguments hold (so a
        // `replace` over a large column works); past that, no more than the
        // limit — which also stops nested calls from multiplying.
        let allowed = MAX_FUNCTION_RESULT_BYTES.max(input_bytes(&args.args));
        if let Some(bytes) = self.estimate(&args)
            && bytes > allowed
        {
            return Err(DataFusionError::External(Box::new(
                EngineError::LimitExceeded(format!(
                    "{}(…) would build about {bytes} bytes for one batch of rows; the limit is {MAX_FUNCTION_RESULT_BYTES}",
                    self.inner.name()
                )),
            )));
        }
        self.inner.invoke_with_args(args)
    }

    fn simplify(&self, args: Vec<Expr>, info: &SimplifyContext) -> Result<ExprSimplifyResult> {
        self.inner.simplify(args, info)
    }

    fn short_circuits(&self) -> bool {
        self.inner.short_circuits()
    }

    fn coerce_types(&self, arg_types: &[DataType]) -> Result<Vec<DataType>> {
        self.inner.coerce_types(arg_types)
    }

    fn documentation(&self) -> Option<&Documentation> {
        self.inner.documentation()
    }
}
