//! Subscribing: validating a live query, registering it, reading its
//! initial rows.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicI64};

use datafusion::common::tree_node::TreeNode;
use datafusion::logical_expr::{Expr, LogicalPlan};
use datafusion::sql::parser::Statement as DFStatement;
use datafusion::sql::sqlparser::ast::Statement;
use tokio::sync::mpsc;

use super::execute::{ResultColumn, check_tables_exist, collect_plan};
use super::parser::{KalamStatement, split_batch};
use crate::engine::Engine;
use crate::error::{EngineError, Result};
use crate::json::{JsonRow, batches_to_rows, sql_type_name};
use crate::live::{LiveEvent, Subscription};
use crate::session::Caller;
use crate::table::provider::scope_for;

/// What a client asks for.
#[derive(Debug, Clone)]
pub struct SubscribeRequest {
    /// The client's id for the subscription.
    pub subscription_id: String,
    /// `SELECT … FROM ns.t [WHERE …] [ORDER BY …] [LIMIT …]`.
    pub sql: String,
    /// Only the last N initial rows (by `_seq`).
    pub last_rows: Option<usize>,
}

/// A registered subscription and its initial rows.
#[derive(Debug)]
pub struct Subscribed {
    pub live_id: String,
    pub columns: Vec<ResultColumn>,
    /// Every change after this `_seq` will be delivered.
    pub seq: i64,
    pub initial_rows: Vec<JsonRow>,
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
    /// Registers a live query for `caller` and reads its initial rows.
    /// Events go to `sender`; `overflowed` is raised if it is ever full.
    pub async fn subscribe(
        &self,
        caller: &Caller,
        request: SubscribeRequest,
        sender: mpsc::Sender<LiveEvent>,
        overflowed: Arc<AtomicBool>,
    ) -> Result<Subscribed> {
        let mut sources = split_batch(&request.sql)?;
        if sources.len() != 1 {
            return Err(EngineError::InvalidSql(
                "a live query is exactly one SELECT".into(),
            ));
        }
        let statement = match sources.remove(0).parse()? {
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
        let live_id = format!("{}-{}", self.config.node_id, self.tables.snowflake_id());
        let subscription = Arc::new(Subscription {
            live_id: live_id.clone(),
            subscription_id: request.subscription_id,
            table_id: def.table_id(),
            scope: scope.clone(),
            def: def.clone(),
            filter: physical_filter,
            projection,
            projected_schema: projected_schema.clone(),
            sender,
            overflowed,
            changes: AtomicI64::new(0),
        });

        // Register and read under the partition lock: no write can commit
        // between the two, so the initial rows and the events meet at `seq`.
        let _guard = self.tables.lock_partition(&def, &scope).await;
        self.tables.live.register(subscription);
        let seq = self.tables.current_seq();
        let (_, batches) = match collect_plan(&state, plan, &[]).await {
            Ok(result) => result,
            Err(e) => {
                self.tables.live.unregister(&live_id);
                return Err(e);
            }
        };
        drop(_guard);
        let mut initial_rows = batches_to_rows(&batches)?;
        if let Some(last) = request.last_rows {
            let skip = initial_rows.len().saturating_sub(last);
            initial_rows.drain(..skip);
        }
        Ok(Subscribed {
            live_id,
            columns: projected_schema
                .fields()
                .iter()
                .map(|f| ResultColumn {
                    name: f.name().clone(),
                    data_type: sql_type_name(f.data_type()),
                })
                .collect(),
            seq,
            initial_rows,
        })
    }

    /// Ends a subscription; true if it existed.
    pub fn unsubscribe(&self, live_id: &str) -> bool {
        self.tables.live.unregister(live_id).is_some()
    }
}
