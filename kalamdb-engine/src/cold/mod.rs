//! The Parquet cold tier: storage locations, each partition's files (the
//! manifest), reading them, and deleting files nobody lists or reads any
//! more. It knows table definitions and storage, never the hot tier.
//!
//! A read of a partition's files keeps, per key, the newest version among
//! them. Filters are pushed into the Parquet scan only when that cannot
//! expose an older version: key lookups and `_seq >` ranges always, other
//! filters when the partition's files have disjoint key ranges
//! (append-mostly tables, and every table after compaction).

pub(crate) mod files;
pub(crate) mod location;
pub(crate) mod lookup;
pub(crate) mod manifest;
pub(crate) mod retire;

use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use datafusion::arrow::array::{AsArray, RecordBatch};
use datafusion::arrow::datatypes::Int64Type;
use datafusion::execution::TaskContext;
use datafusion::execution::runtime_env::RuntimeEnv;
use datafusion::physical_expr::PhysicalExpr;
use datafusion::physical_expr::expressions::{Column, not};
use datafusion::physical_plan::ExecutionPlan;
use datafusion::physical_plan::filter::FilterExec;
use datafusion::physical_plan::projection::ProjectionExec;
use tokio::sync::mpsc;

use crate::error::{EngineError, Result};
use crate::storage::{Storage, WriteOp};
use crate::table::def::DELETED_COLUMN;
use crate::table::keys::Scope;
use crate::table::row::StoredRow;
use crate::table::{TableDef, TableId};
use files::SystemPositions;
use location::Locations;
use manifest::ColdFile;

/// A request from a commit for a flush of one partition (its row count
/// crossed the table's `FLUSH POLICY ROWS`).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub(crate) struct FlushRequest {
    pub table_id: TableId,
    pub scope: Scope,
}

/// Flush defaults for tables that declare no policy.
#[derive(Debug, Clone)]
pub struct ColdConfig {
    /// Rows per partition that trigger a flush.
    pub default_flush_rows: u64,
    /// Seconds between background flushes of a table.
    pub default_flush_interval_secs: u64,
    /// Files of a partition smaller than `small_file_bytes` that trigger an
    /// automatic compaction (0 disables it).
    pub compact_min_files: usize,
    pub small_file_bytes: u64,
}

impl Default for ColdConfig {
    fn default() -> Self {
        ColdConfig {
            default_flush_rows: 10_000,
            default_flush_interval_secs: 300,
            compact_min_files: 10,
            small_file_bytes: 16 * 1024 * 1024,
        }
    }
}

/// Locations, the runtime whose object-store registry knows them, and the
/// channel commits use to ask for flushes.
pub(crate) struct ColdTier {
    storage: Arc<Storage>,
    pub locations: Locations,
    pub runtime: Arc<RuntimeEnv>,
    pub config: ColdConfig,
    requests: mpsc::UnboundedSender<FlushRequest>,
    /// Task context of reads outside a query (built once: a default
    /// context is costly to make).
    task: Arc<TaskContext>,
    /// Statements that may be reading files.
    pub readers: Arc<retire::Readers>,
    /// Files taken out of a manifest, deleted once no reader needs them.
    pub retired: retire::Retired,
    /// Metadata of the files key lookups opened.
    footers: lookup::Footers,
}

impl std::fmt::Debug for ColdTier {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ColdTier")
            .field("locations", &self.locations)
            .finish()
    }
}

/// Which filter a cold read may push into the Parquet scan.
#[derive(Clone)]
pub(crate) enum ColdFilter {
    None,
    /// Safe whatever the files hold (key lookups, `_seq >`); the keys, if
    /// given, also skip files whose key range holds none of them.
    Always(Arc<dyn PhysicalExpr>, Option<Vec<Vec<u8>>>),
    /// Safe only when the files' key ranges are disjoint.
    IfDisjoint(Arc<dyn PhysicalExpr>),
}

impl ColdTier {
    /// The cold tier of `storage`'s manifest, with the files a previous
    /// run retired but had not deleted yet queued for deletion.
    pub(crate) fn new(
        storage: Arc<Storage>,
        runtime: Arc<RuntimeEnv>,
        config: ColdConfig,
    ) -> Result<(ColdTier, mpsc::UnboundedReceiver<FlushRequest>)> {
        let (requests, receiver) = mpsc::unbounded_channel();
        let task = Arc::new(TaskContext::default().with_runtime(runtime.clone()));
        let retired = retire::Retired::default();
        retired.restore(retire::recorded(&storage)?);
        Ok((
            ColdTier {
                storage,
                locations: Locations::default(),
                runtime,
                config,
                requests,
                task,
                readers: Arc::new(retire::Readers::default()),
                retired,
                footers: lookup::Footers::default(),
            },
            receiver,
        ))
    }

