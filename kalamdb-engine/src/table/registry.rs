//! Every table's definition, and the reads and atomic writes of its rows.
//!
//! A statement's writes go to RocksDB in one write batch together with the
//! `_seq` high-water mark. Writers of one partition (one user of a USER
//! table, or a SHARED table) are serialised by a striped lock so that a
//! duplicate-key check or a read-modify-write cannot interleave with another
//! writer of the same partition; other partitions proceed in parallel.

use std::collections::HashMap;
use std::hash::{Hash, Hasher};
use std::sync::Arc;

use parking_lot::RwLock;
use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::def::{ColumnSpec, FlushPolicy, TableDef};
use super::keys::Scope;
use super::row::StoredRow;
use crate::cold::{ColdTier, manifest};
use crate::error::{EngineError, Result};
use crate::ids::{SeqGen, Snowflake};
use crate::live::{Change, LiveRouter};
use crate::storage::{Storage, WriteOp};
use crate::system::SystemStores;

/// Column family and key of the persisted `_seq` high-water mark.
const META_CF: &str = "default";
const SEQ_HIGH_WATER_KEY: &[u8] = b"seq_high_water";
const LOCK_STRIPES: usize = 256;

/// What `system.table_schemas.arrow_schema` holds for USER/SHARED/STREAM tables.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct SchemaDoc {
    pub columns: Vec<ColumnSpec>,
    pub primary_key: String,
}

/// A row to write: its primary key bytes, cells and whether it is a tombstone.
#[derive(Debug, Clone)]
pub struct RowWrite {
    pub pk: Vec<u8>,
    pub values: Vec<Value>,
    pub deleted: bool,
    /// The live version this write replaces, for live-query events.
    pub old: Option<StoredRow>,
}

/// A stored row version as it is in RocksDB.
#[derive(Debug, Clone)]
pub struct RawRow {
    /// The full RocksDB key.
    pub key: Vec<u8>,
    /// The primary key bytes (the key without the partition prefix).
    pub pk: Vec<u8>,
    /// The encoded [`StoredRow`].
    pub value: Vec<u8>,
}

pub struct TableRegistry {
    storage: Arc<Storage>,
    defs: RwLock<HashMap<String, Arc<TableDef>>>,
    seq: SeqGen,
    snowflake: Snowflake,
    stripes: Vec<tokio::sync::Mutex<()>>,
    /// Subscriptions fed by every commit.
    pub live: Arc<LiveRouter>,
    /// Parquet files: locations, manifest, flush requests.
    pub cold: ColdTier,
}

impl std::fmt::Debug for TableRegistry {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TableRegistry")
            .field("tables", &self.defs.read().len())
            .finish()
    }
}

/// `schema_id` of a table's schema version.
pub fn schema_id(table_id: &str, version: i32) -> String {
    format!("{table_id}#v{version:06}")
}

impl TableRegistry {
    /// Loads every table's current definition from the system tables.
    pub fn open(storage: Arc<Storage>, stores: &SystemStores, cold: ColdTier) -> Result<Self> {
        let high_water = storage
            .get(META_CF, SEQ_HIGH_WATER_KEY)?
            .and_then(|b| <[u8; 8]>::try_from(b.as_slice()).ok())
            .map(i64::from_be_bytes)
            .unwrap_or(0);
        let mut defs = HashMap::new();
        for table in stores.tables.scan_all()? {
            let id = schema_id(&table.table_id, table.schema_version);
            let schema = stores.table_schemas.get(&id)?.ok_or_else(|| {
                EngineError::Internal(format!(
                    "schema {id} of table {} is missing",
                    table.table_id
                ))
            })?;
            let doc: SchemaDoc = serde_json::from_str(&schema.arrow_schema)
                .map_err(|e| EngineError::Internal(format!("corrupt schema {id}: {e}")))?;
            let def = table_def(&table, doc)?;
            defs.insert(table.table_id.clone(), Arc::new(def));
        }
        // Files a previous run retired but had not deleted yet.
        cold.retired
            .restore(crate::cold::retire::recorded(&storage)?);
        Ok(TableRegistry {
            storage,
            defs: RwLock::new(defs),
            seq: SeqGen::new(high_water),
            snowflake: Snowflake::new(1),
            stripes: (0..LOCK_STRIPES)
                .map(|_| tokio::sync::Mutex::new(()))
                .collect(),
            live: Arc::new(LiveRouter::default()),
            cold,
        })
    }

    pub fn get(&self, namespace: &str, name: &str) -> Option<Arc<TableDef>> {
        self.defs
            .read()
            .get(&format!("{namespace}.{name}"))
            .cloned()
    }

