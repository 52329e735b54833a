//! Running a batch of statements for a caller.
//!
//! Statements run in order and the first failure stops the batch; the
//! results of the statements before it are kept. KalamDB's own statements
//! are handled here; every other statement is planned by DataFusion with DDL
//! and session statements refused, so only KalamDB's catalog changes schemas.

use std::sync::Arc;

use datafusion::arrow::array::{AsArray, RecordBatch};
use datafusion::arrow::datatypes::UInt64Type;
use datafusion::common::ScalarValue;
use datafusion::dataframe::DataFrame;
use datafusion::execution::{FunctionRegistry, SessionState};
use datafusion::logical_expr::{LogicalPlan, ScalarUDF};
use datafusion::physical_plan::joins::{CrossJoinExec, NestedLoopJoinExec};
use datafusion::physical_plan::{ExecutionPlan, StatisticsArgs, StatisticsContext, execute_stream};
use datafusion::prelude::SQLOptions;
use datafusion::sql::parser::Statement as DFStatement;
use datafusion::sql::sqlparser::ast::Statement;
use futures::StreamExt;

use super::parser::{KalamStatement, StatementSource, split_batch};
pub use super::result::{ResultColumn, StatementResult};
use crate::cold::retire::StatementLease;
use crate::engine::Engine;
use crate::error::{EngineError, ObjectKind, Result};
use crate::functions::CurrentUserUdf;
use crate::json::sql_type_name;
use crate::session::Caller;
use crate::session::Limits;
use crate::table::TableId;
use kalamdb_model::{JobKind, Role};

/// A batch of statements as a client sends it.
#[derive(Debug, Clone, Default)]
pub struct SqlRequest {
    /// One or more statements separated by `;`.
    pub sql: String,
    /// Values for `$1`, `$2`, … in every statement of the batch.
    pub params: Vec<serde_json::Value>,
    /// Default namespace for unqualified table names.
    pub namespace: Option<String>,
}

/// What [`Engine::describe`] knows of a statement before it runs.
#[derive(Debug, Clone, Default)]
pub struct Described {
    /// SQL type name of each `$n` parameter, `None` where unknown.
    pub params: Vec<Option<String>>,
    /// Columns of a query's result; empty for other statements.
    pub columns: Vec<ResultColumn>,
}

/// The failure that stopped a batch.
#[derive(Debug)]
pub struct StatementError {
    pub error: EngineError,
    /// The statement that failed, when the batch could be split.
    pub statement: Option<String>,
}

/// What a batch produced: results of the statements that succeeded, and the
/// error that stopped it, if any.
#[derive(Debug, Default)]
pub struct BatchOutcome {
    pub results: Vec<StatementResult>,
    pub error: Option<StatementError>,
}

/// Who runs a batch, and where.
pub(crate) struct Batch<'a> {
    pub caller: &'a Caller,
    pub namespace: Option<&'a str>,
}

/// How often a statement is planned again when ALTER TABLEs keep changing
/// its table under it.
const SCHEMA_CHANGE_RETRIES: u32 = 5;

impl Engine {
    /// Runs a batch for `caller`.
    pub async fn execute(&self, caller: &Caller, request: SqlRequest) -> BatchOutcome {
        let mut outcome = BatchOutcome::default();
        let limits = &self.config.limits;
        let prepared = self.check_sql_size(&request.sql).and_then(|()| {
            let sources = split_batch(&request.sql)?;
            if sources.len() > limits.max_statements {
                return Err(EngineError::LimitExceeded(format!(
                    "the request holds {} statements; the limit is {} (KALAMDB_MAX_STATEMENTS): send them in several requests",
                    sources.len(),
                    limits.max_statements
                )));
            }
            let highest = sources
                .iter()
                .map(|s| s.highest_placeholder())
                .max()
                .unwrap_or(0);
            if request.params.len() != highest {
                return Err(EngineError::InvalidInput(if highest == 0 {
                    format!(
                        "{} parameter(s) given but the SQL has no $n placeholders",
                        request.params.len()
                    )
                } else {
                    format!(
                        "the SQL uses placeholders up to ${highest} but {} parameter(s) were given",
                        request.params.len()
                    )
                }));
            }
            if let Some(namespace) = request.namespace.as_deref() {
                self.check_namespace(namespace)?;
            }
            let params = request
                .params
                .iter()
                .enumerate()
                .map(|(i, v)| json_param(i + 1, v))
                .collect::<Result<Vec<_>>>()?;
            Ok((sources, params))
        });
        let (sources, params) = match prepared {
            Ok(p) => p,
            Err(error) => {
                outcome.error = Some(StatementError {
                    error,
                    statement: None,
                });
                return outcome;
            }
        };
        let batch = Batch {
            caller,
            namespace: request.namespace.as_deref(),
        };
        // Built on the first statement that needs DataFusion: a batch of
        // fast-path statements never pays for a session.
        let mut state: Option<SessionState> = None;
        for source in sources {
            let kind = source.kind();
            let started = std::time::Instant::now();
            let run = self.execute_one(&mut state, &batch, &source, &params);
            let result = within(limits.statement_timeout, run).await;
            self.metrics
                .record_statement(kind, result.is_ok(), started.elapsed());
            match result {
                Ok(mut result) => {
                    result.command = source.command();
                    outcome.results.push(result);
                }
                Err(error) => {
                    outcome.error = Some(StatementError {
                        error,
                        statement: Some(source.text),
                    });
                    break;
                }
            }
        }
        outcome
    }

