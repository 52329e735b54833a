//! The two tiers together: reads that merge them, and the flush and
//! compaction that move rows between them.
//!
//! A flush moves one partition's row versions (one user of a USER table, or
//! a SHARED table) from RocksDB into a Parquet file of the table's storage
//! location: the file is written under a temporary name, fsynced and
//! renamed (a PUT on S3); then one RocksDB write batch records it in the
//! manifest and deletes exactly the versions it holds (a row rewritten
//! meanwhile keeps its newer version). A crash before that batch leaves an
//! unlisted file that no read ever opens and cleanup removes; after it,
//! the rows are in exactly one place.
//!
//! Reads merge the tiers: hot versions always win (they are newer than
//! anything flushed), among files the newest `_seq` per key wins, and
//! tombstones hide what they delete (see `cold` for which filters reach
//! the Parquet scan).

use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use crate::cold::files::{self, SystemPositions};
use crate::cold::{ColdFilter, ColdTier, manifest, retire, visible};
use crate::error::Result;
use crate::hot::{self, HotTier};
use crate::keyspace::{Counters, Keyspace};
use crate::storage::WriteOp;
use crate::table::TableDef;
use crate::table::keys::Scope;
use crate::table::row::StoredRow;

/// What one partition's flush did.
#[derive(Debug, Default, Clone)]
pub(crate) struct PartitionFlush {
    pub rows: u64,
    pub bytes: u64,
    pub files: u64,
    /// Bytes held in memory while encoding.
    pub memory: usize,
}

/// What one partition's compaction did.
#[derive(Debug, Default, Clone)]
pub(crate) struct PartitionCompaction {
    pub files_before: u64,
    pub files_after: u64,
    pub rows_before: u64,
    pub rows_after: u64,
    pub bytes: u64,
    pub memory: usize,
}

/// The hot and the cold tier of every table.
#[derive(Debug)]
pub(crate) struct Tiers {
    pub hot: HotTier,
    pub cold: Arc<ColdTier>,
}

impl Tiers {
    /// The current version (live or tombstone) of each key, from either tier.
    pub(crate) async fn current_rows(
        &self,
        def: &TableDef,
        scope: &Scope,
        pks: &[Vec<u8>],
    ) -> Result<Vec<Option<StoredRow>>> {
        let mut rows = self.hot.get_rows(def, scope, pks)?;
        let missing: Vec<Vec<u8>> = pks
            .iter()
            .zip(&rows)
            .filter(|(_, r)| r.is_none())
            .map(|(pk, _)| pk.clone())
            .collect();
        if missing.is_empty() {
            return Ok(rows);
        }
        let candidates = ColdFilter::Always(files::always_true(), Some(missing.clone()));
        let files = self.cold.files_for(&def.table_id(), scope, &candidates)?;
        if files.is_empty() {
            return Ok(rows);
        }
        let batches = match self.cold.lookup(def, &files, &missing).await? {
            Some(batches) => batches,
            None => {
                let all: Vec<usize> = (0..def.arrow_schema().fields().len()).collect();
                let predicate = files::key_predicate(def, &missing)?;
                self.cold
                    .cold_rows(
                        def,
                        scope,
                        &HashSet::new(),
                        all,
                        ColdFilter::Always(predicate, Some(missing)),
                        true,
                    )
                    .await?
            }
        };
        // A key in several files (updated after a flush, before compaction):
        // the newest version wins.
        let mut found: HashMap<Vec<u8>, StoredRow> = HashMap::new();
        for batch in &batches {
            let keys = files::encoded_keys(batch.column(def.primary_key))?;
            for (key, row) in keys.into_iter().zip(files::batch_to_rows(def, batch)?) {
                match found.get(&key) {
                    Some(newer) if newer.seq >= row.seq => {}
                    _ => {
                        found.insert(key, row);
                    }
                }
            }
        }
        for (pk, row) in pks.iter().zip(rows.iter_mut()) {
            if row.is_none() {
                *row = found.remove(pk);
            }
        }
        Ok(rows)
    }

    /// The newest version of every key of a partition changed after `from`
    /// (tombstones included), from both tiers, in `_seq` order.
    pub(crate) async fn versions_since(
        &self,
        def: &TableDef,
        scope: &Scope,
        from: i64,
    ) -> Result<Vec<StoredRow>> {
        let hot = self.hot.scan_keyed(def, scope)?;
        let hot_keys: HashSet<Vec<u8>> = hot.iter().map(|(k, _)| k.clone()).collect();
        let all: Vec<usize> = (0..def.arrow_schema().fields().len()).collect();
        let batches = self
            .cold
            .cold_rows(
                def,
                scope,
                &hot_keys,
                all,
                ColdFilter::Always(files::seq_after(def, from)?, None),
                true,
            )
            .await?;
        let mut versions: Vec<StoredRow> = hot
            .into_iter()
            .map(|(_, row)| row)
            .filter(|r| r.seq > from)
            .collect();
        for batch in &batches {
            versions.extend(files::batch_to_rows(def, batch)?);
        }
        versions.sort_by_key(|r| r.seq);
        Ok(versions)
    }

