//! Fast paths for the statements apps send most: a one-table
//! `INSERT … VALUES` of literals, and `SELECT columns FROM t WHERE pk =
//! literal`. They skip DataFusion's planning (most of the time of such a
//! statement) and go straight to what the plan would have run: the same
//! table sink for an INSERT, the same key lookup for a SELECT.
//!
//! They take a statement only when the result is sure to be the same as
//! DataFusion's: every value a literal (or `$n`) whose conversion to the
//! column's type cannot fail or differ; plain column names; a USER or
//! SHARED table. Anything else — casts that might fail, expressions,
//! functions, unknown columns, other clauses — goes the DataFusion way,
//! errors included. `tests/tests/fast_path.rs` runs every statement shape
//! both ways and compares.

use std::sync::Arc;

use datafusion::common::ScalarValue;
use datafusion::sql::sqlparser::ast::{
    BinaryOperator, Expr, GroupByExpr, Query, Select, SelectItem, SetExpr, Statement, TableFactor,
    TableObject, UnaryOperator, Value as SqlValue,
};
use serde_json::Value;

use super::dml::{insert_columns, inserted, plain_insert};
use super::execute::Batch;
use super::parser::{KalamStatement, table_ref};
use super::result::StatementResult;
use crate::engine::Engine;
use crate::error::Result;
use crate::provider::{insert_cells, scope_for};
use crate::session::Caller;
use crate::table::TableKind;
use crate::table::def::{ColumnType, TableDef};
use crate::table::keys::encode_pk;
use crate::table::row::{StoredRow, float_cell, rows_to_batch};

/// What DataFusion makes of a literal (or a `$n` parameter), for the
/// literals whose type is certain: integers (Int64), decimals (Float64),
/// strings, booleans, NULL.
fn literal(expr: &Expr, params: &[ScalarValue]) -> Option<ScalarValue> {
    let number = |text: &str| -> Option<ScalarValue> {
        if text.bytes().all(|b| b.is_ascii_digit() || b == b'-') {
            text.parse::<i64>()
                .ok()
                .map(|i| ScalarValue::Int64(Some(i)))
        } else if text
            .bytes()
            .all(|b| b.is_ascii_digit() || b == b'-' || b == b'.')
        {
            text.parse::<f64>()
                .ok()
                .map(|f| ScalarValue::Float64(Some(f)))
        } else {
            None
        }
    };
    match expr {
        Expr::Value(v) => match &v.value {
            SqlValue::Number(n, false) => number(n),
            SqlValue::SingleQuotedString(s) => Some(ScalarValue::Utf8(Some(s.clone()))),
            SqlValue::Boolean(b) => Some(ScalarValue::Boolean(Some(*b))),
            SqlValue::Null => Some(ScalarValue::Null),
            SqlValue::Placeholder(p) => {
                let n: usize = p.strip_prefix('$')?.parse().ok()?;
                params.get(n.checked_sub(1)?).cloned()
            }
            _ => None,
        },
        Expr::UnaryOp {
            op: UnaryOperator::Minus,
            expr,
        } => match expr.as_ref() {
            Expr::Value(v) => match &v.value {
                SqlValue::Number(n, false) if !n.starts_with('-') => number(&format!("-{n}")),
                _ => None,
            },
            _ => None,
        },
        _ => None,
    }
}

/// The cell a literal becomes in a column of type `ty`, when the
/// conversion is exact and cannot fail; `None` leaves the statement to
/// DataFusion (which reports a failing conversion its own way).
fn exact_cell(value: &ScalarValue, ty: ColumnType) -> Option<Value> {
    match (value, ty) {
        (ScalarValue::Null, _) => Some(Value::Null),
        (ScalarValue::Int64(Some(i)), ColumnType::Int) => i32::try_from(*i).ok().map(Value::from),
        (ScalarValue::Int64(Some(i)), ColumnType::BigInt) => Some(Value::from(*i)),
        (ScalarValue::Float64(Some(f)), ColumnType::Double) if f.is_finite() => {
            Some(float_cell(*f))
        }
        (ScalarValue::Utf8(Some(s)), ColumnType::Text) => Some(Value::String(s.clone())),
        (ScalarValue::Utf8(Some(s)), ColumnType::Json)
            if serde_json::from_str::<Value>(s).is_ok() =>
        {
            Some(Value::String(s.clone()))
        }
        (ScalarValue::Boolean(Some(b)), ColumnType::Boolean) => Some(Value::Bool(*b)),
        _ => None,
    }
}

