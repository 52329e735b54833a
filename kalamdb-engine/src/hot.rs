//! The RocksDB hot tier: a partition's row versions, their reads and their
//! atomic commits.
//!
//! A statement's writes go to RocksDB in one write batch together with the
//! partition's flush counter. `_seq` values never repeat across restarts:
//! before one is handed out past the persisted high-water mark, the mark
//! moves a minute ahead with a synced write (about once a minute, since
//! `_seq` follows the clock in microseconds). Writers of one
//! partition (one user of a USER table, or a SHARED table) are serialised
//! by a striped lock so that a duplicate-key check or a read-modify-write
//! cannot interleave with another writer of the same partition; other
//! partitions proceed in parallel. A commit returns its changes: the
//! caller, still holding the partition lock, publishes them.

use std::collections::HashMap;
use std::hash::{Hash, Hasher};
use std::sync::Arc;
use std::sync::atomic::{AtomicI64, Ordering};

use serde_json::Value;

use crate::error::Result;
use crate::ids::{SeqGen, Snowflake};
use crate::keyspace::{Counters, Keyspace, Rows, SeqHighWater};
use crate::storage::{Durability, Storage, WriteOp};
use crate::table::keys::Scope;
use crate::table::row::{Change, StoredRow};
use crate::table::{TableDef, TableId};
use kalamdb_model::StorageKey;

const LOCK_STRIPES: usize = 256;
/// How far ahead of the `_seq` it covers the high-water mark is written.
const RESERVE_AHEAD_MICROS: i64 = 60_000_000;

/// A row to write: its primary key bytes, cells and whether it is a tombstone.
#[derive(Debug, Clone)]
pub(crate) struct RowWrite {
    pub pk: Vec<u8>,
    pub values: Vec<Value>,
    pub deleted: bool,
    /// The live version this write replaces, for live-query events.
    pub old: Option<StoredRow>,
}

/// A stored row version as it is in RocksDB.
#[derive(Debug, Clone)]
pub(crate) struct RawRow {
    /// The full RocksDB key.
    pub key: Vec<u8>,
    /// The primary key bytes (the key without the partition prefix).
    pub pk: Vec<u8>,
    /// The encoded [`StoredRow`].
    pub value: Vec<u8>,
}

/// What one commit wrote.
#[derive(Debug)]
pub(crate) struct Commit {
    /// Each written version with the one it replaced.
    pub changes: Vec<Change>,
    /// Rows written to the partition since its last flush, this commit's
    /// included.
    pub unflushed: u64,
}

pub(crate) struct HotTier {
    storage: Arc<Storage>,
    seq: SeqGen,
    /// The persisted high-water mark: no `_seq` above it was handed out.
    /// Read without a lock on every write; moved under `reserving`.
    reserved: AtomicI64,
    reserving: parking_lot::Mutex<()>,
    snowflake: Snowflake,
    stripes: Vec<tokio::sync::Mutex<()>>,
}

impl std::fmt::Debug for HotTier {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HotTier").finish()
    }
}

/// A stored row brought to `def`'s schema version.
pub(crate) fn decode(def: &TableDef, bytes: &[u8]) -> Result<StoredRow> {
    let mut row = StoredRow::decode(bytes)?;
    def.upgrade(&mut row)?;
    Ok(row)
}

/// The keyspace of a table's rows.
pub(crate) fn rows(def: &TableDef) -> Rows {
    Rows::new(def.column_family())
}

impl HotTier {
    /// Continues `_seq` after the persisted high-water mark.
    pub(crate) fn open(storage: Arc<Storage>) -> Result<Self> {
        let high_water = SeqHighWater.get(&storage, ())?.unwrap_or(0);
        Ok(HotTier {
            storage,
            seq: SeqGen::new(high_water),
            reserved: AtomicI64::new(high_water),
            reserving: parking_lot::Mutex::new(()),
            snowflake: Snowflake::new(1),
            stripes: (0..LOCK_STRIPES)
                .map(|_| tokio::sync::Mutex::new(()))
                .collect(),
        })
    }

    pub(crate) fn storage(&self) -> &Arc<Storage> {
        &self.storage
    }

