//! Subscribing: validating a live query, registering it, reading its
//! initial rows.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicI64};

use datafusion::common::tree_node::TreeNode;
use datafusion::logical_expr::{Expr, LogicalPlan};
use datafusion::sql::parser::Statement as DFStatement;
use datafusion::sql::sqlparser::ast::Statement;
use tokio::sync::mpsc;

use super::execute::{check_tables_exist, collect_plan, within};
use super::parser::{KalamStatement, split_batch};
use super::result::ResultColumn;
use crate::engine::Engine;
use crate::error::{EngineError, ObjectKind, Result};
use crate::json::{JsonRow, batches_to_rows};
use crate::live::{
    ChangeEvent, ChangeKind, ChangeRows, LiveEvent, Subscription, matches, project, shape_of,
};
use crate::provider::scope_for;
use crate::session::Caller;
use crate::table::TableId;
use kalamdb_model::{LiveQuery, Timestamp};

/// What a client asks for.
#[derive(Debug, Clone)]
pub struct SubscribeRequest {
    /// The client's id for the subscription.
    pub subscription_id: String,
    /// `SELECT … FROM ns.t [WHERE …] [ORDER BY …] [LIMIT …]`.
    pub sql: String,
    /// Only the last N initial rows.
    pub last_rows: Option<usize>,
    /// Resume: deliver what changed after this `_seq` instead of a snapshot.
    pub from_seq: Option<i64>,
    /// The WebSocket connection, for `system.live_queries`.
    pub connection_id: String,
    /// The subscription options as the client sent them (JSON).
    pub options: Option<String>,
}

/// A registered subscription and its initial rows.
#[derive(Debug)]
pub struct Subscribed {
    pub live_id: String,
    pub columns: Vec<ResultColumn>,
    /// Every change after this `_seq` will be delivered.
    pub seq: i64,
    pub initial_rows: Vec<JsonRow>,
    /// With `from_seq`: rows deleted (or moved out of the filter) since then,
    /// to send as `delete` changes after the initial rows.
    pub resume_deletes: Vec<ChangeEvent>,
}

fn unsupported(what: &str) -> EngineError {
    EngineError::InvalidSql(format!(
        "live queries watch one USER or SHARED table with an optional WHERE and column list; {what} is not supported"
    ))
}

/// Walks `Projection → [Filter] → [SubqueryAlias] → TableScan`, below an
/// optional `Sort`/`Limit` (those shape the initial rows only).
fn live_shape(
    plan: &LogicalPlan,
) -> Result<(
    &[Expr],
    Option<&datafusion::logical_expr::Filter>,
    &datafusion::logical_expr::TableScan,
)> {
    let mut node = plan;
    while let LogicalPlan::Sort(_) | LogicalPlan::Limit(_) = node {
        node = node.inputs()[0];
    }
    let LogicalPlan::Projection(projection) = node else {
        return Err(unsupported(&format!("a {} at the top", node.display())));
    };
    let mut node = projection.input.as_ref();
    let filter = match node {
        LogicalPlan::Filter(filter) => {
            node = filter.input.as_ref();
            Some(filter)
        }
        _ => None,
    };
    if let LogicalPlan::SubqueryAlias(alias) = node {
        node = alias.input.as_ref();
    }
    match node {
        LogicalPlan::TableScan(scan) => Ok((&projection.expr, filter, scan)),
        other => Err(unsupported(&format!(
            "{} (joins, aggregates, subqueries, unions)",
            other.display()
        ))),
    }
}