/// A plain column name as the planner resolves it (unquoted names
/// lower-cased).
fn column_name(expr: &Expr) -> Option<String> {
    match expr {
        Expr::Identifier(ident) => Some(match ident.quote_style {
            Some(_) => ident.value.clone(),
            None => ident.value.to_ascii_lowercase(),
        }),
        _ => None,
    }
}

/// A SELECT with nothing but a column list, one table and a WHERE.
fn plain_select(query: &Query) -> Option<&Select> {
    let plain_query = query.with.is_none()
        && query.order_by.is_none()
        && query.limit_clause.is_none()
        && query.fetch.is_none()
        && query.locks.is_empty()
        && query.for_clause.is_none()
        && query.settings.is_none()
        && query.format_clause.is_none()
        && query.pipe_operators.is_empty();
    let SetExpr::Select(select) = query.body.as_ref() else {
        return None;
    };
    let plain_select = select.distinct.is_none()
        && select.top.is_none()
        && select.exclude.is_none()
        && select.into.is_none()
        && select.lateral_views.is_empty()
        && select.prewhere.is_none()
        && select.cluster_by.is_empty()
        && select.distribute_by.is_empty()
        && select.sort_by.is_empty()
        && select.having.is_none()
        && select.named_window.is_empty()
        && select.qualify.is_none()
        && select.connect_by.is_empty()
        && select.from.len() == 1
        && select.from[0].joins.is_empty()
        && matches!(&select.group_by, GroupByExpr::Expressions(e, m) if e.is_empty() && m.is_empty());
    (plain_query && plain_select).then_some(select.as_ref())
}

impl Engine {
    /// Runs `statement` on a fast path if it has one of their shapes;
    /// `None` leaves it to DataFusion. Needs no DataFusion session.
    pub(crate) async fn try_fast(
        &self,
        batch: &Batch<'_>,
        statement: &KalamStatement,
        params: &[ScalarValue],
    ) -> Result<Option<StatementResult>> {
        if !self.config.fast_path {
            return Ok(None);
        }
        let KalamStatement::Sql(statement) = statement else {
            return Ok(None);
        };
        match statement.as_ref() {
            Statement::Query(query) => self.fast_point_select(batch, query, params).await,
            Statement::Insert(insert) if plain_insert(insert) => {
                let TableObject::TableName(name) = &insert.table else {
                    return Ok(None);
                };
                let Some(def) = self.user_or_shared_table(name, batch.namespace)? else {
                    return Ok(None);
                };
                let provided = insert_columns(&def, insert)?;
                let count = self
                    .fast_insert(
                        batch.caller,
                        &def,
                        &provided,
                        insert.source.as_deref(),
                        params,
                    )
                    .await?;
                Ok(count.map(inserted))
            }
            _ => Ok(None),
        }
    }

    /// A USER or SHARED table named as a plain `ns.t` or `t`.
    fn fast_table(
        &self,
        name: &datafusion::sql::sqlparser::ast::ObjectName,
        namespace: Option<&str>,
    ) -> Option<Arc<TableDef>> {
        let reference = table_ref(name).ok()?;
        let ns = reference.namespace.as_deref().or(namespace)?;
        let def = self.tables.get(ns, &reference.name)?;
        matches!(def.kind, TableKind::User | TableKind::Shared).then_some(def)
    }

