//! STREAM tables' buffers: each user's events in the table's own column
//! family, keyed by `_seq`, written without the write-ahead log (ADR 0005).
//!
//! A partition is bounded twice. By `retention`: reads skip events older
//! than it at once (`TableDef::stream`), and [`Streams::sweep`] deletes
//! them in the background every second. By `max_buffer`: a commit that
//! takes a partition past it deletes the oldest events in the same step.
//! Every eviction records the last `_seq` it removed ([`Evicted`]); a
//! resume from before it would miss events and is refused
//! (`RESUME_TOO_OLD`) instead of leaving a silent gap.
//!
//! What survives a restart: after a clean stop ([`Streams::persist`]
//! flushes the memtables and records it) every event still within
//! retention. After a crash, events since the last memtable flush may be
//! lost, so every resume from before the restart is refused.

use std::collections::HashMap;
use std::sync::Arc;

use parking_lot::Mutex;

use crate::error::Result;
use crate::hot::{self, HotTier};
use crate::keyspace::{Evicted, Keyspace, Markers};
use crate::storage::{Durability, Storage, Walk, WriteOp};
use crate::table::keys::Scope;
use crate::table::row::StoredRow;
use crate::table::{TableDef, TableId};

/// A stored key and its value.
type KeyValue = (Vec<u8>, Vec<u8>);

/// Set by a clean stop, removed at start.
const CLEAN_STOP: &str = "clean_stop";

pub(crate) struct Streams {
    storage: Arc<Storage>,
    /// Events each partition holds, once counted.
    counts: Mutex<HashMap<(TableId, Scope), u64>>,
    /// After a start that did not follow a clean stop: no resume from
    /// before this `_seq` (unlogged events written before may be lost).
    restart_floor: i64,
}

impl std::fmt::Debug for Streams {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Streams")
            .field("restart_floor", &self.restart_floor)
            .finish()
    }
}

impl Streams {
    /// `high_water` is the persisted `_seq` high-water mark: every event
    /// written before this start has a lower `_seq`.
    pub(crate) fn open(storage: Arc<Storage>, high_water: i64) -> Result<Self> {
        let clean = Markers.get(&storage, CLEAN_STOP)?.is_some();
        if clean {
            storage.write_with(vec![Markers.delete_op(CLEAN_STOP)], Durability::Synced)?;
        }
        Ok(Streams {
            storage,
            counts: Mutex::new(HashMap::new()),
            restart_floor: if clean { 0 } else { high_water },
        })
    }

    /// After a commit to a STREAM partition: deletes the oldest events past
    /// the table's `max_buffer`. Call with the partition lock held.
    pub(crate) fn after_commit(&self, def: &TableDef, scope: &Scope, added: u64) -> Result<()> {
        let Some(options) = def.stream else {
            return Ok(());
        };
        let key = (def.table_id(), scope.clone());
        let known = self.counts.lock().get(&key).copied();
        let count = match known {
            Some(count) => count + added,
            None => self.count(def, scope)?,
        };
        let excess = count.saturating_sub(options.max_buffer);
        if excess > 0 {
            let rows = hot::rows(def);
            let oldest =
                self.storage
                    .scan_prefix_limit(rows.family(), &scope.prefix(), excess as usize)?;
            self.evict(def, scope, oldest, Durability::Unlogged)?;
        }
        self.counts.lock().insert(key, count - excess);
        Ok(())
    }

    /// Events a partition holds now.
    fn count(&self, def: &TableDef, scope: &Scope) -> Result<u64> {
        Ok(self
            .storage
            .scan_prefix(hot::rows(def).family(), &scope.prefix())?
            .len() as u64)
    }

    /// Deletes `victims` (the oldest events of a partition, in key order)
    /// and moves the partition's eviction mark past them.
    fn evict(
        &self,
        def: &TableDef,
        scope: &Scope,
        victims: Vec<KeyValue>,
        durability: Durability,
    ) -> Result<u64> {
        let Some((_, last)) = victims.last() else {
            return Ok(0);
        };
        let table_id = def.table_id();
        let last_seq = StoredRow::decode(last)?.seq;
        let mark = Evicted
            .get(&self.storage, (&table_id, scope))?
            .unwrap_or(0)
            .max(last_seq);
        let rows = hot::rows(def);
        let count = victims.len() as u64;
        let mut ops: Vec<WriteOp> = victims
            .into_iter()
            .map(|(key, _)| rows.delete_raw_op(key))
            .collect();
        ops.push(Evicted.put_op((&table_id, scope), &mark)?);
        self.storage.write_with(ops, durability)?;
        Ok(count)
    }