    /// A new snowflake id.
    pub(crate) fn snowflake_id(&self) -> i64 {
        self.snowflake.next()
    }

    /// A new `_seq`, covered by the persisted high-water mark (the write
    /// path takes no lock unless the mark must move, about once a minute).
    pub(crate) fn next_seq(&self) -> Result<i64> {
        let seq = self.seq.next();
        if seq <= self.reserved.load(Ordering::Acquire) {
            return Ok(seq);
        }
        let _reserving = self.reserving.lock();
        if seq > self.reserved.load(Ordering::Acquire) {
            let mark = seq.saturating_add(RESERVE_AHEAD_MICROS);
            self.storage
                .write_with(vec![SeqHighWater.put_op((), &mark)?], Durability::Synced)?;
            self.reserved.store(mark, Ordering::Release);
        }
        Ok(seq)
    }

    /// Makes every later `_seq` larger than `seq` (rows restored from a
    /// backup keep theirs). Handing out the next one moves the persisted
    /// high-water mark past `seq`, so a restart continues above it too.
    pub(crate) fn advance_seq(&self, seq: i64) -> Result<()> {
        if self.seq.current() < seq {
            self.seq.raise(seq);
            self.next_seq()?;
        }
        Ok(())
    }

    /// The last `_seq` handed out.
    pub(crate) fn current_seq(&self) -> i64 {
        self.seq.current()
    }