    /// `SELECT * | c1, c2 FROM t WHERE pk = literal` on a USER or SHARED
    /// table, read by key; `None` for any other statement.
    async fn fast_point_select(
        &self,
        batch: &Batch<'_>,
        query: &Query,
        params: &[ScalarValue],
    ) -> Result<Option<StatementResult>> {
        let Some(select) = plain_select(query) else {
            return Ok(None);
        };
        let TableFactor::Table {
            name,
            alias: None,
            args: None,
            with_hints,
            version: None,
            partitions,
            ..
        } = &select.from[0].relation
        else {
            return Ok(None);
        };
        if !with_hints.is_empty() || !partitions.is_empty() {
            return Ok(None);
        }
        let Some(def) = self.fast_table(name, batch.namespace) else {
            return Ok(None);
        };
        let schema = def.arrow_schema();
        let mut projection = Vec::new();
        let wildcard_alone = select.projection.len() == 1;
        for item in &select.projection {
            match item {
                SelectItem::Wildcard(options)
                    if wildcard_alone
                        && options.opt_ilike.is_none()
                        && options.opt_exclude.is_none()
                        && options.opt_except.is_none()
                        && options.opt_replace.is_none()
                        && options.opt_rename.is_none() =>
                {
                    projection.extend(0..schema.fields().len());
                }
                SelectItem::UnnamedExpr(expr) => {
                    // A column twice is DataFusion's to refuse.
                    let Some(index) = column_name(expr)
                        .and_then(|n| schema.index_of(&n).ok())
                        .filter(|i| !projection.contains(i))
                    else {
                        return Ok(None);
                    };
                    projection.push(index);
                }
                _ => return Ok(None),
            }
        }
        let key = def.key_column();
        let Some(Expr::BinaryOp {
            left,
            op: BinaryOperator::Eq,
            right,
        }) = &select.selection
        else {
            return Ok(None);
        };
        let value = match (column_name(left), column_name(right)) {
            (Some(c), None) if c == key.name => literal(right, params),
            (None, Some(c)) if c == key.name => literal(left, params),
            _ => None,
        };
        let Some(cell) = value
            .and_then(|v| exact_cell(&v, key.ty))
            .filter(|c| !c.is_null())
        else {
            return Ok(None);
        };
        let pk = encode_pk(key.ty, &cell)?;
        let _lease = self.tables.cold().readers.enter();
        let scope = scope_for(&def, batch.caller);
        let rows: Vec<StoredRow> = self
            .tables
            .tiers
            .current_rows(&def, &scope, &[pk])
            .await?
            .into_iter()
            .flatten()
            .filter(|row| !row.deleted)
            .collect();
        let projected = Arc::new(
            schema
                .project(&projection)
                .map_err(datafusion::error::DataFusionError::from)?,
        );
        let batches = match rows.is_empty() {
            true => Vec::new(),
            false => vec![rows_to_batch(&def, &rows, projected.clone(), &projection)?],
        };
        Ok(Some(StatementResult::arrow(projected, batches)))
    }