    /// Deletes the events of every partition of `def` that are past
    /// retention. Returns how many.
    pub(crate) async fn sweep(&self, hot: &HotTier, def: &TableDef) -> Result<u64> {
        let Some(options) = def.stream else {
            return Ok(0);
        };
        let cutoff = options.cutoff(kalamdb_model::Timestamp::now().0);
        let mut expired: Vec<(Scope, Vec<KeyValue>)> = Vec::new();
        // Events of a partition are in `_seq` (and so commit-time) order:
        // read each partition's expired head, then skip to the next one.
        self.storage.walk(hot::rows(def).family(), |key, value| {
            let (scope, _) = crate::table::keys::split_key(def, key)?;
            if StoredRow::decode(value)?.updated >= cutoff {
                return Ok(Walk::SeekTo(scope.end_key()));
            }
            match expired.last_mut() {
                Some((last, rows)) if *last == scope => rows.push((key.to_vec(), value.to_vec())),
                _ => expired.push((scope, vec![(key.to_vec(), value.to_vec())])),
            }
            Ok(Walk::Next)
        })?;
        let mut removed = 0;
        for (scope, victims) in expired {
            let _guard = hot.lock_partition(def, &scope).await;
            removed += self.evict(def, &scope, victims, Durability::Unlogged)?;
            // Counted again at the next write (a `max_buffer` eviction may
            // have removed some of the same events).
            self.counts.lock().remove(&(def.table_id(), scope));
        }
        Ok(removed)
    }

    /// Records that events up to `seq` of a partition were not kept (an
    /// ephemeral table without subscribers).
    pub(crate) fn mark_gap(&self, def: &TableDef, scope: &Scope, seq: i64) -> Result<()> {
        self.storage.write_with(
            vec![Evicted.put_op((&def.table_id(), scope), &seq)?],
            Durability::Unlogged,
        )
    }

    /// The oldest `from_seq` a resume of this partition may use: anything
    /// older may have been evicted.
    pub(crate) fn resume_floor(&self, def: &TableDef, scope: &Scope) -> Result<i64> {
        let mark = Evicted
            .get(&self.storage, (&def.table_id(), scope))?
            .unwrap_or(0);
        Ok(mark.max(self.restart_floor))
    }

    /// Operations forgetting a dropped table's eviction marks.
    pub(crate) fn drop_ops(&self, table_id: &TableId) -> Result<Vec<WriteOp>> {
        self.counts.lock().retain(|(t, _), _| t != table_id);
        Ok(self
            .storage
            .scan_prefix(Evicted.family(), &Evicted.table_prefix(table_id))?
            .into_iter()
            .map(|(key, _)| Evicted.delete_raw_op(key))
            .collect())
    }

    /// At a clean stop: writes the STREAM tables' memtables to disk and
    /// records the clean stop, so the next start keeps resumes valid.
    pub(crate) fn persist(&self, defs: &[Arc<TableDef>]) -> Result<()> {
        for def in defs.iter().filter(|d| d.stream.is_some()) {
            self.storage.flush_cf(hot::rows(def).family())?;
        }
        // Eviction marks are unlogged too.
        self.storage.flush_cf(Evicted.family())?;
        self.storage
            .write_with(vec![Markers.put_op(CLEAN_STOP, &())?], Durability::Synced)
    }
}

#[cfg(test)]
mod tests {
    use crate::keyspace::Keyspace;
    use crate::table::keys::Scope;
    use crate::testing::run;
    use crate::{Engine, EngineConfig};

    #[tokio::test]
    async fn the_sweep_deletes_expired_events_and_moves_the_resume_floor() {
        let dir = tempfile::tempdir().unwrap();
        let (engine, _) = Engine::open(EngineConfig::new(dir.path())).unwrap();
        run(
            &engine,
            "CREATE NAMESPACE app; CREATE STREAM TABLE app.t (v TEXT) WITH (retention = '1s')",
        )
        .await;
        run(&engine, "INSERT INTO app.t (v) VALUES ('a'), ('b')").await;
        let def = engine.tables.get("app", "t").unwrap();
        let scope = Scope::User("root".into());
        let rows = super::hot::rows(&def);
        let stored = || {
            engine
                .stores
                .storage
                .scan_prefix(rows.family(), &[])
                .unwrap()
                .len()
        };
        assert_eq!(stored(), 2);
        // A clean stop was never recorded in this fresh directory.
        let floor = engine.tables.streams.resume_floor(&def, &scope).unwrap();
        assert_eq!(
            engine.tables.sweep_streams().await.unwrap(),
            0,
            "not expired"
        );
        tokio::time::sleep(std::time::Duration::from_millis(1_100)).await;
        assert_eq!(engine.tables.sweep_streams().await.unwrap(), 2);
        assert_eq!(stored(), 0);
        let after = engine.tables.streams.resume_floor(&def, &scope).unwrap();
        assert!(after > floor, "{after} > {floor}");
    }
}