    /// Opens a storage location and registers it with DataFusion.
    pub(crate) fn open_location(
        &self,
        location: &kalamdb_model::StorageLocation,
    ) -> Result<Arc<location::ColdStore>> {
        let store = self.locations.add(location)?;
        self.runtime
            .register_object_store(store.url().as_ref(), store.store.clone());
        Ok(store)
    }

    /// A task context for reads outside a query.
    pub(crate) fn task(&self) -> Arc<TaskContext> {
        self.task.clone()
    }

    /// The flush policy in force: the table's, else the configured default.
    /// `(None, None)` for a kind whose rows never move to Parquet.
    pub(crate) fn policy(&self, def: &TableDef) -> (Option<u64>, Option<u64>) {
        if !def.rules().flushes() {
            return (None, None);
        }
        let policy = &def.flush_policy;
        if policy.rows.is_none() && policy.interval_secs.is_none() {
            (
                Some(self.config.default_flush_rows).filter(|r| *r > 0),
                Some(self.config.default_flush_interval_secs).filter(|s| *s > 0),
            )
        } else {
            (policy.rows, policy.interval_secs)
        }
    }

    pub(crate) fn request_flush(&self, def: &TableDef, scope: &Scope) {
        let _ = self.requests.send(FlushRequest {
            table_id: def.table_id(),
            scope: scope.clone(),
        });
    }
}

/// How a query reads a partition's Parquet files.
pub(crate) enum ColdPlan {
    /// The partition has no files (that can hold the wanted keys).
    NoFiles,
    /// Stream this plan: no merge needed.
    Plan(Arc<dyn ExecutionPlan>),
    /// Files may repeat keys: read and merge.
    Merge,
}

impl ColdTier {
    /// Parquet rows of a partition that are the visible version of their key:
    /// not shadowed by a hot version (`hot_keys`), the newest among files,
    /// and (unless `keep_tombstones`) not deleted. Call after reading the hot
    /// rows: a flush committing in between then shows a row twice (same
    /// version, dropped by the caller's hot-key check), never zero times.
    /// Returns batches of `columns` followed by any of key, `_seq` and
    /// `_deleted` the caller did not ask for.
    pub(crate) async fn cold_rows(
        &self,
        def: &TableDef,
        scope: &Scope,
        hot_keys: &HashSet<Vec<u8>>,
        mut columns: Vec<usize>,
        filter: ColdFilter,
        keep_tombstones: bool,
    ) -> Result<Vec<RecordBatch>> {
        let files = self.files_for(&def.table_id(), scope, &filter)?;
        if files.is_empty() {
            return Ok(Vec::new());
        }
        let positions = SystemPositions::extend(def, &mut columns);
        let single_version = files::disjoint(&files);
        let predicate = match &filter {
            ColdFilter::Always(p, _) => Some(p.clone()),
            ColdFilter::IfDisjoint(p) if single_version => Some(p.clone()),
            _ => None,
        };
        // Files listed here stay on disk until this statement ends (see
        // `retire`), so a concurrent compaction never pulls one away.
        let batches = files::scan(def, &files, &columns, predicate, self.task()).await?;
        visible(
            batches,
            &positions,
            hot_keys,
            single_version,
            keep_tombstones,
        )
    }

    /// The partition's files a read with `filter` must open: all, or for a
    /// key lookup those whose key range can hold one of the keys.
    pub(crate) fn files_for(
        &self,
        table_id: &TableId,
        scope: &Scope,
        filter: &ColdFilter,
    ) -> Result<Vec<ColdFile>> {
        let mut files = manifest::files(&self.storage, table_id, scope)?;
        if let ColdFilter::Always(_, Some(keys)) = filter {
            files.retain(|f| {
                keys.iter()
                    .any(|k| f.min_pk.as_slice() <= k.as_slice() && k <= &f.max_pk)
            });
        }
        Ok(files)
    }

