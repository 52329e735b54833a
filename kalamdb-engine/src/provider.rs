//! USER and SHARED tables as DataFusion tables.
//!
//! A scan reads only the caller's partition (the caller travels in the
//! session), so no SQL can reach another user's rows. `WHERE pk = v` and
//! `WHERE pk IN (...)` read single keys instead of the partition; every
//! filter is reported `Inexact` and re-applied by DataFusion. INSERT goes to
//! [`TableSink`], which fills defaults, checks NOT NULL and duplicate keys,
//! and commits the statement's rows in one write batch.

use std::collections::HashSet;
use std::fmt;
use std::sync::Arc;

use async_trait::async_trait;
use datafusion::arrow::datatypes::SchemaRef;
use datafusion::catalog::{Session, TableProvider};
use datafusion::common::{DFSchema, ScalarValue};
use datafusion::datasource::TableType;
use datafusion::datasource::memory::MemorySourceConfig;
use datafusion::datasource::sink::{DataSink, DataSinkExec};
use datafusion::execution::{SendableRecordBatchStream, TaskContext};
use datafusion::logical_expr::dml::InsertOp;
use datafusion::logical_expr::utils::conjunction;
use datafusion::logical_expr::{BinaryExpr, Expr, Operator, TableProviderFilterPushDown};
use datafusion::physical_plan::{DisplayAs, DisplayFormatType, ExecutionPlan};
use futures::StreamExt;
use kalamdb_model::Role;
use serde_json::Value;

use crate::cold::files::key_predicate;
use crate::cold::{ColdFilter, ColdPlan};
use crate::error::{EngineError, Result};
use crate::hot::RowWrite;
use crate::registry::TableRegistry;
use crate::session::{Caller, Limits};
use crate::table::def::{ColumnType, DefaultValue, TableDef};
use crate::table::keys::{Scope, encode_pk};
use crate::table::row::{StoredRow, array_to_cells, rows_to_batch};

/// The columns an INSERT names, attached to the session by the executor so
/// the sink knows which columns to fill with their defaults.
#[derive(Debug, Clone)]
pub(crate) struct InsertColumns(pub Vec<String>);

/// A USER or SHARED table, seen by one statement.
pub(crate) struct TableProviderImpl {
    def: Arc<TableDef>,
    schema: SchemaRef,
    registry: Arc<TableRegistry>,
}

impl fmt::Debug for TableProviderImpl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} TABLE {}",
            self.def.kind.as_str(),
            self.def.table_id()
        )
    }
}

impl TableProviderImpl {
    pub(crate) fn new(def: Arc<TableDef>, registry: Arc<TableRegistry>) -> Self {
        TableProviderImpl {
            schema: def.arrow_schema(),
            def,
            registry,
        }
    }
}

/// The partition a caller reads and writes.
pub(crate) fn scope_for(def: &TableDef, caller: &Caller) -> Scope {
    def.rules().partition(caller)
}

/// Fails unless the caller may write this table.
pub(crate) fn check_write(def: &TableDef, caller: &Caller) -> Result<()> {
    let needed = def.rules().min_writer();
    if caller.role < needed {
        let roles: Vec<String> = [Role::User, Role::Service, Role::Dba, Role::System]
            .into_iter()
            .filter(|r| *r >= needed)
            .map(|r| r.to_string())
            .collect();
        let (last, first) = roles
            .split_last()
            .expect("System is at or above every role");
        return Err(EngineError::PermissionDenied(format!(
            "writing {} table {} requires role {} or {last}; user {} has role {}",
            def.kind.as_str().to_ascii_lowercase(),
            def.table_id(),
            first.join(", "),
            caller.user_id,
            caller.role
        )));
    }
    Ok(())
}

/// A cell of `ty` from a literal, cast as DataFusion would.
pub(crate) fn scalar_to_cell(value: &ScalarValue, ty: ColumnType, column: &str) -> Result<Value> {
    let array = value
        .to_array()
        .map_err(|e| EngineError::InvalidInput(format!("bad value for {column}: {e}")))?;
    Ok(array_to_cells(&array, ty, column)?.remove(0))
}