    /// What one statement takes and returns, without running it: for a
    /// query or DML statement planned by DataFusion, the SQL types of its
    /// `$n` parameters (`None` where the statement does not fix one) and the
    /// columns a query returns. KalamDB's own statements, and batches of
    /// several, describe as nothing known. For clients that prepare
    /// statements (the Postgres wire protocol's Describe).
    pub async fn describe(
        &self,
        caller: &Caller,
        sql: &str,
        namespace: Option<&str>,
    ) -> Result<Described> {
        self.check_sql_size(sql)?;
        let mut sources = split_batch(sql)?;
        let highest = sources.iter().map(|s| s.highest_placeholder()).max();
        let unknown = Described {
            params: vec![None; highest.unwrap_or(0)],
            columns: Vec::new(),
        };
        if sources.len() != 1 {
            return Ok(unknown);
        }
        let source = sources.remove(0);
        source.check_limits(
            self.config.limits.max_expression_depth,
            self.config.limits.max_joins,
        )?;
        let KalamStatement::Sql(statement) = source.parse()? else {
            return Ok(unknown);
        };
        let is_query = matches!(*statement, Statement::Query(_));
        if !is_query
            && !matches!(
                *statement,
                Statement::Insert(_) | Statement::Update { .. } | Statement::Delete(_)
            )
        {
            return Ok(unknown);
        }
        let state = self.session_state(caller, namespace)?;
        let statement = DFStatement::Statement(statement);
        check_tables_exist(&state, &statement)?;
        let plan = state.statement_to_plan(statement).await?;
        let types = plan.get_parameter_types().map_err(EngineError::from)?;
        let params = (1..=unknown.params.len())
            .map(|i| {
                types
                    .get(&format!("${i}"))
                    .cloned()
                    .flatten()
                    .map(|t| sql_type_name(&t))
            })
            .collect();
        let columns = match is_query {
            true => ResultColumn::of_schema(plan.schema().as_arrow()),
            false => Vec::new(),
        };
        Ok(Described { params, columns })
    }

    /// Refuses SQL text over the configured length.
    fn check_sql_size(&self, sql: &str) -> Result<()> {
        let limit = self.config.limits.max_sql_bytes;
        if sql.len() > limit {
            return Err(EngineError::LimitExceeded(format!(
                "the SQL text is {} bytes; the limit is {limit} (KALAMDB_MAX_SQL_BYTES)",
                sql.len()
            )));
        }
        Ok(())
    }

    /// A session for one batch: the template's catalog and functions, the
    /// caller attached for providers, `CURRENT_USER()` bound to the caller.
    pub(crate) fn session_state(
        &self,
        caller: &Caller,
        namespace: Option<&str>,
    ) -> Result<SessionState> {
        let mut state = self.ctx.state();
        state.config_mut().set_extension(Arc::new(caller.clone()));
        state
            .config_mut()
            .set_extension(Arc::new(self.config.limits.clone()));
        // Parquet files the batch lists stay on disk until it ends.
        state
            .config_mut()
            .set_extension(Arc::new(StatementLease::new(
                self.tables.cold().readers.clone(),
            )));
        if let Some(namespace) = namespace {
            self.check_namespace(namespace)?;
            state.config_mut().options_mut().catalog.default_schema = namespace.to_string();
        }
        state
            .register_udf(Arc::new(ScalarUDF::new_from_impl(CurrentUserUdf::new(
                &caller.user_id,
            ))))
            .map_err(EngineError::from)?;
        Ok(state)
    }