    /// A streaming scan of a partition's files for a query, when no merge is
    /// needed: the partition has no hot versions (the caller checked), its
    /// files have disjoint key ranges and live in one location. Tombstones
    /// are filtered out and the output has exactly `projection`'s columns.
    pub(crate) fn cold_plan(
        &self,
        def: &TableDef,
        scope: &Scope,
        projection: &[usize],
        filter: &ColdFilter,
    ) -> Result<ColdPlan> {
        let files = self.files_for(&def.table_id(), scope, filter)?;
        let Some(location) = files.first().map(|f| f.location.clone()) else {
            return Ok(ColdPlan::NoFiles);
        };
        // Files of an older schema version are read (and adapted) by the
        // merge path until compaction rewrites them to the current one.
        if !files::disjoint(&files)
            || files
                .iter()
                .any(|f| f.location != location || f.schema_version != def.version)
        {
            return Ok(ColdPlan::Merge);
        }
        let predicate = match filter {
            ColdFilter::Always(p, _) | ColdFilter::IfDisjoint(p) => Some(p.clone()),
            ColdFilter::None => None,
        };
        let schema = def.arrow_schema();
        let deleted_index = schema
            .index_of(DELETED_COLUMN)
            .unwrap_or(def.user_column_count() + 2);
        let mut columns = projection.to_vec();
        let deleted = match columns.iter().position(|&c| c == deleted_index) {
            Some(p) => p,
            None => {
                columns.push(deleted_index);
                columns.len() - 1
            }
        };
        let refs: Vec<&ColdFile> = files.iter().collect();
        let task = self.task();
        let scan = files::scan_plan(
            def.arrow_schema(),
            &location,
            &refs,
            &columns,
            predicate,
            &task,
        )?;
        let live = not(Arc::new(Column::new(DELETED_COLUMN, deleted)))?;
        let filtered: Arc<dyn ExecutionPlan> = Arc::new(FilterExec::try_new(live, scan)?);
        let exprs: Vec<(Arc<dyn PhysicalExpr>, String)> = projection
            .iter()
            .enumerate()
            .map(|(i, &c)| {
                let name = schema.field(c).name().clone();
                (
                    Arc::new(Column::new(&name, i)) as Arc<dyn PhysicalExpr>,
                    name,
                )
            })
            .collect();
        Ok(ColdPlan::Plan(Arc::new(ProjectionExec::try_new(
            exprs, filtered,
        )?)))
    }

    /// Encodes `rows` (sorted by key; `keys` their first and last primary
    /// key) as a new Parquet file of the partition and writes it durably.
    /// Returns its manifest entry (not yet recorded) and the bytes held in
    /// memory while encoding.
    pub(crate) async fn write_file(
        &self,
        def: &TableDef,
        scope: &Scope,
        rows: Vec<StoredRow>,
        keys: (&[u8], &[u8]),
        file_id: i64,
    ) -> Result<(ColdFile, usize)> {
        let store = self.locations.get(&def.storage_location)?;
        let name = format!("batch-{file_id}.parquet");
        let directory = store.directory(&def.namespace, &def.name, scope);
        let path = format!("{directory}/{name}");
        let encode_def = def.clone();
        let ((data, memory), rows) = tokio::task::spawn_blocking(move || {
            files::encode(&encode_def, &rows).map(|encoded| (encoded, rows))
        })
        .await
        .map_err(|e| EngineError::Internal(format!("encoding task failed: {e}")))??;
        let bytes = data.len() as u64;
        store.put(&path, data).await?;
        let file = files::describe(name, &store.name, path, &rows, keys, bytes, def.version);
        Ok((file, memory))
    }

    /// Removes files below a table's directory that no manifest of any
    /// table lists and that are not retired (left by a crash between
    /// writing a file and recording it), and temporary files. Several
    /// tables may share a directory (a storage template without
    /// `${namespace}`), so a file is only an orphan when nobody lists it.
    pub(crate) async fn remove_orphans(&self, def: &TableDef) -> Result<u64> {
        let store = self.locations.get(&def.storage_location)?;
        let Some(directory) = store.table_directory(&def.namespace, &def.name) else {
            return Ok(0);
        };
        let found = store.list(&directory).await?;
        // Listed after the directory: a file recorded meanwhile is kept.
        let mut listed: HashSet<String> = manifest::every_file(&self.storage)?
            .into_iter()
            .filter(|f| f.location == store.name)
            .map(|f| f.path)
            .collect();
        listed.extend(
            retire::recorded(&self.storage)?
                .into_iter()
                .filter(|f| f.location == store.name)
                .map(|f| f.path),
        );
        // Files written in the last minute may belong to a flush in progress.
        let now = kalamdb_model::Timestamp::now().0;
        let mut removed = 0;
        for (path, _) in found {
            let name = path.rsplit('/').next().unwrap_or_default();
            let ours = name.starts_with("batch-") || name.starts_with(".batch-");
            if !ours || listed.contains(&path) || self.retired.contains(&store.name, &path) {
                continue;
            }
            let written = name
                .trim_start_matches('.')
                .trim_start_matches("batch-")
                .split('.')
                .next()
                .and_then(|id| id.parse::<i64>().ok())
                .map(crate::ids::snowflake_micros)
                .unwrap_or(0);
            if now - written > 60_000_000 {
                store.delete(&path).await?;
                removed += 1;
            }
        }
        Ok(removed)
    }