/// Primary keys named by `pk = literal` or `pk IN (literals)` filters.
fn key_lookup(def: &TableDef, filters: &[Expr]) -> Option<Vec<Vec<u8>>> {
    let key = def.key_column();
    let is_key = |e: &Expr| matches!(e, Expr::Column(c) if c.name == key.name);
    let encode = |v: &ScalarValue| -> Option<Vec<u8>> {
        let cell = scalar_to_cell(v, key.ty, &key.name).ok()?;
        encode_pk(key.ty, &cell).ok()
    };
    for filter in filters {
        match filter {
            Expr::BinaryExpr(BinaryExpr {
                left,
                op: Operator::Eq,
                right,
            }) => {
                let literal = match (left.as_ref(), right.as_ref()) {
                    (l, Expr::Literal(v, _)) if is_key(l) => v,
                    (Expr::Literal(v, _), r) if is_key(r) => v,
                    _ => continue,
                };
                return Some(encode(literal).into_iter().collect());
            }
            Expr::InList(list) if !list.negated && is_key(&list.expr) => {
                let mut keys = Vec::with_capacity(list.list.len());
                for item in &list.list {
                    match item {
                        Expr::Literal(v, _) => keys.extend(encode(v)),
                        _ => return None,
                    }
                }
                return Some(keys);
            }
            _ => {}
        }
    }
    None
}

#[async_trait]
impl TableProvider for TableProviderImpl {
    fn schema(&self) -> SchemaRef {
        self.schema.clone()
    }

    fn table_type(&self) -> TableType {
        TableType::Base
    }

    fn supports_filters_pushdown(
        &self,
        filters: &[&Expr],
    ) -> datafusion::error::Result<Vec<TableProviderFilterPushDown>> {
        Ok(vec![TableProviderFilterPushDown::Inexact; filters.len()])
    }

    async fn scan(
        &self,
        state: &dyn Session,
        projection: Option<&Vec<usize>>,
        filters: &[Expr],
        limit: Option<usize>,
    ) -> datafusion::error::Result<Arc<dyn ExecutionPlan>> {
        let caller = Caller::of_session(state);
        let scope = scope_for(&self.def, &caller);
        let def = &self.def;
        // Before the manifest is listed: its files then outlive the statement.
        crate::cold::retire::hold_lease(state.config());
        // A table keyed by `_seq` has no key to look up.
        let lookup = (!def.rules().keyed_by_sequence())
            .then(|| key_lookup(def, filters))
            .flatten()
            .map(|mut keys| {
                keys.sort();
                keys.dedup();
                keys
            });
        // Hot versions first (tombstones included: they hide older Parquet
        // versions), then the Parquet files.
        let mut hot: Vec<(Vec<u8>, StoredRow)> = match &lookup {
            Some(keys) => keys
                .iter()
                .cloned()
                .zip(self.registry.hot().get_rows(def, &scope, keys)?)
                .filter_map(|(k, r)| r.map(|r| (k, r)))
                .collect(),
            None => self.registry.hot().scan_keyed(def, &scope)?,
        };
        if let Some(stream) = def.stream {
            // Past retention is gone now, not at the next sweep.
            let cutoff = stream.cutoff(kalamdb_model::Timestamp::now().0);
            hot.retain(|(_, row)| row.updated >= cutoff);
        }
        let projection: Vec<usize> = match projection {
            Some(p) => p.clone(),
            None => (0..self.schema.fields().len()).collect(),
        };
        let schema = Arc::new(self.schema.project(&projection)?);
        let cold_filter = match &lookup {
            Some(keys) => ColdFilter::Always(key_predicate(def, keys)?, Some(keys.clone())),
            None => match conjunction(filters.iter().cloned()) {
                Some(predicate) => {
                    let df_schema = DFSchema::try_from(self.schema.as_ref().clone())?;
                    match state.create_physical_expr(predicate, &df_schema) {
                        Ok(p) => ColdFilter::IfDisjoint(p),
                        Err(_) => ColdFilter::None,
                    }
                }
                None => ColdFilter::None,
            },
        };
        // Nothing hot to merge with: stream the files (in parallel) instead
        // of materialising them.
        if hot.is_empty()
            && let ColdPlan::Plan(plan) =
                self.registry
                    .cold()
                    .cold_plan(def, &scope, &projection, &cold_filter)?
        {
            return Ok(plan);
        }
        let hot_keys: HashSet<Vec<u8>> = hot.iter().map(|(k, _)| k.clone()).collect();
        let cold = self
            .registry
            .cold()
            .cold_rows(
                def,
                &scope,
                &hot_keys,
                projection.clone(),
                cold_filter,
                false,
            )
            .await?;
        let visible_columns: Vec<usize> = (0..projection.len()).collect();
        let mut batches = Vec::with_capacity(cold.len() + 1);
        for batch in cold {
            batches.push(batch.project(&visible_columns)?);
        }
        let mut rows: Vec<StoredRow> = hot
            .into_iter()
            .map(|(_, r)| r)
            .filter(|r| !r.deleted)
            .collect();
        if let (Some(limit), true) = (limit, filters.is_empty()) {
            let cold_rows: usize = batches.iter().map(|b| b.num_rows()).sum();
            rows.truncate(limit.saturating_sub(cold_rows));
        }
        batches.push(rows_to_batch(def, &rows, schema.clone(), &projection)?);
        Ok(MemorySourceConfig::try_new_exec(&[batches], schema, None)?)
    }