    /// Fails unless the namespace exists.
    fn check_namespace(&self, namespace: &str) -> Result<()> {
        if self.stores.namespaces.get(namespace)?.is_none() {
            return Err(EngineError::not_found(ObjectKind::Namespace, namespace));
        }
        Ok(())
    }

    async fn execute_one(
        &self,
        state: &mut Option<SessionState>,
        batch: &Batch<'_>,
        source: &StatementSource,
        params: &[ScalarValue],
    ) -> Result<StatementResult> {
        source.check_limits(
            self.config.limits.max_expression_depth,
            self.config.limits.max_joins,
        )?;
        let mut attempts = 0;
        loop {
            let statement = source.parse()?;
            let outcome = match self.try_fast(batch, &statement, params).await {
                Ok(Some(result)) => Ok(result),
                Ok(None) => {
                    let state = match state {
                        Some(state) => state,
                        None => state.insert(self.batch_state(batch)?),
                    };
                    self.run_statement(state, batch.caller, statement, params, batch.namespace)
                        .await
                }
                Err(e) => Err(e),
            };
            match outcome {
                // Planned with a table definition an ALTER TABLE replaced
                // before the statement wrote: nothing was written, so plan
                // it again with the new one.
                Err(EngineError::SchemaChanged(_)) if attempts < SCHEMA_CHANGE_RETRIES => {
                    attempts += 1;
                }
                other => return other,
            }
        }
    }

    /// The DataFusion session of a batch.
    fn batch_state(&self, batch: &Batch<'_>) -> Result<SessionState> {
        self.session_state(batch.caller, batch.namespace)
    }