impl Engine {
    /// Registers a live query for `caller` and reads its initial rows (or,
    /// with `from_seq`, what changed since). Events go to `sender`;
    /// `overflowed` is raised if it is ever full.
    pub async fn subscribe(
        &self,
        caller: &Caller,
        request: SubscribeRequest,
        sender: mpsc::Sender<LiveEvent>,
        overflowed: Arc<AtomicBool>,
    ) -> Result<Subscribed> {
        let limits = &self.config.limits;
        if request.sql.len() > limits.max_subscribe_sql_bytes {
            return Err(EngineError::LimitExceeded(format!(
                "the live query is {} bytes; the limit is {} (KALAMDB_MAX_SUBSCRIBE_SQL_BYTES)",
                request.sql.len(),
                limits.max_subscribe_sql_bytes
            )));
        }
        let mut sources = split_batch(&request.sql)?;
        if sources.len() != 1 {
            return Err(EngineError::InvalidSql(
                "a live query is exactly one SELECT".into(),
            ));
        }
        let source = sources.remove(0);
        source.check_limits(limits.max_expression_depth, limits.max_joins)?;
        let statement = match source.parse()? {
            KalamStatement::Sql(statement) if matches!(*statement, Statement::Query(_)) => {
                *statement
            }
            _ => {
                return Err(EngineError::InvalidSql(
                    "a live query must be a SELECT".into(),
                ));
            }
        };
        let state = self.session_state(caller, None)?;
        let statement = DFStatement::Statement(Box::new(statement));
        check_tables_exist(&state, &statement)?;
        let plan = state.statement_to_plan(statement).await?;
        let (exprs, filter, scan) = live_shape(&plan)?;
        let namespace = scan.table_name.schema().unwrap_or_default();
        let def = self
            .tables
            .get(namespace, scan.table_name.table())
            .ok_or_else(|| unsupported(&format!("watching {}", scan.table_name)))?;
        let schema = def.arrow_schema();
        let mut projection = Vec::with_capacity(exprs.len());
        for expr in exprs {
            let Expr::Column(column) = expr else {
                return Err(unsupported(&format!(
                    "the expression {expr} in the column list"
                )));
            };
            let index = schema.index_of(&column.name).map_err(|_| {
                EngineError::InvalidSql(format!(
                    "table {} has no column {}",
                    def.table_id(),
                    column.name
                ))
            })?;
            projection.push(index);
        }
        let physical_filter = match filter {
            Some(filter) => {
                let has_subquery = filter.predicate.exists(|e| {
                    Ok(matches!(
                        e,
                        Expr::ScalarSubquery(_) | Expr::InSubquery(_) | Expr::Exists(_)
                    ))
                })?;
                if has_subquery {
                    return Err(unsupported("a subquery in WHERE"));
                }
                Some(state.create_physical_expr(filter.predicate.clone(), filter.input.schema())?)
            }
            None => None,
        };
        let projected_schema = Arc::new(
            schema
                .project(&projection)
                .map_err(|e| EngineError::Internal(e.to_string()))?,
        );
        let scope = scope_for(&def, caller);
        let live_id = format!(
            "{}-{}",
            self.config.node_id,
            self.tables.hot().snowflake_id()
        );
        let subscription = Arc::new(Subscription {
            shape: shape_of(&def, physical_filter.as_ref(), &projection, &caller.user_id),
            live_id: live_id.clone(),
            subscription_id: request.subscription_id.clone(),
            table_id: def.table_id(),
            scope: scope.clone(),
            def: def.clone(),
            filter: physical_filter,
            projection,
            projected_schema: projected_schema.clone(),
            sender,
            overflowed,
            changes: AtomicI64::new(0),
            last_change: AtomicI64::new(0),
            user_id: caller.user_id.clone(),
        });
        let now = Timestamp::now();
        self.stores.live_queries.put(&LiveQuery {
            live_id: live_id.clone(),
            connection_id: request.connection_id.clone(),
            namespace: def.namespace.clone(),
            table_name: def.name.clone(),
            query_id: request.subscription_id.clone(),
            user_id: caller.user_id.clone(),
            query: request.sql.clone(),
            options: request.options.clone(),
            created_at: now,
            updated_at: now,
            changes: 0,
            node: self.config.node_id.clone(),
        })?;

        // Register and read under the partition lock: no write can commit
        // between the two, so the initial rows and the events meet at `seq`.
        let lease = self.tables.cold().readers.enter();
        let guard = self.tables.hot().lock_partition(&def, &scope).await;
        self.tables.live.register(subscription.clone());
        let seq = self.tables.hot().current_seq();
        let read = async {
            // Dropped, or role changed, while subscribing: the revocation
            // may have run before the registration and missed it.
            if self
                .user(&caller.user_id)?
                .is_none_or(|user| user.role != caller.role)
            {
                return Err(EngineError::Unauthenticated(format!(
                    "user {} was dropped or changed; log in again",
                    caller.user_id
                )));
            }
            match request.from_seq {
                Some(from) => self.changed_since(&subscription, from).await,
                None => collect_plan(&state, plan, &[])
                    .await
                    .and_then(|(_, batches)| batches_to_rows(&batches))
                    .map(|rows| (rows, Vec::new())),
            }
        };
        let initial = within(limits.statement_timeout, read).await;
        drop(guard);
        drop(lease);
        let (mut initial_rows, resume_deletes) = match initial {
            Ok(result) => result,
            Err(e) => {
                self.unsubscribe(&live_id);
                return Err(e);
            }
        };
        if let Some(last) = request.last_rows {
            let skip = initial_rows.len().saturating_sub(last);
            initial_rows.drain(..skip);
        }
        Ok(Subscribed {
            live_id,
            columns: ResultColumn::of_schema(&projected_schema),
            seq,
            initial_rows,
            resume_deletes,
        })
    }

