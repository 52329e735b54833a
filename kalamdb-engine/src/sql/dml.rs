//! INSERT, UPDATE and DELETE on USER and SHARED tables.
//!
//! INSERT runs through DataFusion into the table's sink; the executor only
//! names the columns (so the sink knows which to default) and refuses
//! writes to system columns. UPDATE and DELETE do not use DataFusion's
//! `update`/`delete_from` provider hooks (which, before apache/datafusion#24654,
//! could receive an empty filter list for a WHERE they could not push down,
//! and so change every row). Instead the WHERE clause and the new values are
//! evaluated by a plain `SELECT key, new values FROM table WHERE …` in the
//! caller's session — subqueries, `WHERE false` and all — and exactly the
//! rows it returns are written, in one batch, under the partition's lock.

use std::sync::Arc;

use datafusion::arrow::array::RecordBatch;
use datafusion::common::ScalarValue;
use datafusion::execution::SessionState;
use datafusion::sql::sqlparser::ast::{
    AssignmentTarget, Delete, FromTable, Insert, SetExpr, Statement, TableFactor, TableObject,
    TableWithJoins, Update,
};
use serde_json::Value;

use super::execute::{check_tables_exist, collect_plan};
use super::parser::{KalamStatement, split_batch, table_ref};
use super::result::StatementResult;
use crate::engine::Engine;
use crate::error::{EngineError, Result};
use crate::hot::RowWrite;
use crate::provider::{InsertColumns, check_not_null, check_write, scope_for};
use crate::session::Caller;
use crate::table::TableDef;
use crate::table::def::DefaultValue;
use crate::table::keys::encode_pk;
use crate::table::row::array_to_cells;

fn system_column_error(column: &str) -> EngineError {
    EngineError::InvalidInput(format!(
        "column {column} is maintained by KalamDB and cannot be written"
    ))
}

/// The columns an INSERT gives values for: those it names, or every
/// column in order (without an automatic key the rows leave out).
pub(super) fn insert_columns(def: &TableDef, insert: &Insert) -> Result<Vec<String>> {
    Ok(if insert.columns.is_empty() {
        let width = match insert.source.as_deref().map(|q| q.body.as_ref()) {
            Some(SetExpr::Values(values)) => values.rows.first().map(|r| r.content.len()),
            _ => None,
        };
        // A table with an automatic key accepts positional rows without it.
        let auto_key = def.key_column().default == Some(DefaultValue::SnowflakeId);
        let skip_key = auto_key && width == Some(def.columns.len() - 1);
        def.columns
            .iter()
            .enumerate()
            .filter(|(i, _)| !(skip_key && *i == def.primary_key))
            .map(|(_, c)| c.name.clone())
            .collect()
    } else {
        let mut names = Vec::with_capacity(insert.columns.len());
        for column in &insert.columns {
            let name = column.to_string().trim_matches('"').to_ascii_lowercase();
            if name.starts_with('_') {
                return Err(system_column_error(&name));
            }
            names.push(name);
        }
        names
    })
}

/// The result of an INSERT.
pub(super) fn inserted(count: u64) -> StatementResult {
    StatementResult::message(count, format!("{count} row(s) inserted"))
}

/// `INSERT INTO t [(columns)] VALUES …` with no other clause.
pub(super) fn plain_insert(insert: &Insert) -> bool {
    insert.optimizer_hints.is_empty()
        && insert.or.is_none()
        && !insert.ignore
        && insert.into
        && insert.table_alias.is_none()
        && !insert.overwrite
        && insert.assignments.is_empty()
        && insert.partitioned.is_none()
        && insert.after_columns.is_empty()
        && !insert.has_table_keyword
        && insert.on.is_none()
        && insert.returning.is_none()
        && insert.output.is_none()
        && !insert.replace_into
        && insert.priority.is_none()
        && insert.insert_alias.is_none()
        && insert.settings.is_none()
        && insert.format_clause.is_none()
        && insert.multi_table_insert_type.is_none()
        && insert.multi_table_into_clauses.is_empty()
        && insert.multi_table_when_clauses.is_empty()
}