    async fn run_statement(
        &self,
        state: &SessionState,
        caller: &Caller,
        statement: KalamStatement,
        params: &[ScalarValue],
        namespace: Option<&str>,
    ) -> Result<StatementResult> {
        match statement {
            KalamStatement::CreateTable(create) => self.create_table(caller, &create, namespace),
            KalamStatement::DropTable { name, if_exists } => {
                self.drop_table(caller, &name, if_exists, namespace)
            }
            KalamStatement::Backup { namespace, target } => {
                self.backup_database(caller, &namespace, target)
            }
            KalamStatement::Restore {
                namespace,
                target,
                as_name,
            } => self.restore_database(caller, &namespace, target, as_name),
            KalamStatement::ShowBackup { target } => {
                self.show_backup_statement(caller, target).await
            }
            KalamStatement::AlterTable { name, change } => {
                self.alter_table(caller, &name, change, namespace)
            }
            KalamStatement::ShowTables { namespace: filter } => {
                let sql = match filter {
                    Some(ns) => format!(
                        "SELECT namespace, table_name, table_type, storage_location, created_at FROM system.tables WHERE namespace = '{}' ORDER BY table_name",
                        ns.replace('\'', "''")
                    ),
                    None => "SELECT namespace, table_name, table_type, storage_location, created_at FROM system.tables ORDER BY namespace, table_name".to_string(),
                };
                self.run_query(state, &sql).await
            }
            KalamStatement::DescribeTable { name, history: false } => {
                self.describe_table(&name, namespace)
            }
            KalamStatement::DescribeTable { name, history: true } => {
                let ns = self.resolve_namespace(&name, namespace)?;
                let table_id = TableId::new(&ns, &name.name);
                if self.tables.by_id(&table_id).is_none() {
                    return Err(super::tables::table_not_found(&table_id));
                }
                let sql = format!(
                    "SELECT version, created_at, changes, arrow_schema FROM system.table_schemas WHERE table_id = '{}' ORDER BY version",
                    table_id.to_string().replace('\'', "''")
                );
                self.run_query(state, &sql).await
            }
            KalamStatement::KillLiveQuery { live_id } => self.kill_live_query(caller, &live_id),
            KalamStatement::ShowTableStats { name } => {
                self.show_table_stats(caller, &name, namespace)
            }
            KalamStatement::ShowServerStats => self.show_server_stats(caller),
            KalamStatement::FlushTable { name } => {
                self.queue_table_job(caller, JobKind::Flush, &name, namespace)
            }
            KalamStatement::CompactTable { name } => {
                self.queue_table_job(caller, JobKind::Compact, &name, namespace)
            }
            KalamStatement::CreateStorage(create) => self.create_storage(caller, create).await,
            KalamStatement::DropStorage { name, if_exists } => {
                self.drop_storage(caller, &name, if_exists)
            }
            KalamStatement::ExecuteAs { user, statement } => {
                let statement = statement.parse()?;
                if matches!(statement, KalamStatement::ExecuteAs { .. }) {
                    return Err(EngineError::InvalidSql(
                        "EXECUTE AS USER cannot be nested: run the inner statement as the outer user".into(),
                    ));
                }
                let inner = self.impersonate(caller, &user)?;
                let batch = Batch {
                    caller: &inner,
                    namespace,
                };
                if let Some(result) = self.try_fast(&batch, &statement, params).await? {
                    return Ok(result);
                }
                let inner_state = self.batch_state(&batch)?;
                Box::pin(self.run_statement(&inner_state, &inner, statement, params, namespace))
                    .await
            }
            KalamStatement::CreateNamespace { name, if_not_exists } => {
                self.create_namespace(caller, &name, if_not_exists)
            }
            KalamStatement::AlterNamespace { name, options } => {
                self.alter_namespace(caller, &name, options)
            }
            KalamStatement::DropNamespace {
                name,
                if_exists,
                cascade,
            } => self.drop_namespace(caller, &name, if_exists, cascade),
            KalamStatement::ShowNamespaces => {
                self.run_query(
                    state,
                    "SELECT name, created_at, options, table_count FROM system.namespaces ORDER BY name",
                )
                .await
            }
            KalamStatement::CreateUser {
                username,
                password,
                role,
                email,
                if_not_exists,
            } => self.create_user(caller, &username, &password, role, email, if_not_exists),
            KalamStatement::AlterUser { username, change } => {
                self.alter_user(caller, &username, change)
            }
            KalamStatement::DropUser { username, if_exists } => {
                self.drop_user(caller, &username, if_exists)
            }
            KalamStatement::Sql(statement) => match *statement {
                Statement::Insert(insert) => self.run_insert(state, insert, params, namespace).await,
                Statement::Update(update) => self.run_update(state, update, params, namespace).await,
                Statement::Delete(delete) => self.run_delete(state, delete, params, namespace).await,
                other => self.run_datafusion(state, other, params).await,
            },
        }
    }

    /// The caller `EXECUTE AS USER` switches to.
    fn impersonate(&self, caller: &Caller, user_id: &str) -> Result<Caller> {
        if caller.role < Role::Service {
            return Err(EngineError::PermissionDenied(format!(
                "EXECUTE AS USER requires role service, dba or system; user {} has role {}",
                caller.user_id, caller.role
            )));
        }
        let target = self
            .user_by_name(user_id)?
            .ok_or_else(|| EngineError::not_found(ObjectKind::User, user_id))?;
        if target.role > caller.role {
            return Err(EngineError::PermissionDenied(format!(
                "user {} with role {} cannot act as user {} with role {}",
                caller.user_id, caller.role, target.user_id, target.role
            )));
        }
        Ok(Caller::new(target.user_id, target.role))
    }

    /// Runs a fixed internal query in the caller's session.
    async fn run_query(&self, state: &SessionState, sql: &str) -> Result<StatementResult> {
        let source = split_batch(sql)?.remove(0);
        match source.parse()? {
            KalamStatement::Sql(statement) => self.run_datafusion(state, *statement, &[]).await,
            other => Err(EngineError::Internal(format!(
                "internal query parsed as {other:?}"
            ))),
        }
    }

