//! Live queries: subscriptions indexed by table and partition, fed by every
//! committed write.
//!
//! A subscription is one table, an optional WHERE (a DataFusion physical
//! expression evaluated on the changed rows) and a column list. Writers call
//! [`LiveRouter::publish`] right after their RocksDB write, while still
//! holding the partition lock, so events leave in `_seq` order; a
//! subscription registers under the same lock before its initial rows are
//! read, so nothing committed after the reported `seq` is missed or
//! delivered twice. Routing looks up `(table, partition)` directly: the cost
//! of a write does not grow with other users' subscriptions.

use std::borrow::Cow;
use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicI64, Ordering};

use datafusion::arrow::array::{Array, AsArray, RecordBatch};
use datafusion::arrow::datatypes::SchemaRef;
use datafusion::common::DataFusionError;
use datafusion::common::tree_node::{Transformed, TreeNode};
use datafusion::logical_expr::Volatility;
use datafusion::physical_expr::ScalarFunctionExpr;
use datafusion::physical_expr::expressions::Column;
use datafusion::physical_plan::PhysicalExpr;
use parking_lot::RwLock;
use tokio::sync::mpsc;

use crate::error::Result;
use crate::json::{JsonRow, batches_to_rows};
use crate::table::keys::Scope;
use crate::table::row::{Change, StoredRow, rows_to_batch};
use crate::table::{TableDef, TableId};

/// What happened to a row, as a subscription sees it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ChangeKind {
    Insert,
    Update,
    Delete,
}

impl ChangeKind {
    pub fn as_str(self) -> &'static str {
        match self {
            ChangeKind::Insert => "insert",
            ChangeKind::Update => "update",
            ChangeKind::Delete => "delete",
        }
    }
}

/// What a connection receives for its subscriptions.
#[derive(Debug, Clone)]
pub enum LiveEvent {
    /// A row change.
    Change(ChangeEvent),
    /// The subscription was ended by the server (`killed`, `table_dropped`).
    Ended {
        subscription_id: String,
        reason: &'static str,
    },
}

/// One change delivered to one subscription.
#[derive(Debug, Clone)]
pub struct ChangeEvent {
    /// The client's id of the subscription.
    pub subscription_id: String,
    pub kind: ChangeKind,
    pub seq: i64,
    /// The rows, shared by every subscription of the same shape (same
    /// table version, WHERE and columns): evaluated and encoded once.
    pub rows: Arc<ChangeRows>,
}

/// The rows of a change: new rows (insert, update), previous rows
/// (update, delete).
#[derive(Debug)]
pub struct ChangeRows {
    pub rows: Vec<JsonRow>,
    pub old_values: Vec<JsonRow>,
    /// [`ChangeRows::json_fields`], encoded on first use.
    encoded: std::sync::OnceLock<String>,
}

impl ChangeRows {
    pub fn new(rows: Vec<JsonRow>, old_values: Vec<JsonRow>) -> Self {
        ChangeRows {
            rows,
            old_values,
            encoded: std::sync::OnceLock::new(),
        }
    }

    /// `,"rows":[…],"old_values":[…]` (each only when not empty): the
    /// end of a `change` message, encoded once however many subscribers
    /// receive it.
    pub fn json_fields(&self) -> &str {
        self.encoded.get_or_init(|| {
            let mut out = String::new();
            for (name, rows) in [("rows", &self.rows), ("old_values", &self.old_values)] {
                if !rows.is_empty() {
                    out.push_str(&format!(
                        ",\"{name}\":{}",
                        serde_json::to_string(rows).unwrap_or_else(|_| "[]".into())
                    ));
                }
            }
            out
        })
    }
}

/// A registered subscription.
pub(crate) struct Subscription {
    pub live_id: String,
    pub subscription_id: String,
    pub table_id: TableId,
    pub scope: Scope,
    pub def: Arc<TableDef>,
    pub filter: Option<Arc<dyn PhysicalExpr>>,
    /// Indices into the table's full schema.
    pub projection: Vec<usize>,
    pub projected_schema: SchemaRef,
    pub sender: mpsc::Sender<LiveEvent>,
    /// Set when the connection's queue was full: the connection must close.
    pub overflowed: Arc<AtomicBool>,
    /// Changes delivered so far.
    pub changes: AtomicI64,
    /// Time of the last delivered change, microseconds (0: none yet).
    pub last_change: AtomicI64,
    /// Owner of the subscription.
    pub user_id: String,
    /// Subscriptions with the same shape get the same events (see
    /// [`shape_of`]).
    pub shape: String,
}