impl Engine {
    /// The KalamDB table an object name refers to, if it is one.
    pub(super) fn user_or_shared_table(
        &self,
        name: &datafusion::sql::sqlparser::ast::ObjectName,
        namespace: Option<&str>,
    ) -> Result<Option<Arc<TableDef>>> {
        let reference = table_ref(name).map_err(EngineError::InvalidInput)?;
        let Some(ns) = reference.namespace.as_deref().or(namespace) else {
            return Ok(None);
        };
        Ok(self.tables.get(ns, &reference.name))
    }

    pub(crate) async fn run_insert(
        &self,
        state: &SessionState,
        mut insert: Insert,
        params: &[ScalarValue],
        namespace: Option<&str>,
    ) -> Result<StatementResult> {
        let def = match &insert.table {
            TableObject::TableName(name) => self.user_or_shared_table(name, namespace)?,
            _ => None,
        };
        let Some(def) = def else {
            return self
                .run_datafusion(state, Statement::Insert(insert), params)
                .await;
        };
        let provided = insert_columns(&def, &insert)?;
        insert.columns = provided
            .iter()
            .map(|c| {
                datafusion::sql::sqlparser::ast::ObjectName::from(vec![
                    datafusion::sql::sqlparser::ast::Ident::with_quote('"', c),
                ])
            })
            .collect();
        let mut state = state.clone();
        state
            .config_mut()
            .set_extension(Arc::new(InsertColumns(provided)));
        let result = self
            .run_datafusion(&state, Statement::Insert(insert), params)
            .await?;
        Ok(inserted(result.row_count))
    }

    pub(crate) async fn run_update(
        &self,
        state: &SessionState,
        update: Update,
        params: &[ScalarValue],
        namespace: Option<&str>,
    ) -> Result<StatementResult> {
        let Some(def) = self.single_table(&update.table, namespace)? else {
            return self
                .run_datafusion(state, Statement::Update(update), params)
                .await;
        };
        if update.from.is_some() || update.returning.is_some() || update.limit.is_some() {
            return Err(EngineError::InvalidSql(
                "UPDATE supports SET and WHERE only (no FROM, RETURNING or LIMIT)".into(),
            ));
        }
        let mut targets = Vec::with_capacity(update.assignments.len());
        let mut values_sql = String::new();
        for (i, assignment) in update.assignments.iter().enumerate() {
            let AssignmentTarget::ColumnName(column) = &assignment.target else {
                return Err(EngineError::InvalidSql(
                    "tuple assignments are not supported".into(),
                ));
            };
            let name = column
                .0
                .last()
                .and_then(|p| p.as_ident())
                .map(|i| {
                    if i.quote_style.is_some() {
                        i.value.clone()
                    } else {
                        i.value.to_ascii_lowercase()
                    }
                })
                .unwrap_or_default();
            if name.starts_with('_') {
                return Err(system_column_error(&name));
            }
            let index = def.column_index(&name).ok_or_else(|| {
                EngineError::InvalidInput(format!("table {} has no column {name}", def.table_id()))
            })?;
            if index == def.primary_key {
                return Err(EngineError::InvalidInput(format!(
                    "the primary key {name} cannot be updated; delete the row and insert a new one"
                )));
            }
            if targets.contains(&index) {
                return Err(EngineError::InvalidInput(format!(
                    "column {name} is assigned twice"
                )));
            }
            targets.push(index);
            values_sql.push_str(&format!(", ({}) AS \"__v{i}\"", assignment.value));
        }
        let sql = select_keys_sql(&def, &update.table, &values_sql, update.selection.as_ref());
        self.rewrite_rows(state, &def, &sql, params, |old, batch, row| {
            let mut values = old.to_vec();
            for (i, &column) in targets.iter().enumerate() {
                let spec = &def.columns[column];
                let cells =
                    array_to_cells(&batch.column(i + 1).slice(row, 1), spec.ty, &spec.name)?;
                values[column] = cells.into_iter().next().unwrap_or(Value::Null);
            }
            check_not_null(&def, &values)?;
            Ok((values, false))
        })
        .await
        .map(|n| StatementResult::message(n, format!("{n} row(s) updated")))
    }