    pub fn table_names(&self, namespace: &str) -> Vec<String> {
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
    pub fn all(&self) -> Vec<Arc<TableDef>> {
        self.defs.read().values().cloned().collect()
    }

    pub(crate) fn register(&self, def: TableDef) {
        self.defs.write().insert(def.table_id(), Arc::new(def));
    }

    pub(crate) fn forget(&self, table_id: &str) {
        self.defs.write().remove(table_id);
    }

    pub fn storage(&self) -> &Arc<Storage> {
        &self.storage
    }

    /// A new snowflake id.
    pub fn snowflake_id(&self) -> i64 {
        self.snowflake.next()
    }

    /// The last `_seq` handed out.
    pub fn current_seq(&self) -> i64 {
        self.seq.current()
    }

    /// Serialises writers of one partition.
    pub async fn lock_partition(
        &self,
        def: &TableDef,
        scope: &Scope,
    ) -> tokio::sync::MutexGuard<'_, ()> {
        let mut hasher = std::collections::hash_map::DefaultHasher::new();
        def.table_id().hash(&mut hasher);
        scope.hash(&mut hasher);
        let stripe = (hasher.finish() as usize) % self.stripes.len();
        self.stripes[stripe].lock().await
    }

    /// Every hot version of a partition with its primary key bytes.
    pub fn scan_keyed(&self, def: &TableDef, scope: &Scope) -> Result<Vec<(Vec<u8>, StoredRow)>> {
        self.scan_raw(def, scope)?
            .into_iter()
            .map(|raw| Ok((raw.pk, StoredRow::decode(&raw.value)?)))
            .collect()
    }

    /// Every hot version of a partition, encoded, in key order.
    pub fn scan_raw(&self, def: &TableDef, scope: &Scope) -> Result<Vec<RawRow>> {
        let prefix = scope.prefix();
        Ok(self
            .storage
            .scan_prefix(&def.column_family(), &prefix)?
            .into_iter()
            .map(|(key, value)| RawRow {
                pk: key[prefix.len()..].to_vec(),
                key,
                value,
            })
            .collect())
    }

    /// The stored version (live or tombstone) of each primary key.
    pub fn get_rows(
        &self,
        def: &TableDef,
        scope: &Scope,
        pks: &[Vec<u8>],
    ) -> Result<Vec<Option<StoredRow>>> {
        let family = def.column_family();
        pks.iter()
            .map(|pk| match self.storage.get(&family, &scope.row_key(pk))? {
                Some(bytes) => StoredRow::decode(&bytes).map(Some),
                None => Ok(None),
            })
            .collect()
    }

    /// Writes the rows of one statement atomically, each with a new `_seq`
    /// and the same commit time, then hands the changes to the live-query
    /// router. Call with the partition lock held. Returns the new versions.
    pub fn commit(
        &self,
        def: &TableDef,
        scope: &Scope,
        writes: Vec<RowWrite>,
    ) -> Result<Vec<StoredRow>> {
        if writes.is_empty() {
            return Ok(Vec::new());
        }
        let family = def.column_family();
        let updated = kalamdb_model::Timestamp::now().0;
        let mut ops = Vec::with_capacity(writes.len() + 1);
        let mut changes = Vec::with_capacity(writes.len());
        for write in writes {
            let row = StoredRow {
                seq: self.seq.next(),
                updated,
                deleted: write.deleted,
                values: write.values,
            };
            ops.push(WriteOp::Put {
                cf: family.clone(),
                key: scope.row_key(&write.pk),
                value: row.encode()?,
            });
            changes.push(Change {
                old: write.old,
                new: row,
            });
        }
        let high_water = changes.last().map(|c| c.new.seq).unwrap_or_default();
        ops.push(WriteOp::Put {
            cf: META_CF.into(),
            key: SEQ_HIGH_WATER_KEY.to_vec(),
            value: high_water.to_be_bytes().to_vec(),
        });
        // Rows written since the last flush, for FLUSH POLICY ROWS.
        let table_id = def.table_id();
        let unflushed = manifest::counter(&self.storage, &table_id, scope)? + changes.len() as u64;
        ops.push(manifest::counter_op(&table_id, scope, unflushed));
        self.storage.write(ops)?;
        self.live.publish(def, scope, &changes);
        if let (Some(rows), _) = self.cold.policy(def)
            && unflushed >= rows
        {
            self.cold.request_flush(def, scope);
        }
        Ok(changes.into_iter().map(|c| c.new).collect())
    }
}

/// Builds the in-memory definition from a `system.tables` row and its schema.
pub fn table_def(table: &kalamdb_model::Table, doc: SchemaDoc) -> Result<TableDef> {
    let kind = table.table_type;
    let primary_key = doc
        .columns
        .iter()
        .position(|c| c.name == doc.primary_key)
        .ok_or_else(|| {
            EngineError::Internal(format!("primary key of {} is missing", table.table_id))
        })?;
    let flush_policy: FlushPolicy = table
        .flush_policy
        .as_deref()
        .and_then(|p| serde_json::from_str(p).ok())
        .unwrap_or_default();
    Ok(TableDef {
        namespace: table.namespace.clone(),
        name: table.table_name.clone(),
        kind,
        columns: doc.columns,
        primary_key,
        version: table.schema_version,
        storage_location: table.storage_location.clone(),
        flush_policy,
        deleted_retention_hours: table.deleted_retention_hours,
    })
}