    /// Deletes retired files that no running statement can still read, and
    /// forgets them. Returns how many were deleted.
    pub(crate) async fn sweep_retired(&self) -> Result<usize> {
        let due = self.retired.take_due(&self.readers);
        if due.is_empty() {
            return Ok(0);
        }
        let mut failed = Vec::new();
        let mut ops = Vec::new();
        for file in due {
            let deleted = match self.locations.get(&file.location) {
                Ok(store) => match store.delete(&file.path).await {
                    Ok(()) => {
                        store.prune_empty_dirs(&file.path);
                        true
                    }
                    Err(e) => {
                        tracing::warn!("cannot remove retired file {}: {e}", file.path);
                        false
                    }
                },
                // The location was dropped: nothing left to delete there.
                Err(_) => true,
            };
            if deleted {
                ops.push(retire::forget_op(&file));
            } else {
                failed.push(file);
            }
        }
        let count = ops.len();
        self.retired.put_back(failed);
        if !ops.is_empty() {
            self.storage.write(ops)?;
        }
        Ok(count)
    }

    /// The write-batch operations forgetting a dropped table's manifest
    /// and counters and retiring its files (exactly those its manifest
    /// lists: never a directory, which another table may share).
    pub(crate) fn drop_cold_ops(
        &self,
        table_id: &TableId,
    ) -> Result<(Vec<WriteOp>, Vec<ColdFile>)> {
        let files: Vec<ColdFile> = manifest::all_files(&self.storage, table_id)?
            .into_iter()
            .flat_map(|(_, files)| files)
            .collect();
        let mut ops = manifest::drop_ops(&self.storage, table_id)?;
        ops.extend(retire::record_ops(&files));
        Ok((ops, files))
    }

    /// Hands a dropped table's files (already recorded as retired) to the
    /// sweeper, which deletes them once no running statement reads them.
    pub(crate) fn remove_dropped_files(self: &Arc<Self>, files: &[ColdFile]) {
        self.retired.add(&self.readers, files);
        let cold = self.clone();
        if let Ok(handle) = tokio::runtime::Handle::try_current() {
            handle.spawn(async move {
                if let Err(e) = cold.sweep_retired().await {
                    tracing::warn!("cannot remove files of a dropped table: {e}");
                }
            });
        }
    }

    /// Partitions of a table holding Parquet files.
    pub(crate) fn cold_partitions(&self, def: &TableDef) -> Result<Vec<(Scope, Vec<ColdFile>)>> {
        manifest::all_files(&self.storage, &def.table_id())
    }

    /// True when a partition has enough small files to compact.
    pub(crate) fn needs_compaction(&self, def: &TableDef, scope: &Scope) -> Result<bool> {
        let min = self.config.compact_min_files;
        if min == 0 {
            return Ok(false);
        }
        let small = manifest::files(&self.storage, &def.table_id(), scope)?
            .iter()
            .filter(|f| f.bytes < self.config.small_file_bytes)
            .count();
        Ok(small >= min)
    }
}