/// What decides a subscription's events for a change: the table version
/// its rows are read in, its WHERE and its columns — and its owner, when
/// the WHERE calls a function that is not immutable (`CURRENT_USER()`,
/// `random()`): those are evaluated per subscription.
pub(crate) fn shape_of(
    def: &TableDef,
    filter: Option<&Arc<dyn PhysicalExpr>>,
    projection: &[usize],
    user_id: &str,
) -> String {
    let per_caller = filter.is_some_and(|f| {
        f.exists(|e| {
            Ok(e.downcast_ref::<ScalarFunctionExpr>().is_some_and(|call| {
                call.fun().signature().volatility != Volatility::Immutable
                    || call.name().eq_ignore_ascii_case("current_user")
            }))
        })
        .unwrap_or(true)
    });
    let filter = filter.map(|f| f.to_string()).unwrap_or_default();
    let owner = if per_caller { user_id } else { "" };
    format!("{}|{filter}|{projection:?}|{owner}", def.version)
}

impl Subscription {
    /// This subscription over a newer definition of its table, or `None`
    /// when it can no longer run as written: its WHERE uses a column that
    /// was dropped, renamed or changed type, or its column list names one
    /// that was dropped or renamed. A subscription that selected every
    /// column (`SELECT *`) selects every column of the new version.
    pub(crate) fn altered(&self, def: &TableDef) -> Option<Subscription> {
        let old_schema = self.def.arrow_schema();
        let new_schema = def.arrow_schema();
        // The same column in the new schema, if it kept its name (and,
        // when `same_type`, its type).
        let moved = |index: usize, same_type: bool| -> Option<usize> {
            match self.def.columns.get(index) {
                Some(old) => {
                    let new = def.columns.iter().position(|c| c.id == old.id)?;
                    let kept = def.columns[new].name == old.name
                        && (!same_type || def.columns[new].ty == old.ty);
                    kept.then_some(new)
                }
                None => new_schema.index_of(old_schema.field(index).name()).ok(),
            }
        };
        let every_column = self.projection.len() == old_schema.fields().len()
            && self.projection.iter().enumerate().all(|(i, &p)| i == p);
        let projection: Vec<usize> = if every_column {
            (0..new_schema.fields().len()).collect()
        } else {
            self.projection
                .iter()
                .map(|&p| moved(p, false))
                .collect::<Option<_>>()?
        };
        let filter = match &self.filter {
            Some(filter) => {
                let rewritten = filter.clone().transform(|expr| {
                    let Some(index) = expr.downcast_ref::<Column>().map(Column::index) else {
                        return Ok(Transformed::no(expr));
                    };
                    let new = moved(index, true)
                        .ok_or_else(|| DataFusionError::Plan(format!("column {index} is gone")))?;
                    let column: Arc<dyn PhysicalExpr> =
                        Arc::new(Column::new(new_schema.field(new).name(), new));
                    Ok(Transformed::yes(column))
                });
                Some(rewritten.ok()?.data)
            }
            None => None,
        };
        let def = Arc::new(def.clone());
        Some(Subscription {
            shape: shape_of(&def, filter.as_ref(), &projection, &self.user_id),
            live_id: self.live_id.clone(),
            subscription_id: self.subscription_id.clone(),
            table_id: self.table_id.clone(),
            scope: self.scope.clone(),
            def,
            filter,
            projected_schema: Arc::new(new_schema.project(&projection).ok()?),
            projection,
            sender: self.sender.clone(),
            overflowed: self.overflowed.clone(),
            changes: AtomicI64::new(self.changes.load(Ordering::Relaxed)),
            last_change: AtomicI64::new(self.last_change.load(Ordering::Relaxed)),
            user_id: self.user_id.clone(),
        })
    }

    /// Tells the connection this subscription is over. If its queue is
    /// full the connection is closed as a slow consumer anyway.
    pub(crate) fn end(&self, reason: &'static str) {
        let event = LiveEvent::Ended {
            subscription_id: self.subscription_id.clone(),
            reason,
        };
        if self.sender.try_send(event).is_err() {
            self.overflowed.store(true, Ordering::Relaxed);
        }
    }
}

impl std::fmt::Debug for Subscription {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Subscription({} on {})", self.live_id, self.table_id)
    }
}

type PartitionKey = (TableId, Scope);

#[derive(Debug, Default)]
pub(crate) struct LiveRouter {
    by_partition: RwLock<HashMap<PartitionKey, Vec<Arc<Subscription>>>>,
    by_id: RwLock<HashMap<String, Arc<Subscription>>>,
}

impl LiveRouter {
    pub(crate) fn register(&self, subscription: Arc<Subscription>) {
        let key = (subscription.table_id.clone(), subscription.scope.clone());
        self.by_partition
            .write()
            .entry(key)
            .or_default()
            .push(subscription.clone());
        self.by_id
            .write()
            .insert(subscription.live_id.clone(), subscription);
    }