    pub(crate) async fn run_datafusion(
        &self,
        state: &SessionState,
        statement: Statement,
        params: &[ScalarValue],
    ) -> Result<StatementResult> {
        if let Statement::CreateTable(_) = statement {
            return Err(EngineError::InvalidSql(
                "CREATE TABLE needs a table type: use CREATE USER TABLE, CREATE SHARED TABLE or CREATE STREAM TABLE".into(),
            ));
        }
        let is_dml = matches!(
            statement,
            Statement::Insert(_) | Statement::Update { .. } | Statement::Delete(_)
        );
        let statement = DFStatement::Statement(Box::new(statement));
        check_tables_exist(state, &statement)?;
        let plan = state.statement_to_plan(statement).await?;
        SQLOptions::new()
            .with_allow_ddl(false)
            .with_allow_statements(false)
            .verify_plan(&plan)
            .map_err(|_| {
                EngineError::InvalidSql(format!(
                    "this statement is not supported by KalamDB ({})",
                    plan.display()
                ))
            })?;
        let (schema, batches) = collect_plan(state, plan, params).await?;
        if is_dml {
            let affected = count_column(&batches);
            return Ok(StatementResult::message(
                affected,
                format!("{affected} row(s) affected"),
            ));
        }
        Ok(StatementResult::arrow(Arc::new(schema), batches))
    }
}

/// Runs `work`, cancelling it (at its next await point) after `limit`.
pub(crate) async fn within<T>(
    limit: Option<std::time::Duration>,
    work: impl std::future::Future<Output = Result<T>>,
) -> Result<T> {
    let Some(limit) = limit else {
        return work.await;
    };
    tokio::time::timeout(limit, work).await.unwrap_or_else(|_| {
        Err(EngineError::Timeout(format!(
            "the statement ran longer than {} ms and was cancelled (KALAMDB_STATEMENT_TIMEOUT_MS)",
            limit.as_millis()
        )))
    })
}

/// Names a missing namespace or table the way users write them
/// ("table app.messages does not exist") before DataFusion plans.
pub(crate) fn check_tables_exist(state: &SessionState, statement: &DFStatement) -> Result<()> {
    let default_schema = state.config_options().catalog.default_schema.clone();
    for reference in state.resolve_table_references(statement)? {
        let namespace = reference.schema().unwrap_or(&default_schema).to_string();
        let schema = state.schema_for_ref(reference.clone()).map_err(|_| {
            if reference.schema().is_none() {
                EngineError::not_found_hint(
                    ObjectKind::Table,
                    reference.table(),
                    format!(
                        "qualify it as namespace.{} or set \"namespace\" in the request",
                        reference.table()
                    ),
                )
            } else {
                super::namespaces::namespace_not_found(&namespace)
            }
        })?;
        if !schema.table_exist(reference.table()) {
            return Err(super::tables::table_not_found(&TableId::new(
                namespace,
                reference.table(),
            )));
        }
    }
    Ok(())
}

/// Binds parameters and runs a plan, within the session's [`Limits`]:
/// no join that would compare too many pairs of rows, no result over the
/// size limit.
pub(crate) async fn collect_plan(
    state: &SessionState,
    plan: LogicalPlan,
    params: &[ScalarValue],
) -> Result<(datafusion::arrow::datatypes::Schema, Vec<RecordBatch>)> {
    let limits = state.config().get_extension::<Limits>().unwrap_or_default();
    let plan = bind_params(plan, params)?;
    let frame = DataFrame::new(state.clone(), plan);
    let schema = frame.schema().as_arrow().clone();
    let physical = frame.create_physical_plan().await?;
    check_joins(&physical)?;
    let mut stream = execute_stream(physical, state.task_ctx())?;
    let mut batches = Vec::new();
    let mut bytes = 0usize;
    while let Some(batch) = stream.next().await {
        let batch = batch?;
        // The rows' own bytes: a LIMIT's output slices a larger buffer.
        bytes += batch
            .columns()
            .iter()
            .map(|c| c.to_data().get_slice_memory_size().unwrap_or(0))
            .sum::<usize>();
        if bytes > limits.max_result_bytes {
            return Err(EngineError::LimitExceeded(format!(
                "the result is larger than {} bytes (KALAMDB_MAX_RESULT_BYTES): narrow it with WHERE or page it with LIMIT",
                limits.max_result_bytes
            )));
        }
        batches.push(batch);
    }
    Ok((schema, batches))
}

/// Pairs of rows a join without an equality condition (a cross join, or a
/// nested-loop join on `ON a.x < b.y` or `ON true`) may compare. Such a join
/// holds one side in memory — outside DataFusion's memory pool when that
/// side has no columns — and compares every pair in calls that do not yield
/// to the statement timeout: `SELECT count(*) FROM t a, t b, …` would take
/// the server's memory, or its CPU past any timeout.
pub(crate) const MAX_JOIN_PAIRS: usize = 100_000_000;

