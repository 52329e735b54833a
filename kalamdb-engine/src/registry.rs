//! Every table's current definition, and its tiers and subscriptions.
//!
//! [`TableRegistry::commit`] is the one write path: the hot tier writes the
//! rows, and the registry, still holding the partition lock, publishes the
//! changes to live queries and asks for a flush when the partition crossed
//! its `FLUSH POLICY ROWS`.

use std::collections::HashMap;
use std::sync::Arc;

use parking_lot::RwLock;

use crate::cold::ColdTier;
use crate::cold::manifest::ColdFile;
use crate::error::{EngineError, Result};
use crate::hot::{HotTier, RowWrite};
use crate::live::LiveRouter;
use crate::storage::{Storage, WriteOp};
use crate::stream::Streams;
use crate::system::SystemStores;
use crate::table::keys::Scope;
use crate::table::row::StoredRow;
use crate::table::{SchemaDoc, TableDef, TableId, schema_id, table_def};
use crate::tiers::Tiers;

pub(crate) struct TableRegistry {
    defs: RwLock<HashMap<TableId, Arc<TableDef>>>,
    /// Rows in RocksDB and Parquet.
    pub tiers: Tiers,
    /// Subscriptions fed by every commit.
    pub live: Arc<LiveRouter>,
    /// STREAM tables' bounds: retention, `max_buffer`, eviction marks.
    pub streams: Streams,
}

impl std::fmt::Debug for TableRegistry {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TableRegistry")
            .field("tables", &self.defs.read().len())
            .finish()
    }
}

/// Version `version` of a table's schema, from `system.table_schemas`.
pub(crate) fn schema_doc(stores: &SystemStores, table_id: &str, version: i32) -> Result<SchemaDoc> {
    let id = schema_id(table_id, version);
    let schema = stores.table_schemas.get(&id)?.ok_or_else(|| {
        EngineError::Internal(format!("schema {id} of table {table_id} is missing"))
    })?;
    serde_json::from_str(&schema.arrow_schema)
        .map_err(|e| EngineError::Internal(format!("corrupt schema {id}: {e}")))
}

impl TableRegistry {
    /// Loads every table's current definition from the system tables.
    pub(crate) fn open(
        storage: Arc<Storage>,
        stores: &SystemStores,
        cold: ColdTier,
    ) -> Result<Self> {
        let mut defs = HashMap::new();
        for table in stores.tables.scan_all()? {
            let docs = (1..=table.schema_version)
                .map(|version| schema_doc(stores, &table.table_id, version))
                .collect::<Result<Vec<_>>>()?;
            let def = table_def(&table, docs)?;
            defs.insert(TableId::of(&table), Arc::new(def));
        }
        let hot = HotTier::open(storage.clone())?;
        let streams = Streams::open(storage, hot.current_seq())?;
        Ok(TableRegistry {
            defs: RwLock::new(defs),
            tiers: Tiers {
                hot,
                cold: Arc::new(cold),
            },
            live: Arc::new(LiveRouter::default()),
            streams,
        })
    }

    pub(crate) fn get(&self, namespace: &str, name: &str) -> Option<Arc<TableDef>> {
        self.by_id(&TableId::new(namespace, name))
    }

    pub(crate) fn by_id(&self, table_id: &TableId) -> Option<Arc<TableDef>> {
        self.defs.read().get(table_id).cloned()
    }

    pub(crate) fn table_names(&self, namespace: &str) -> Vec<String> {
        let mut names: Vec<String> = self
            .defs
            .read()
            .values()
            .filter(|d| d.namespace == namespace)
            .map(|d| d.name.clone())
            .collect();
        names.sort();
        names
    }

    /// Every table's definition.
    pub(crate) fn all(&self) -> Vec<Arc<TableDef>> {
        self.defs.read().values().cloned().collect()
    }

    pub(crate) fn register(&self, def: TableDef) {
        self.defs.write().insert(def.table_id(), Arc::new(def));
    }

    pub(crate) fn forget(&self, table_id: &TableId) {
        self.defs.write().remove(table_id);
    }

    pub(crate) fn hot(&self) -> &HotTier {
        &self.tiers.hot
    }

    pub(crate) fn cold(&self) -> &Arc<ColdTier> {
        &self.tiers.cold
    }

    /// Writes the rows of one statement atomically (see [`HotTier::commit`]),
    /// then hands the changes to the live-query router and asks for a flush
    /// if the partition crossed its flush policy. Call with the partition
    /// lock held. Returns the new versions.
    pub(crate) fn commit(
        &self,
        def: &TableDef,
        scope: &Scope,
        writes: Vec<RowWrite>,
    ) -> Result<Vec<StoredRow>> {
        if writes.is_empty() {
            return Ok(Vec::new());
        }
        if def.stream.is_some_and(|s| s.ephemeral)
            && !self.live.has_subscribers(&def.table_id(), scope)
        {
            // Nobody listens: an ephemeral event is not kept at all. A
            // resume from before it must not pass over the gap.
            let seq = self.tiers.hot.next_seq()?;
            self.streams.mark_gap(def, scope, seq)?;
            return Ok(Vec::new());
        }
        // A write that replaces rows must have read them in the current
        // schema version: with an older one it would write back rows that
        // lack what an ALTER TABLE added. (A pure insert is fine: its row
        // records its version and reads upgrade it.)
        if writes.iter().any(|w| w.old.is_some())
            && self
                .by_id(&def.table_id())
                .is_some_and(|current| current.version != def.version)
        {
            return Err(EngineError::SchemaChanged(def.table_id().to_string()));
        }
        let commit = self.tiers.hot.commit(def, scope, writes)?;
        self.live.publish(def, scope, &commit.changes);
        if def.stream.is_some() {
            self.streams
                .after_commit(def, scope, commit.changes.len() as u64)?;
        }
        if let (Some(rows), _) = self.tiers.cold.policy(def)
            && commit.unflushed >= rows
        {
            self.tiers.cold.request_flush(def, scope);
        }
        Ok(commit.changes.into_iter().map(|c| c.new).collect())
    }

    /// The write-batch operations forgetting a dropped table's manifest and
    /// flush counters and retiring its files (exactly those its manifest
    /// lists: never a directory, which another table may share).
    pub(crate) fn drop_ops(&self, table_id: &TableId) -> Result<(Vec<WriteOp>, Vec<ColdFile>)> {
        let (mut ops, files) = self.tiers.cold.drop_cold_ops(table_id)?;
        ops.extend(self.tiers.hot.drop_counter_ops(table_id)?);
        ops.extend(self.streams.drop_ops(table_id)?);
        Ok((ops, files))
    }

    /// Deletes STREAM events past their table's retention.
    pub(crate) async fn sweep_streams(&self) -> Result<u64> {
        let mut removed = 0;
        for def in self.all().into_iter().filter(|d| d.stream.is_some()) {
            removed += self.streams.sweep(&self.tiers.hot, &def).await?;
        }
        Ok(removed)
    }

    /// At a clean stop: makes STREAM events durable (see `stream.rs`).
    pub(crate) fn persist_streams(&self) -> Result<()> {
        self.streams.persist(&self.all())
    }
}