    async fn insert_into(
        &self,
        state: &dyn Session,
        input: Arc<dyn ExecutionPlan>,
        insert_op: InsertOp,
    ) -> datafusion::error::Result<Arc<dyn ExecutionPlan>> {
        if insert_op != InsertOp::Append {
            return Err(EngineError::InvalidSql(format!(
                "{insert_op} is not supported; use INSERT INTO"
            ))
            .into());
        }
        let caller = Caller::of_session(state);
        check_write(&self.def, &caller)?;
        let provided = state
            .config()
            .get_extension::<InsertColumns>()
            .map(|c| c.0.clone())
            .unwrap_or_else(|| self.def.columns.iter().map(|c| c.name.clone()).collect());
        let sink = TableSink {
            def: self.def.clone(),
            schema: self.schema.clone(),
            registry: self.registry.clone(),
            scope: scope_for(&self.def, &caller),
            user_id: caller.user_id,
            provided: provided.into_iter().collect(),
        };
        Ok(Arc::new(DataSinkExec::new(input, Arc::new(sink), None)))
    }
}

/// Writes the rows of one INSERT.
struct TableSink {
    def: Arc<TableDef>,
    schema: SchemaRef,
    registry: Arc<TableRegistry>,
    scope: Scope,
    user_id: String,
    provided: HashSet<String>,
}

impl fmt::Debug for TableSink {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "TableSink({})", self.def.table_id())
    }
}

impl DisplayAs for TableSink {
    fn fmt_as(&self, _t: DisplayFormatType, f: &mut fmt::Formatter) -> fmt::Result {
        write!(f, "KalamInsert: {}", self.def.table_id())
    }
}

impl TableSink {
    /// The value an omitted column gets.
    fn default_cell(&self, column: usize, now_micros: i64) -> Value {
        let spec = &self.def.columns[column];
        match &spec.default {
            None => Value::Null,
            Some(DefaultValue::Literal(v)) => v.clone(),
            Some(DefaultValue::Now) => match spec.ty {
                ColumnType::Date => Value::from(now_micros.div_euclid(86_400_000_000)),
                _ => Value::from(now_micros),
            },
            Some(DefaultValue::CurrentUser) => Value::String(self.user_id.clone()),
            Some(DefaultValue::SnowflakeId) => Value::from(self.registry.hot().snowflake_id()),
        }
    }
}

/// Fails if a NOT NULL column holds NULL.
pub(crate) fn check_not_null(def: &TableDef, values: &[Value]) -> Result<()> {
    for (spec, value) in def.columns.iter().zip(values) {
        if value.is_null() && !spec.nullable {
            return Err(EngineError::Constraint(format!(
                "column {} of {} cannot be NULL",
                spec.name,
                def.table_id()
            )));
        }
    }
    Ok(())
}

/// Fails when one STREAM event is larger than `max_stream_event_bytes`
/// (the text and JSON cells; other cells count 8 bytes).
fn check_event_size(def: &TableDef, values: &[Value], limits: &Limits) -> Result<()> {
    let limit = limits.max_stream_event_bytes;
    let size: usize = values
        .iter()
        .map(|v| match v {
            Value::String(s) => s.len(),
            _ => 8,
        })
        .sum();
    if size > limit {
        return Err(EngineError::LimitExceeded(format!(
            "an event of {size} bytes is larger than {limit} bytes, the most one event of stream table {} may hold (KALAMDB_MAX_STREAM_EVENT_BYTES)",
            def.table_id()
        )));
    }
    Ok(())
}

/// Describes a primary-key cell for error messages.
pub(crate) fn describe_key(def: &TableDef, cell: &Value) -> String {
    format!("{} = {}", def.key_column().name, cell)
}