    /// An INSERT of literal rows into a USER, SHARED or STREAM table, with
    /// `provided` the columns it names (as `run_insert` resolved them);
    /// `None` when a value is not a literal that converts exactly.
    async fn fast_insert(
        &self,
        caller: &Caller,
        def: &Arc<TableDef>,
        provided: &[String],
        source: Option<&Query>,
        params: &[ScalarValue],
    ) -> Result<Option<u64>> {
        let Some(query) = source else {
            return Ok(None);
        };
        let plain = query.with.is_none()
            && query.order_by.is_none()
            && query.limit_clause.is_none()
            && query.fetch.is_none();
        let SetExpr::Values(values) = query.body.as_ref() else {
            return Ok(None);
        };
        if !plain || values.explicit_row {
            return Ok(None);
        }
        // Where each named column sits in the table; a name twice or one
        // the table lacks is DataFusion's to report.
        let mut positions = Vec::with_capacity(provided.len());
        for name in provided {
            match def.column_index(name) {
                Some(i) if !positions.contains(&i) => positions.push(i),
                _ => return Ok(None),
            }
        }
        let mut rows = Vec::with_capacity(values.rows.len());
        for row in &values.rows {
            if row.content.len() != positions.len() {
                return Ok(None);
            }
            let mut cells: Vec<Option<Value>> = vec![None; def.columns.len()];
            for (expr, &i) in row.content.iter().zip(&positions) {
                let Some(cell) =
                    literal(expr, params).and_then(|v| exact_cell(&v, def.columns[i].ty))
                else {
                    return Ok(None);
                };
                cells[i] = Some(cell);
            }
            rows.push(cells);
        }
        let count = insert_cells(
            def.clone(),
            self.tables.clone(),
            caller,
            provided.to_vec(),
            rows,
            &self.config.limits,
        )
        .await?;
        Ok(Some(count))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::EngineConfig;
    use crate::sql::parser::split_batch;
    use crate::testing::run;

    /// Which SELECTs the fast path takes (the black-box test compares its
    /// answers with the planned path's; this one checks it is taken).
    #[tokio::test]
    async fn point_selects_take_the_fast_path() {
        let dir = tempfile::tempdir().unwrap();
        let (engine, _) = Engine::open(EngineConfig::new(dir.path())).unwrap();
        run(&engine, "CREATE NAMESPACE app").await;
        run(
            &engine,
            "CREATE SHARED TABLE app.t (id BIGINT PRIMARY KEY, body TEXT)",
        )
        .await;
        run(&engine, "INSERT INTO app.t VALUES (1, 'one')").await;
        let caller = Caller::internal();
        let batch = Batch {
            caller: &caller,
            namespace: None,
        };
        let fast = async |sql: &str| {
            let statement = split_batch(sql).unwrap().remove(0).parse().unwrap();
            engine
                .try_fast(&batch, &statement, &[])
                .await
                .unwrap()
                .map(|r| r.row_count)
        };
        assert_eq!(fast("SELECT * FROM app.t WHERE id = 1").await, Some(1));
        assert_eq!(fast("SELECT body FROM app.t WHERE 1 = id").await, Some(1));
        assert_eq!(fast("SELECT body FROM app.t WHERE id = 2").await, Some(0));
        assert_eq!(
            fast("INSERT INTO app.t VALUES (2, 'two'), (3, NULL)").await,
            Some(2)
        );
        assert_eq!(fast("SELECT body FROM app.t WHERE id = 2").await, Some(1));
        for slow in [
            "SELECT * FROM app.t WHERE id = '1'",
            "SELECT * FROM app.t WHERE id = 1 LIMIT 1",
            "SELECT * FROM app.t WHERE id > 1",
            "SELECT upper(body) FROM app.t WHERE id = 1",
            "SELECT * FROM app.t x WHERE id = 1",
            "SELECT * FROM system.users WHERE user_id = 'root'",
            "INSERT INTO app.t VALUES (2, upper('x'))",
            "INSERT INTO app.t VALUES ('2', 'x')",
            "UPDATE app.t SET body = 'y' WHERE id = 1",
        ] {
            assert_eq!(fast(slow).await, None, "{slow}");
        }
    }

    #[test]
    fn only_exact_conversions_take_the_fast_path() {
        let int = ScalarValue::Int64(Some(5_000_000_000));
        assert_eq!(
            exact_cell(&int, ColumnType::BigInt),
            Some(Value::from(5_000_000_000i64))
        );
        assert_eq!(
            exact_cell(&int, ColumnType::Int),
            None,
            "overflow: DataFusion's error"
        );
        assert_eq!(
            exact_cell(&int, ColumnType::Text),
            None,
            "a cast: DataFusion's"
        );
        let text = ScalarValue::Utf8(Some("{oops".into()));
        assert_eq!(exact_cell(&text, ColumnType::Json), None);
        assert_eq!(
            exact_cell(&ScalarValue::Null, ColumnType::Date),
            Some(Value::Null)
        );
        let nan = ScalarValue::Float64(Some(f64::NAN));
        assert_eq!(exact_cell(&nan, ColumnType::Double), None);
    }

    #[test]
    fn literals_are_typed_as_datafusion_types_them() {
        let parse = |sql: &str| {
            let dialect = datafusion::sql::sqlparser::dialect::GenericDialect {};
            let expr = datafusion::sql::sqlparser::parser::Parser::new(&dialect)
                .try_with_sql(sql)
                .unwrap()
                .parse_expr()
                .unwrap();
            literal(&expr, &[ScalarValue::Utf8(Some("p".into()))])
        };
        assert_eq!(parse("42"), Some(ScalarValue::Int64(Some(42))));
        assert_eq!(parse("-42"), Some(ScalarValue::Int64(Some(-42))));
        assert_eq!(parse("1.5"), Some(ScalarValue::Float64(Some(1.5))));
        assert_eq!(parse("'x'"), Some(ScalarValue::Utf8(Some("x".into()))));
        assert_eq!(parse("$1"), Some(ScalarValue::Utf8(Some("p".into()))));
        assert_eq!(parse("$2"), None);
        assert_eq!(parse("1e3"), None);
        assert_eq!(parse("99999999999999999999"), None);
        assert_eq!(parse("1 + 1"), None);
        assert_eq!(parse("now()"), None);
    }
}