    /// Moves one partition's hot versions to a new Parquet file.
    pub(crate) async fn flush_partition(
        &self,
        def: &TableDef,
        scope: &Scope,
    ) -> Result<PartitionFlush> {
        let table_id = def.table_id();
        let (rows, counted) = {
            let _guard = self.hot.lock_partition(def, scope).await;
            (
                self.hot.scan_raw(def, scope)?,
                self.hot.unflushed(&table_id, scope)?,
            )
        };
        let mut outcome = PartitionFlush::default();
        if !rows.is_empty() {
            // A row newer than `def` (an ALTER committed since the flush
            // began) fails the flush with `SchemaChanged`: the caller runs
            // it again with the new definition.
            let decoded: Vec<StoredRow> = rows
                .iter()
                .map(|raw| hot::decode(def, &raw.value))
                .collect::<Result<_>>()?;
            let keys = (rows[0].pk.as_slice(), rows[rows.len() - 1].pk.as_slice());
            let (file, memory) = self
                .cold
                .write_file(def, scope, decoded, keys, self.hot.snowflake_id())
                .await?;
            outcome = PartitionFlush {
                rows: file.rows,
                bytes: file.bytes,
                files: 1,
                memory,
            };
            let family = hot::rows(def);
            let _guard = self.hot.lock_partition(def, scope).await;
            let mut ops = vec![manifest::add_op(&table_id, scope, &file)?];
            let now_count = self.hot.unflushed(&table_id, scope)?;
            if now_count == counted {
                // Nothing was written to the partition since the snapshot
                // (every write bumps the counter under this lock), so the
                // hot partition is exactly what was flushed: one range
                // tombstone instead of one per row, which later scans of
                // the partition would have to step over.
                ops.push(WriteOp::DeleteRange {
                    cf: family.family().to_string(),
                    from: scope.prefix(),
                    to: scope.end_key(),
                });
            } else {
                let keys: Vec<&[u8]> = rows.iter().map(|raw| raw.key.as_slice()).collect();
                let current = self.hot.storage().multi_get(family.family(), &keys)?;
                for (raw, current) in rows.iter().zip(current) {
                    // Only the version that was flushed: a newer one stays hot.
                    if current.as_deref() == Some(raw.value.as_slice()) {
                        ops.push(family.delete_raw_op(raw.key.clone()));
                    }
                }
            }
            ops.push(Counters.set_op(&table_id, scope, now_count.saturating_sub(counted)));
            self.hot.storage().write(ops)?;
        } else if counted > 0 {
            let _guard = self.hot.lock_partition(def, scope).await;
            let now_count = self.hot.unflushed(&table_id, scope)?;
            self.hot.storage().write(vec![Counters.set_op(
                &table_id,
                scope,
                now_count.saturating_sub(counted),
            )])?;
        }
        Ok(outcome)
    }

    /// Rewrites a partition's files as one: the newest version of each key,
    /// without tombstones older than the table's deleted retention, in the
    /// current schema version.
    pub(crate) async fn compact_partition(
        &self,
        def: &TableDef,
        scope: &Scope,
    ) -> Result<PartitionCompaction> {
        let table_id = def.table_id();
        let old_files = manifest::files(self.hot.storage(), &table_id, scope)?;
        let cutoff = kalamdb_model::Timestamp::now().0
            - i64::from(def.deleted_retention_hours) * 3_600_000_000;
        let expired = old_files
            .iter()
            .any(|f| f.oldest_tombstone.is_some_and(|t| t <= cutoff));
        let outdated = old_files.iter().any(|f| f.schema_version != def.version);
        if old_files.len() < 2 && !expired && !outdated {
            return Ok(PartitionCompaction {
                files_before: old_files.len() as u64,
                files_after: old_files.len() as u64,
                ..Default::default()
            });
        }
        let all: Vec<usize> = (0..def.arrow_schema().fields().len()).collect();
        let batches = files::scan(def, &old_files, &all, None, self.cold.task()).await?;
        let positions = SystemPositions {
            key: def.primary_key,
            seq: def.user_column_count(),
            deleted: def.user_column_count() + 2,
        };
        let newest = visible(batches, &positions, &HashSet::new(), false, true)?;
        let mut rows: Vec<(Vec<u8>, StoredRow)> = Vec::new();
        for batch in &newest {
            let keys = files::encoded_keys(batch.column(def.primary_key))?;
            rows.extend(keys.into_iter().zip(files::batch_to_rows(def, batch)?));
        }
        let rows_before: u64 = old_files.iter().map(|f| f.rows).sum();
        rows.retain(|(_, r)| !(r.deleted && r.updated <= cutoff));
        rows.sort_by(|a, b| a.0.cmp(&b.0));
        let mut ops = Vec::new();
        let mut outcome = PartitionCompaction {
            files_before: old_files.len() as u64,
            rows_before,
            rows_after: rows.len() as u64,
            ..Default::default()
        };
        if !rows.is_empty() {
            let (keys, decoded): (Vec<Vec<u8>>, Vec<StoredRow>) = rows.into_iter().unzip();
            let range = (keys[0].as_slice(), keys[keys.len() - 1].as_slice());
            let (file, memory) = self
                .cold
                .write_file(def, scope, decoded, range, self.hot.snowflake_id())
                .await?;
            outcome.bytes = file.bytes;
            outcome.memory = memory;
            outcome.files_after = 1;
            ops.push(manifest::add_op(&table_id, scope, &file)?);
        }
        for file in &old_files {
            ops.push(manifest::remove_op(&table_id, scope, &file.name));
        }
        ops.extend(retire::record_ops(&old_files));
        self.hot.storage().write(ops)?;
        // Statements that listed the old files may still read them: they
        // are deleted by `sweep_retired` once those statements end.
        self.cold.retired.add(&self.cold.readers, &old_files);
        Ok(outcome)
    }
}