    /// Puts `subscription` in the place of the one with its live id (after
    /// an ALTER TABLE), if that one is still registered.
    pub(crate) fn replace(&self, subscription: Arc<Subscription>) {
        let key = (subscription.table_id.clone(), subscription.scope.clone());
        let mut by_id = self.by_id.write();
        let Some(slot) = by_id.get_mut(&subscription.live_id) else {
            return;
        };
        *slot = subscription.clone();
        if let Some(list) = self.by_partition.write().get_mut(&key)
            && let Some(slot) = list.iter_mut().find(|s| s.live_id == subscription.live_id)
        {
            *slot = subscription;
        }
    }

    /// Removes a subscription; returns it if it existed.
    pub(crate) fn unregister(&self, live_id: &str) -> Option<Arc<Subscription>> {
        let subscription = self.by_id.write().remove(live_id)?;
        let key = (subscription.table_id.clone(), subscription.scope.clone());
        let mut partitions = self.by_partition.write();
        if let Some(list) = partitions.get_mut(&key) {
            list.retain(|s| s.live_id != live_id);
            if list.is_empty() {
                partitions.remove(&key);
            }
        }
        Some(subscription)
    }

    pub(crate) fn get(&self, live_id: &str) -> Option<Arc<Subscription>> {
        self.by_id.read().get(live_id).cloned()
    }

    /// Subscriptions registered now.
    pub(crate) fn count(&self) -> usize {
        self.by_id.read().len()
    }

    /// Every subscription of a user (for DROP USER and revocation).
    pub(crate) fn of_user(&self, user_id: &str) -> Vec<Arc<Subscription>> {
        self.by_id
            .read()
            .values()
            .filter(|s| s.user_id == user_id)
            .cloned()
            .collect()
    }

    /// Live ids of every subscription on a table (for DROP TABLE).
    pub(crate) fn on_table(&self, table_id: &TableId) -> Vec<Arc<Subscription>> {
        self.by_id
            .read()
            .values()
            .filter(|s| &s.table_id == table_id)
            .cloned()
            .collect()
    }

    /// Whether a partition has any subscription (an ephemeral STREAM
    /// table keeps events only then).
    pub(crate) fn has_subscribers(&self, table_id: &TableId, scope: &Scope) -> bool {
        self.by_partition
            .read()
            .contains_key(&(table_id.clone(), scope.clone()))
    }

    /// Routes committed changes of one partition to its subscriptions.
    pub(crate) fn publish(&self, def: &TableDef, scope: &Scope, changes: &[Change]) {
        if changes.is_empty() {
            return;
        }
        let subscriptions = match self
            .by_partition
            .read()
            .get(&(def.table_id(), scope.clone()))
        {
            Some(list) => list.clone(),
            None => return,
        };
        // Events of one shape, computed for its first subscription (kept
        // only when another subscription may share them).
        let shared = subscriptions.len() > 1;
        let mut by_shape: HashMap<String, Vec<ChangeEvent>> = HashMap::new();
        let mut batches = ChangeBatches::default();
        for mut subscription in subscriptions {
            if subscription.overflowed.load(Ordering::Relaxed) {
                continue;
            }
            if subscription.def.version < def.version {
                // Registered while an ALTER TABLE went on: follow it now.
                match subscription.altered(def) {
                    Some(altered) => {
                        subscription = Arc::new(altered);
                        self.replace(subscription.clone());
                    }
                    None => {
                        self.unregister(&subscription.live_id);
                        subscription.end("schema_changed");
                        continue;
                    }
                }
            }
            let events = match by_shape.get(&subscription.shape) {
                Some(events) => Ok(events.clone()),
                None => events_for(&subscription, changes, &mut batches).inspect(|events| {
                    if shared {
                        by_shape.insert(subscription.shape.clone(), events.clone());
                    }
                }),
            };
            match events {
                Ok(events) => {
                    for mut event in events {
                        event
                            .subscription_id
                            .clone_from(&subscription.subscription_id);
                        if subscription
                            .sender
                            .try_send(LiveEvent::Change(event))
                            .is_err()
                        {
                            subscription.overflowed.store(true, Ordering::Relaxed);
                            break;
                        }
                        subscription.changes.fetch_add(1, Ordering::Relaxed);
                        subscription
                            .last_change
                            .store(kalamdb_model::Timestamp::now().0, Ordering::Relaxed);
                    }
                }
                Err(e) => {
                    tracing::warn!("live query {} skipped a change: {e}", subscription.live_id)
                }
            }
        }
    }
}

/// A row in the subscription's schema version (rows committed under an
/// older one are upgraded).
fn in_version<'a>(subscription: &Subscription, row: &'a StoredRow) -> Result<Cow<'a, StoredRow>> {
    if row.version == subscription.def.version {
        return Ok(Cow::Borrowed(row));
    }
    let mut row = row.clone();
    subscription.def.upgrade(&mut row)?;
    Ok(Cow::Owned(row))
}