/// Keeps the visible version of each key (see [`ColdTier::cold_rows`]).
pub(crate) fn visible(
    batches: Vec<RecordBatch>,
    positions: &SystemPositions,
    hot_keys: &HashSet<Vec<u8>>,
    single_version: bool,
    keep_tombstones: bool,
) -> Result<Vec<RecordBatch>> {
    // Keys are only needed to compare with hot keys or across files.
    let need_keys = !hot_keys.is_empty() || !single_version;
    let mut keys_of = Vec::with_capacity(batches.len());
    for batch in &batches {
        keys_of.push(if need_keys {
            files::encoded_keys(batch.column(positions.key))?
        } else {
            Vec::new()
        });
    }
    // Winner (batch, row) per key when files may repeat a key.
    let mut winners: HashMap<&[u8], (i64, usize, usize)> = HashMap::new();
    if !single_version {
        for (b, (batch, keys)) in batches.iter().zip(&keys_of).enumerate() {
            let seqs = batch.column(positions.seq).as_primitive::<Int64Type>();
            for (row, key) in keys.iter().enumerate() {
                let seq = seqs.value(row);
                let entry = winners.entry(key.as_slice()).or_insert((seq, b, row));
                if seq > entry.0 {
                    *entry = (seq, b, row);
                }
            }
        }
    }
    let mut out = Vec::with_capacity(batches.len());
    for (b, (batch, keys)) in batches.iter().zip(&keys_of).enumerate() {
        let deleted = batch.column(positions.deleted).as_boolean();
        let keep: Vec<bool> = (0..batch.num_rows())
            .map(|row| {
                let live = keep_tombstones || !deleted.value(row);
                if !need_keys {
                    return live;
                }
                let key = &keys[row];
                live && !hot_keys.contains(key)
                    && (single_version
                        || winners
                            .get(key.as_slice())
                            .is_some_and(|&(_, wb, wr)| wb == b && wr == row))
            })
            .collect();
        if keep.iter().all(|k| *k) {
            out.push(batch.clone());
            continue;
        }
        let kept = files::retain(batch, keep)?;
        if kept.num_rows() > 0 {
            out.push(kept);
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use datafusion::arrow::array::{BooleanArray, Int64Array};
    use datafusion::arrow::datatypes::{DataType, Field, Schema};
    use kalamdb_model::StorageKey;

    /// A batch of (key, _seq, _deleted) rows.
    fn batch(rows: &[(i64, i64, bool)]) -> RecordBatch {
        let schema = Arc::new(Schema::new(vec![
            Field::new("id", DataType::Int64, true),
            Field::new("_seq", DataType::Int64, true),
            Field::new("_deleted", DataType::Boolean, true),
        ]));
        RecordBatch::try_new(
            schema,
            vec![
                Arc::new(Int64Array::from_iter_values(rows.iter().map(|r| r.0))),
                Arc::new(Int64Array::from_iter_values(rows.iter().map(|r| r.1))),
                Arc::new(BooleanArray::from_iter(rows.iter().map(|r| Some(r.2)))),
            ],
        )
        .unwrap()
    }

    fn ids(batches: &[RecordBatch]) -> Vec<(i64, i64)> {
        let mut out: Vec<(i64, i64)> = batches
            .iter()
            .flat_map(|b| {
                let id = b.column(0).as_primitive::<Int64Type>().clone();
                let seq = b.column(1).as_primitive::<Int64Type>().clone();
                (0..b.num_rows()).map(move |i| (id.value(i), seq.value(i)))
            })
            .collect();
        out.sort();
        out
    }

    const POSITIONS: SystemPositions = SystemPositions {
        key: 0,
        seq: 1,
        deleted: 2,
    };

    #[test]
    fn newest_version_wins_and_tombstones_hide() {
        // Older file: 1, 2, 3. Newer file: 2 updated, 3 deleted.
        let files = vec![
            batch(&[(1, 10, false), (2, 11, false), (3, 12, false)]),
            batch(&[(2, 20, false), (3, 21, true)]),
        ];
        let out = visible(files.clone(), &POSITIONS, &HashSet::new(), false, false).unwrap();
        assert_eq!(ids(&out), vec![(1, 10), (2, 20)]);
        // With tombstones kept (resume, DML lookups) the delete is the winner.
        let out = visible(files.clone(), &POSITIONS, &HashSet::new(), false, true).unwrap();
        assert_eq!(ids(&out), vec![(1, 10), (2, 20), (3, 21)]);
        // A hot version shadows every Parquet version of its key.
        let hot = HashSet::from([2i64.storage_key()]);
        let out = visible(files, &POSITIONS, &hot, false, false).unwrap();
        assert_eq!(ids(&out), vec![(1, 10)]);
    }

    #[test]
    fn disjoint_files_skip_key_work_but_still_drop_tombstones() {
        let files = vec![batch(&[(1, 10, false), (2, 11, true)])];
        let out = visible(files, &POSITIONS, &HashSet::new(), true, false).unwrap();
        assert_eq!(ids(&out), vec![(1, 10)]);
    }

    fn file(min: i64, max: i64) -> ColdFile {
        ColdFile {
            name: format!("batch-{min}.parquet"),
            location: "local".into(),
            path: String::new(),
            rows: 1,
            tombstones: 0,
            bytes: 1,
            min_seq: 0,
            max_seq: 0,
            min_pk: min.storage_key(),
            max_pk: max.storage_key(),
            oldest_tombstone: None,
            created_at: 0,
            schema_version: 1,
        }
    }

    #[test]
    fn key_ranges_decide_whether_filters_may_be_pushed() {
        assert!(files::disjoint(&[file(1, 10), file(11, 20), file(-5, 0)]));
        assert!(!files::disjoint(&[file(1, 10), file(10, 20)]));
        assert!(!files::disjoint(&[file(1, 100), file(20, 30)]));
        assert!(files::disjoint(&[file(1, 1)]));
    }
}