#[async_trait]
impl DataSink for TableSink {
    fn schema(&self) -> &SchemaRef {
        &self.schema
    }

    async fn write_all(
        &self,
        mut data: SendableRecordBatchStream,
        context: &Arc<TaskContext>,
    ) -> datafusion::error::Result<u64> {
        let def = &self.def;
        let mut rows: Vec<Vec<Option<Value>>> = Vec::new();
        while let Some(batch) = data.next().await {
            let batch = batch?;
            let mut columns = Vec::with_capacity(def.columns.len());
            for (i, spec) in def.columns.iter().enumerate() {
                if self.provided.contains(&spec.name) {
                    columns.push(Some(array_to_cells(batch.column(i), spec.ty, &spec.name)?));
                } else {
                    columns.push(None);
                }
            }
            for row in 0..batch.num_rows() {
                rows.push(
                    columns
                        .iter()
                        .map(|cells| cells.as_ref().map(|c| c[row].clone()))
                        .collect(),
                );
            }
        }
        let config = context.session_config();
        crate::cold::retire::hold_lease(config);
        let limits = config.get_extension::<Limits>().unwrap_or_default();
        Ok(self.write_rows(rows, &limits).await?)
    }
}

impl TableSink {
    /// Writes the rows of one INSERT, each a cell per table column (`None`:
    /// not given, so its default): defaults, NOT NULL, duplicate keys in
    /// the statement and in the table, one commit. Returns the rows kept.
    /// Call within a read lease: the duplicate-key check may read Parquet.
    async fn write_rows(&self, rows: Vec<Vec<Option<Value>>>, limits: &Limits) -> Result<u64> {
        let def = &self.def;
        // An event log appends: no duplicate keys to look for.
        let events = def.rules().keyed_by_sequence();
        let now = kalamdb_model::Timestamp::now().0;
        let mut writes: Vec<RowWrite> = Vec::with_capacity(rows.len());
        let mut seen = HashSet::new();
        for row in rows {
            let values: Vec<Value> = row
                .into_iter()
                .enumerate()
                .map(|(i, cell)| cell.unwrap_or_else(|| self.default_cell(i, now)))
                .collect();
            check_not_null(def, &values)?;
            let pk = if events {
                // Keyed by its `_seq` at commit.
                check_event_size(def, &values, limits)?;
                Vec::new()
            } else {
                let key_cell = &values[def.primary_key];
                let pk = encode_pk(def.key_column().ty, key_cell)?;
                if !seen.insert(pk.clone()) {
                    return Err(EngineError::Constraint(format!(
                        "duplicate primary key {} in the same statement",
                        describe_key(def, key_cell)
                    )));
                }
                pk
            };
            writes.push(RowWrite {
                pk,
                values,
                deleted: false,
                old: None,
            });
        }
        let _guard = self.registry.hot().lock_partition(def, &self.scope).await;
        let keys: Vec<Vec<u8>> = if events {
            Vec::new()
        } else {
            writes.iter().map(|w| w.pk.clone()).collect()
        };
        let existing = self
            .registry
            .tiers
            .current_rows(def, &self.scope, &keys)
            .await?;
        for (write, existing) in writes.iter().zip(existing) {
            if existing.is_some_and(|r| !r.deleted) {
                return Err(EngineError::Constraint(format!(
                    "duplicate primary key: a row with {} already exists in {}",
                    describe_key(def, &write.values[def.primary_key]),
                    def.table_id()
                )));
            }
        }
        // What was kept: an ephemeral stream without subscribers keeps none.
        let count = self.registry.commit(def, &self.scope, writes)?.len() as u64;
        Ok(count)
    }
}

/// An INSERT whose values are already cells (the statement fast path):
/// the same checks and commit as a DataFusion INSERT into the table.
/// `rows` hold a cell per table column, `None` for a column not given.
pub(crate) async fn insert_cells(
    def: Arc<TableDef>,
    registry: Arc<TableRegistry>,
    caller: &Caller,
    provided: Vec<String>,
    rows: Vec<Vec<Option<Value>>>,
    limits: &Limits,
) -> Result<u64> {
    check_write(&def, caller)?;
    let _lease = registry.cold().readers.enter();
    let sink = TableSink {
        schema: def.arrow_schema(),
        scope: scope_for(&def, caller),
        user_id: caller.user_id.clone(),
        provided: provided.into_iter().collect(),
        def,
        registry,
    };
    sink.write_rows(rows, limits).await
}