    /// Serialises writers of one partition.
    pub(crate) async fn lock_partition(
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

    /// Every hot version of a partition with its primary key bytes, in
    /// `def`'s schema version.
    pub(crate) fn scan_keyed(
        &self,
        def: &TableDef,
        scope: &Scope,
    ) -> Result<Vec<(Vec<u8>, StoredRow)>> {
        self.scan_raw(def, scope)?
            .into_iter()
            .map(|raw| Ok((raw.pk, decode(def, &raw.value)?)))
            .collect()
    }

    /// Every hot version of a partition, encoded, in key order.
    pub(crate) fn scan_raw(&self, def: &TableDef, scope: &Scope) -> Result<Vec<RawRow>> {
        let prefix = scope.prefix();
        Ok(self
            .storage
            .scan_prefix(rows(def).family(), &prefix)?
            .into_iter()
            .map(|(key, value)| RawRow {
                pk: key[prefix.len()..].to_vec(),
                key,
                value,
            })
            .collect())
    }

    /// The stored version (live or tombstone) of each primary key, in
    /// `def`'s schema version.
    pub(crate) fn get_rows(
        &self,
        def: &TableDef,
        scope: &Scope,
        pks: &[Vec<u8>],
    ) -> Result<Vec<Option<StoredRow>>> {
        let rows = rows(def);
        pks.iter()
            .map(|pk| {
                let mut row = rows.get(&self.storage, (scope, pk))?;
                if let Some(row) = &mut row {
                    def.upgrade(row)?;
                }
                Ok(row)
            })
            .collect()
    }

    /// Writes the rows of one statement atomically, each with a new `_seq`
    /// and the same commit time. Call with the partition lock held.
    pub(crate) fn commit(
        &self,
        def: &TableDef,
        scope: &Scope,
        writes: Vec<RowWrite>,
    ) -> Result<Commit> {
        let table_id = def.table_id();
        if writes.is_empty() {
            return Ok(Commit {
                changes: Vec::new(),
                unflushed: self.unflushed(&table_id, scope)?,
            });
        }
        let rows = rows(def);
        let rules = def.rules();
        let updated = kalamdb_model::Timestamp::now().0;
        let mut ops = Vec::with_capacity(writes.len() + 1);
        let mut changes = Vec::with_capacity(writes.len());
        for write in writes {
            let row = StoredRow {
                seq: self.next_seq()?,
                updated,
                deleted: write.deleted,
                version: def.version,
                values: write.values,
            };
            let key = if rules.keyed_by_sequence() {
                row.seq.storage_key()
            } else {
                write.pk
            };
            ops.push(rows.put_op((scope, &key), &row)?);
            changes.push(Change {
                old: write.old,
                new: row,
            });
        }
        if !rules.flushes() {
            // Events: nothing to count for a flush, and no log (see
            // `stream.rs` for what survives a restart).
            self.storage.write_with(ops, Durability::Unlogged)?;
            return Ok(Commit {
                changes,
                unflushed: 0,
            });
        }
        let unflushed = self.unflushed(&table_id, scope)? + changes.len() as u64;
        ops.push(Counters.set_op(&table_id, scope, unflushed));
        self.storage.write(ops)?;
        Ok(Commit { changes, unflushed })
    }

    /// Rows written to a partition since its last flush.
    pub(crate) fn unflushed(&self, table_id: &TableId, scope: &Scope) -> Result<u64> {
        Ok(Counters.get(&self.storage, (table_id, scope))?.unwrap_or(0))
    }

    /// Every partition of a table with rows written since its last flush.
    pub(crate) fn pending_partitions(&self, def: &TableDef) -> Result<Vec<Scope>> {
        let table_id = def.table_id();
        Ok(Counters
            .scan(&self.storage, &Counters.table_prefix(&table_id))?
            .into_iter()
            .filter(|(_, count)| *count > 0)
            .filter_map(|(key, _)| Counters.partition_of(&table_id, &key))
            .collect())
    }

    /// Operations removing every flush counter of a table.
    pub(crate) fn drop_counter_ops(&self, table_id: &TableId) -> Result<Vec<WriteOp>> {
        Ok(self
            .storage
            .scan_prefix(Counters.family(), &Counters.table_prefix(table_id))?
            .into_iter()
            .map(|(key, _)| Counters.delete_raw_op(key))
            .collect())
    }

    /// Tombstones of every partition of a table committed at or before
    /// `cutoff` (µs).
    pub(crate) fn expired_tombstones(
        &self,
        def: &TableDef,
        cutoff: i64,
    ) -> Result<HashMap<Scope, Vec<RawRow>>> {
        let mut by_scope: HashMap<Scope, Vec<RawRow>> = HashMap::new();
        for (key, value) in self.storage.scan_prefix(rows(def).family(), &[])? {
            let row = StoredRow::decode(&value)?;
            if !(row.deleted && row.updated <= cutoff) {
                continue;
            }
            let (scope, pk) = crate::table::keys::split_key(def, &key)?;
            by_scope
                .entry(scope)
                .or_default()
                .push(RawRow { key, pk, value });
        }
        Ok(by_scope)
    }

    /// Deletes each of `versions` unless a newer version replaced it since
    /// it was read. Call with the partition lock held. Returns how many.
    pub(crate) fn delete_if_unchanged(&self, def: &TableDef, versions: &[RawRow]) -> Result<u64> {
        let rows = rows(def);
        let keys: Vec<&[u8]> = versions.iter().map(|raw| raw.key.as_slice()).collect();
        let current = self.storage.multi_get(rows.family(), &keys)?;
        let ops: Vec<WriteOp> = versions
            .iter()
            .zip(current)
            .filter(|(raw, current)| current.as_deref() == Some(raw.value.as_slice()))
            .map(|(raw, _)| rows.delete_raw_op(raw.key.clone()))
            .collect();
        let count = ops.len() as u64;
        if !ops.is_empty() {
            self.storage.write(ops)?;
        }
        Ok(count)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Restored rows keep their `_seq`: later ones, also after a restart,
    /// come after them even when they are far ahead of the clock.
    #[test]
    fn advance_seq_survives_a_restart() {
        let dir = tempfile::tempdir().unwrap();
        let ahead = kalamdb_model::Timestamp::now().0 + 3_600_000_000;
        {
            let storage = Arc::new(Storage::open(dir.path(), &["default"]).unwrap());
            let hot = HotTier::open(storage).unwrap();
            hot.advance_seq(ahead).unwrap();
            assert!(hot.current_seq() >= ahead);
        }
        let storage = Arc::new(Storage::open(dir.path(), &["default"]).unwrap());
        let hot = HotTier::open(storage).unwrap();
        assert!(hot.next_seq().unwrap() > ahead);
    }
}