/// Which rows match the subscription's filter.
pub(crate) fn matches(subscription: &Subscription, rows: &[&StoredRow]) -> Result<Vec<bool>> {
    if subscription.filter.is_none() {
        return Ok(vec![true; rows.len()]);
    }
    filtered(subscription, &row_batch(subscription, rows)?)
}

/// Rows in the subscription's table version, as a batch of every column.
fn row_batch(subscription: &Subscription, rows: &[&StoredRow]) -> Result<RecordBatch> {
    let def = &subscription.def;
    let schema = def.arrow_schema();
    let all: Vec<usize> = (0..schema.fields().len()).collect();
    let owned: Vec<StoredRow> = rows
        .iter()
        .map(|r| in_version(subscription, r).map(Cow::into_owned))
        .collect::<Result<_>>()?;
    rows_to_batch(def, &owned, schema, &all)
}

/// Which rows of a [`row_batch`] match the subscription's filter.
fn filtered(subscription: &Subscription, batch: &RecordBatch) -> Result<Vec<bool>> {
    let Some(filter) = &subscription.filter else {
        return Ok(vec![true; batch.num_rows()]);
    };
    let result = filter
        .evaluate(batch)
        .and_then(|v| v.into_array(batch.num_rows()))
        .map_err(crate::error::EngineError::from)?;
    let booleans = result.as_boolean_opt().ok_or_else(|| {
        crate::error::EngineError::Internal("live query filter is not boolean".into())
    })?;
    Ok((0..booleans.len())
        .map(|i| booleans.is_valid(i) && booleans.value(i))
        .collect())
}

/// The new and old rows of one publish as batches, built once per table
/// version for every shape whose filter reads them (a partition with a
/// hundred different WHEREs evaluates a hundred filters on one batch).
#[derive(Default)]
struct ChangeBatches {
    by_version: HashMap<i32, (RecordBatch, RecordBatch)>,
}

impl ChangeBatches {
    fn get(
        &mut self,
        subscription: &Subscription,
        changes: &[Change],
    ) -> Result<&(RecordBatch, RecordBatch)> {
        use std::collections::hash_map::Entry;
        Ok(match self.by_version.entry(subscription.def.version) {
            Entry::Occupied(built) => built.into_mut(),
            Entry::Vacant(slot) => {
                let news: Vec<&StoredRow> = changes.iter().map(|c| &c.new).collect();
                let olds: Vec<&StoredRow> = changes.iter().filter_map(|c| c.old.as_ref()).collect();
                slot.insert((
                    row_batch(subscription, &news)?,
                    row_batch(subscription, &olds)?,
                ))
            }
        })
    }
}

/// A row version projected to the subscription's columns.
pub(crate) fn project(subscription: &Subscription, row: &StoredRow) -> Result<JsonRow> {
    let row = in_version(subscription, row)?;
    let batch = rows_to_batch(
        &subscription.def,
        std::slice::from_ref(row.as_ref()),
        subscription.projected_schema.clone(),
        &subscription.projection,
    )?;
    Ok(batches_to_rows(&[batch])?.remove(0))
}

/// The events one subscription gets for a set of changes. A row updated out
/// of the filter is a delete, one updated into it an insert.
fn events_for(
    subscription: &Subscription,
    changes: &[Change],
    batches: &mut ChangeBatches,
) -> Result<Vec<ChangeEvent>> {
    let (new_match, old_match_list) = match subscription.filter {
        None => {
            let olds = changes.iter().filter(|c| c.old.is_some()).count();
            (vec![true; changes.len()], vec![true; olds])
        }
        Some(_) => {
            let (news, olds) = batches.get(subscription, changes)?;
            (filtered(subscription, news)?, filtered(subscription, olds)?)
        }
    };
    let mut old_match = old_match_list.into_iter();
    let mut events = Vec::new();
    for (change, new_in) in changes.iter().zip(new_match) {
        let old_in = change
            .old
            .as_ref()
            .map(|_| old_match.next().unwrap_or(false))
            .unwrap_or(false);
        let new_in = new_in && !change.new.deleted;
        let kind = match (old_in, new_in) {
            (false, true) => ChangeKind::Insert,
            (true, true) => ChangeKind::Update,
            (true, false) => ChangeKind::Delete,
            (false, false) => continue,
        };
        let rows = if new_in {
            vec![project(subscription, &change.new)?]
        } else {
            Vec::new()
        };
        let old_values = match (&change.old, old_in) {
            (Some(old), true) => vec![project(subscription, old)?],
            _ => Vec::new(),
        };
        events.push(ChangeEvent {
            subscription_id: subscription.subscription_id.clone(),
            kind,
            seq: change.new.seq,
            rows: Arc::new(ChangeRows::new(rows, old_values)),
        });
    }
    Ok(events)
}