    pub(crate) async fn run_delete(
        &self,
        state: &SessionState,
        delete: Delete,
        params: &[ScalarValue],
        namespace: Option<&str>,
    ) -> Result<StatementResult> {
        let from = match &delete.from {
            FromTable::WithFromKeyword(t) | FromTable::WithoutKeyword(t) => t,
        };
        let table = match from.as_slice() {
            [table] if delete.tables.is_empty() && delete.using.is_none() => table,
            _ => {
                return self
                    .run_datafusion(state, Statement::Delete(delete), params)
                    .await;
            }
        };
        let Some(def) = self.single_table(table, namespace)? else {
            return self
                .run_datafusion(state, Statement::Delete(delete), params)
                .await;
        };
        if delete.returning.is_some() || delete.limit.is_some() || !delete.order_by.is_empty() {
            return Err(EngineError::InvalidSql(
                "DELETE supports WHERE only (no RETURNING, ORDER BY or LIMIT)".into(),
            ));
        }
        let sql = select_keys_sql(&def, table, "", delete.selection.as_ref());
        self.rewrite_rows(state, &def, &sql, params, |old, _, _| {
            Ok((old.to_vec(), true))
        })
        .await
        .map(|n| StatementResult::message(n, format!("{n} row(s) deleted")))
    }

    /// The KalamDB table of a single-table `FROM`/`UPDATE` clause.
    fn single_table(
        &self,
        table: &TableWithJoins,
        namespace: Option<&str>,
    ) -> Result<Option<Arc<TableDef>>> {
        if !table.joins.is_empty() {
            return Ok(None);
        }
        match &table.relation {
            TableFactor::Table { name, .. } => self.user_or_shared_table(name, namespace),
            _ => Ok(None),
        }
    }

    /// Runs `select_sql` (key first, then new values), then writes one new
    /// version per returned row, built by `change` from the current values.
    async fn rewrite_rows(
        &self,
        state: &SessionState,
        def: &TableDef,
        select_sql: &str,
        params: &[ScalarValue],
        change: impl Fn(&[Value], &RecordBatch, usize) -> Result<(Vec<Value>, bool)>,
    ) -> Result<u64> {
        let caller = Caller::of_session(state);
        check_write(def, &caller)?;
        if !def.rules().mutable() {
            return Err(EngineError::InvalidInput(format!(
                "{} table {} takes only INSERT: its events cannot be updated or deleted; they expire after the table's retention",
                def.kind.as_str().to_ascii_lowercase(),
                def.table_id()
            )));
        }
        let scope = scope_for(def, &caller);
        let KalamStatement::Sql(statement) = split_batch(select_sql)?.remove(0).parse()? else {
            return Err(EngineError::Internal(
                "DML rewrite did not parse as a query".into(),
            ));
        };
        let statement = datafusion::sql::parser::Statement::Statement(statement);
        check_tables_exist(state, &statement)?;
        let plan = state.statement_to_plan(statement).await?;
        // The SELECT's scan holds the statement's read lease, which also
        // covers `current_rows` below.
        let _guard = self.tables.hot().lock_partition(def, &scope).await;
        let (_, batches) = collect_plan(state, plan, params).await?;
        let key = def.key_column();
        let mut writes = Vec::new();
        for batch in &batches {
            let keys = array_to_cells(batch.column(0), key.ty, &key.name)?;
            let pks: Vec<Vec<u8>> = keys
                .iter()
                .map(|k| encode_pk(key.ty, k))
                .collect::<Result<_>>()?;
            let current = self.tables.tiers.current_rows(def, &scope, &pks).await?;
            for (row, (pk, old)) in pks.into_iter().zip(current).enumerate() {
                let Some(old) = old.filter(|o| !o.deleted) else {
                    continue;
                };
                let (values, deleted) = change(&old.values, batch, row)?;
                writes.push(RowWrite {
                    pk,
                    values,
                    deleted,
                    old: Some(old),
                });
            }
        }
        let count = writes.len() as u64;
        self.tables.commit(def, &scope, writes)?;
        Ok(count)
    }
}

/// `SELECT "<key>" AS "__pk"<values> FROM <table> [WHERE <selection>]`,
/// printed from the parsed statement's own nodes.
fn select_keys_sql(
    def: &TableDef,
    table: &TableWithJoins,
    values_sql: &str,
    selection: Option<&datafusion::sql::sqlparser::ast::Expr>,
) -> String {
    let key = &def.key_column().name;
    let mut sql = format!("SELECT \"{key}\" AS \"__pk\"{values_sql} FROM {table}");
    if let Some(selection) = selection {
        sql.push_str(&format!(" WHERE {selection}"));
    }
    sql
}