/// Refuses a plan with a cross or nested-loop join whose sides' estimated
/// rows multiply past [`MAX_JOIN_PAIRS`], or whose size is unknown (unless
/// one side has at most one row, as a scalar subquery does).
fn check_joins(plan: &Arc<dyn ExecutionPlan>) -> Result<()> {
    let statistics = StatisticsContext::new();
    let rows = |child: &Arc<dyn ExecutionPlan>| {
        statistics
            .compute(child.as_ref(), &StatisticsArgs::new())
            .ok()
            .and_then(|s| s.num_rows.get_value().copied())
    };
    let mut pending = vec![plan.clone()];
    while let Some(node) = pending.pop() {
        let children = node.children();
        if (node.is::<CrossJoinExec>() || node.is::<NestedLoopJoinExec>())
            && let [left, right] = children.as_slice()
        {
            let pairs = match (rows(left), rows(right)) {
                (Some(l), Some(r)) => Some(l.saturating_mul(r)),
                (Some(n), None) | (None, Some(n)) if n <= 1 => Some(n),
                _ => None,
            };
            if pairs.is_none_or(|pairs| pairs > MAX_JOIN_PAIRS) {
                let pairs = pairs.map_or_else(|| "an unknown number of".into(), |p| p.to_string());
                return Err(EngineError::LimitExceeded(format!(
                    "a join without an equality condition between its tables would compare {pairs} pairs of rows; the limit is {MAX_JOIN_PAIRS}: join ON a.column = b.column, or filter the tables first"
                )));
            }
        }
        pending.extend(children.into_iter().cloned());
    }
    Ok(())
}

/// Sums DataFusion's `count` column of a DML result.
fn count_column(batches: &[RecordBatch]) -> u64 {
    batches
        .iter()
        .filter_map(|b| b.column_by_name("count"))
        .filter_map(|c| c.as_primitive_opt::<UInt64Type>())
        .flat_map(|c| c.iter().flatten())
        .sum()
}

/// Binds `$n` parameters, casting each value to the type the plan expects
/// (so `"9007199254740993"` binds to a BIGINT placeholder).
fn bind_params(plan: LogicalPlan, params: &[ScalarValue]) -> Result<LogicalPlan> {
    let expected = plan.get_parameter_types()?;
    // The batch was checked against the highest placeholder of all its
    // statements; a statement without placeholders ignores the parameters.
    let highest = expected
        .keys()
        .filter_map(|k| k.strip_prefix('$')?.parse::<usize>().ok())
        .max()
        .unwrap_or(0);
    if highest == 0 {
        return Ok(plan);
    }
    if params.len() < highest {
        return Err(EngineError::InvalidInput(format!(
            "the statement uses ${highest} but {} parameter(s) were given",
            params.len()
        )));
    }
    let params = &params[..highest];
    let mut values = Vec::with_capacity(params.len());
    for (i, value) in params.iter().enumerate() {
        let name = format!("${}", i + 1);
        let cast = match expected.get(&name) {
            Some(Some(target)) if value.data_type() != *target && !value.is_null() => {
                value.cast_to(target).map_err(|_| {
                    EngineError::InvalidInput(format!(
                        "parameter {name} ({value}) cannot be used as {}",
                        sql_type_name(target)
                    ))
                })?
            }
            Some(Some(target)) if value.is_null() => ScalarValue::try_from(target)?,
            _ => value.clone(),
        };
        values.push(cast);
    }
    Ok(plan.with_param_values(values)?)
}

/// A JSON request parameter as a SQL value.
fn json_param(position: usize, value: &serde_json::Value) -> Result<ScalarValue> {
    use serde_json::Value;
    Ok(match value {
        Value::Null => ScalarValue::Null,
        Value::Bool(b) => ScalarValue::Boolean(Some(*b)),
        Value::Number(n) => {
            if let Some(i) = n.as_i64() {
                ScalarValue::Int64(Some(i))
            } else if let Some(u) = n.as_u64() {
                ScalarValue::UInt64(Some(u))
            } else {
                ScalarValue::Float64(n.as_f64())
            }
        }
        Value::String(s) => ScalarValue::Utf8(Some(s.clone())),
        Value::Array(_) | Value::Object(_) => {
            return Err(EngineError::InvalidInput(format!(
                "parameter ${position} must be a string, number, boolean or null"
            )));
        }
    })
}