    /// Rows of the subscription's partition written after `from_seq`: live
    /// matching rows as initial rows; deleted rows, and rows that no longer
    /// match, as `delete` changes.
    async fn changed_since(
        &self,
        subscription: &Subscription,
        from_seq: i64,
    ) -> Result<(Vec<JsonRow>, Vec<ChangeEvent>)> {
        let (def, scope) = (&subscription.def, &subscription.scope);
        let too_old = || {
            EngineError::ResumeTooOld(format!(
                "events of {} after _seq {from_seq} are no longer retained; subscribe again without from_seq",
                def.table_id()
            ))
        };
        if def.stream.is_some() && from_seq < self.tables.streams.resume_floor(def, scope)? {
            return Err(too_old());
        }
        let mut versions = self
            .tables
            .tiers
            .versions_since(def, scope, from_seq)
            .await?;
        if let Some(stream) = def.stream {
            // Expired but not yet swept: as gone as evicted.
            let cutoff = stream.cutoff(Timestamp::now().0);
            if versions.iter().any(|v| v.updated < cutoff) {
                return Err(too_old());
            }
            versions.retain(|v| v.updated >= cutoff);
        }
        let refs: Vec<_> = versions.iter().collect();
        let matching = matches(subscription, &refs)?;
        let mut rows = Vec::new();
        let mut deletes = Vec::new();
        for (row, matched) in versions.iter().zip(matching) {
            if matched && !row.deleted {
                rows.push(project(subscription, row)?);
            } else {
                deletes.push(ChangeEvent {
                    subscription_id: subscription.subscription_id.clone(),
                    kind: ChangeKind::Delete,
                    seq: row.seq,
                    rows: Arc::new(ChangeRows::new(
                        Vec::new(),
                        vec![project(subscription, row)?],
                    )),
                });
            }
        }
        Ok((rows, deletes))
    }

    /// Ends a subscription; true if it existed.
    pub fn unsubscribe(&self, live_id: &str) -> bool {
        if let Err(e) = self.stores.live_queries.delete(live_id) {
            tracing::warn!("cannot remove live query {live_id}: {e}");
        }
        self.tables.live.unregister(live_id).is_some()
    }

    /// `KILL LIVE QUERY 'id'`: the owner, `dba` or `system` ends a
    /// subscription; its client gets `unsubscribed` with reason `killed`.
    pub(crate) fn kill_live_query(
        &self,
        caller: &Caller,
        live_id: &str,
    ) -> Result<super::result::StatementResult> {
        let subscription = self
            .tables
            .live
            .get(live_id)
            .ok_or_else(|| EngineError::not_found(ObjectKind::LiveQuery, live_id))?;
        if subscription.user_id != caller.user_id && !caller.role.is_admin() {
            return Err(EngineError::PermissionDenied(format!(
                "live query {live_id} belongs to another user; only its owner, dba or system may kill it"
            )));
        }
        self.unsubscribe(live_id);
        subscription.end("killed");
        Ok(super::result::StatementResult::message(
            1,
            format!("live query {live_id} killed"),
        ))
    }

    /// Ends every subscription on a table (it is being dropped).
    pub(crate) fn end_subscriptions_on(&self, table_id: &TableId) {
        for subscription in self.tables.live.on_table(table_id) {
            self.unsubscribe(&subscription.live_id);
            subscription.end("table_dropped");
        }
    }
}
