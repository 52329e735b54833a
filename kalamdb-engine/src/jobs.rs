//! Background jobs: flush, compaction and cleanup, each one row of
//! `system.jobs` that goes `queued → running → completed | failed`.
//!
//! A job is written as `queued` before it is handed to the worker, so a
//! shutdown (or a crash) never loses it: at start every `queued` or
//! `running` row is queued again (flushes and compactions are idempotent:
//! a flush moves whatever is still hot, a compaction rewrites whatever
//! files are listed). One worker runs jobs in order, so two jobs never
//! rewrite the same partition at once. A scheduler ticks every second for
//! interval flushes, periodic cleanup and pruning of old job rows; commits
//! that cross a `FLUSH POLICY ROWS` threshold ask for a flush of just that
//! partition.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use kalamdb_model::{Job, JobKind, JobStatus, Timestamp};
use serde_json::json;

use crate::cold::{ColdFilter, files};
use crate::engine::Engine;
use crate::error::{EngineError, ObjectKind, Result};
use crate::hot::RawRow;
use crate::queue::{BackupJob, JobParams, pending_key};
use crate::table::keys::Scope;
use crate::table::{TableDef, TableId};

/// Seconds of CPU the process has used, from /proc (Linux); None elsewhere.
fn process_cpu_secs() -> Option<f64> {
    let stat = std::fs::read_to_string("/proc/self/stat").ok()?;
    let after = stat.rsplit_once(')')?.1;
    let fields: Vec<&str> = after.split_whitespace().collect();
    let utime: f64 = fields.get(11)?.parse().ok()?;
    let stime: f64 = fields.get(12)?.parse().ok()?;
    Some((utime + stime) / 100.0)
}

/// The table a job row names.
fn job_table(job: &Job) -> TableId {
    TableId::new(
        job.namespace.clone().unwrap_or_default(),
        job.table_name.clone().unwrap_or_default(),
    )
}

/// The partition a job parameter names.
fn partition(label: &str) -> Result<Scope> {
    Scope::from_label(label)
        .ok_or_else(|| EngineError::Internal(format!("job names an unknown partition {label}")))
}

/// Range tombstones (one per flushed partition) a table's memtable may
/// collect before a flush job moves them into an SST file (see
/// `Storage::settle_range_deletes`): reads pay a few µs for each.
const MEMTABLE_RANGE_DELETES: usize = 8;

/// Rows a flush job may leave dead in the memtable before it moves them
/// out: until the memtable is flushed, a scan of the hot tier steps over
/// every deleted row (150,000 of them cost a full-table read ~5 ms); a
/// memtable flush drops the rows its own range tombstones cover.
const MEMTABLE_DEAD_ROWS: u64 = 10_000;

/// What a job produced: its result JSON, the bytes it held in memory, and
/// the rows and bytes it wrote to Parquet (for the metrics).
struct Outcome {
    result: serde_json::Value,
    memory: usize,
    rows: u64,
    bytes: u64,
}

impl Outcome {
    /// A backup's or restore's outcome: its rows and bytes are in its result.
    fn counted(result: serde_json::Value) -> Outcome {
        let count = |key: &str| result[key].as_u64().unwrap_or(0);
        Outcome {
            rows: count("rows"),
            bytes: count("bytes"),
            memory: 0,
            result,
        }
    }
}

impl Engine {
    /// Starts the worker, the scheduler and the flush-request listener, and
    /// queues again the jobs a previous run left `queued` or `running`.
    pub fn start_jobs(self: &Arc<Self>) -> Result<()> {
        if self.jobs.started.swap(true, Ordering::SeqCst) {
            return Ok(());
        }
        let mut leftovers: Vec<Job> = self
            .stores
            .jobs
            .scan_all()?
            .into_iter()
            .filter(|j| !j.status.is_finished())
            .collect();
        leftovers.sort_by(|a, b| a.job_id.cmp(&b.job_id));
        for mut job in leftovers {
            if job.status == JobStatus::Running {
                job.status = JobStatus::Queued;
                job.start_time = None;
                job.trace = Some("interrupted by a shutdown; queued again at start".into());
                self.stores.jobs.put(&job)?;
            }
            if let Some(params) = job
                .parameters
                .as_deref()
                .and_then(|p| serde_json::from_str::<JobParams>(p).ok())
            {
                let table = job_table(&job);
                self.jobs.pending.lock().insert(pending_key(
                    job.job_type,
                    &table,
                    &params.partition,
                ));
            }
            let _ = self.jobs.sender.send(job.job_id.clone());
        }

        let receiver = self.jobs.receiver.lock().take();
        if let Some(mut receiver) = receiver {
            let engine = self.clone();
            let stop = self.jobs.stop.clone();
            let task = tokio::spawn(async move {
                loop {
                    tokio::select! {
                        biased;
                        _ = stop.cancelled() => break,
                        next = receiver.recv() => match next {
                            Some(job_id) => engine.run_job(&job_id).await,
                            None => break,
                        },
                    }
                }
            });
            self.jobs.tasks.lock().push(task);
        }

        let requests = self.jobs.flush_requests.lock().take();
        if let Some(mut requests) = requests {
            let engine = self.clone();
            let stop = self.jobs.stop.clone();
            let task = tokio::spawn(async move {
                loop {
                    tokio::select! {
                        _ = stop.cancelled() => break,
                        next = requests.recv() => match next {
                            Some(request) => {
                                let Some(def) = engine.tables.by_id(&request.table_id) else { continue };
                                let partition = request.scope.label();
                                if let Err(e) = engine.queue_job(JobKind::Flush, &def, Some(partition), "rows", true) {
                                    tracing::warn!("cannot queue a flush of {}: {e}", request.table_id);
                                }
                            }
                            None => break,
                        },
                    }
                }
            });
            self.jobs.tasks.lock().push(task);
        }

        let engine = self.clone();
        let stop = self.jobs.stop.clone();
        let task = tokio::spawn(async move {
            let mut last_flush: HashMap<TableId, Instant> = HashMap::new();
            let mut last_cleanup = Instant::now();
            let mut tick = tokio::time::interval(Duration::from_secs(1));
            loop {
                tokio::select! {
                    _ = stop.cancelled() => break,
                    _ = tick.tick() => {
                        if let Err(e) = engine.schedule(&mut last_flush, &mut last_cleanup) {
                            tracing::warn!("job scheduler: {e}");
                        }
                        if let Err(e) = engine.tables.cold().sweep_retired().await {
                            tracing::warn!("cannot remove retired files: {e}");
                        }
                        if let Err(e) = engine.tables.sweep_streams().await {
                            tracing::warn!("cannot evict expired stream events: {e}");
                        }
                    }
                }
            }
        });
        self.jobs.tasks.lock().push(task);
        Ok(())
    }

    /// Stops taking jobs and waits for the running one (and the scheduler's
    /// current tick) to finish. Jobs still queued stay `queued` in
    /// `system.jobs` and run after the next start.
    pub async fn stop_jobs(&self) {
        self.jobs.stop.cancel();
        let tasks = std::mem::take(&mut *self.jobs.tasks.lock());
        for task in tasks {
            let _ = task.await;
        }
    }

    /// Stops the jobs and makes what is only in memory durable (STREAM
    /// events are written without the log): the server's last step.
    pub async fn shutdown(&self) -> Result<()> {
        self.stop_jobs().await;
        self.tables.persist_streams()
    }

    /// One scheduler tick: interval flushes, cleanup, pruning.
    fn schedule(
        &self,
        last_flush: &mut HashMap<TableId, Instant>,
        last_cleanup: &mut Instant,
    ) -> Result<()> {
        let now = Instant::now();
        for def in self.tables.all() {
            let (_, Some(interval)) = self.tables.cold().policy(&def) else {
                continue;
            };
            let table_id = def.table_id();
            let last = *last_flush.entry(table_id.clone()).or_insert(now);
            if now.duration_since(last) >= Duration::from_secs(interval) {
                last_flush.insert(table_id, now);
                if !self.tables.hot().pending_partitions(&def)?.is_empty() {
                    self.queue_job(JobKind::Flush, &def, None, "interval", true)?;
                }
            }
        }
        let cleanup = self.jobs.config.cleanup_interval_secs;
        if cleanup > 0 && now.duration_since(*last_cleanup) >= Duration::from_secs(cleanup) {
            *last_cleanup = now;
            for def in self.tables.all() {
                if def.rules().flushes() {
                    self.queue_job(JobKind::Cleanup, &def, None, "schedule", true)?;
                }
            }
            self.prune_jobs()?;
        }
        Ok(())
    }

    /// Removes finished job rows older than the configured retention.
    pub fn prune_jobs(&self) -> Result<u64> {
        let cutoff = Timestamp::now().0 - (self.jobs.config.retention_secs as i64) * 1_000_000;
        let mut ops = Vec::new();
        for job in self.stores.jobs.scan_all()? {
            if job.status.is_finished() && job.end_time.is_some_and(|t| t.0 < cutoff) {
                ops.push(self.stores.jobs.delete_op(&job.job_id));
            }
        }
        let count = ops.len() as u64;
        if !ops.is_empty() {
            self.stores.storage.write(ops)?;
        }
        Ok(count)
    }

    /// Writes a `queued` job row and hands it to the worker. Automatic jobs
    /// (`dedupe`) are not queued twice for the same partition.
    pub fn queue_job(
        &self,
        job_type: JobKind,
        def: &TableDef,
        partition: Option<String>,
        trigger: &str,
        dedupe: bool,
    ) -> Result<String> {
        let pending_key = pending_key(job_type, &def.table_id(), &partition);
        {
            let mut pending = self.jobs.pending.lock();
            if dedupe && pending.contains(&pending_key) {
                return Ok(String::new());
            }
            pending.insert(pending_key);
        }
        let params = JobParams {
            partition,
            trigger: trigger.into(),
            backup: None,
        };
        self.insert_job(job_type, &def.namespace, Some(&def.name), params)
    }

    /// Queues a `BACKUP` or `RESTORE` of a namespace.
    pub(crate) fn queue_backup_job(
        &self,
        job_type: JobKind,
        namespace: &str,
        backup: BackupJob,
    ) -> Result<String> {
        let params = JobParams {
            partition: None,
            trigger: "manual".into(),
            backup: Some(backup),
        };
        self.insert_job(job_type, namespace, None, params)
    }

    /// Writes a `queued` job row and hands it to the worker.
    fn insert_job(
        &self,
        job_type: JobKind,
        namespace: &str,
        table: Option<&str>,
        params: JobParams,
    ) -> Result<String> {
        let job_id = format!("{job_type}-{}", self.tables.hot().snowflake_id());
        self.stores.jobs.put(&Job {
            job_id: job_id.clone(),
            job_type,
            namespace: Some(namespace.to_string()),
            table_name: table.map(str::to_string),
            status: JobStatus::Queued,
            start_time: None,
            end_time: None,
            parameters: serde_json::to_string(&params).ok(),
            result: None,
            trace: None,
            memory_used_mb: None,
            cpu_used_percent: None,
            node_id: self.config.node_id.clone(),
            error_message: None,
        })?;
        let _ = self.jobs.sender.send(job_id.clone());
        Ok(job_id)
    }

    async fn run_job(&self, job_id: &str) {
        let job = match self.stores.jobs.get(job_id) {
            Ok(Some(job)) if job.status == JobStatus::Queued => job,
            _ => return,
        };
        let params: JobParams = job
            .parameters
            .as_deref()
            .and_then(|p| serde_json::from_str(p).ok())
            .unwrap_or(JobParams {
                partition: None,
                trigger: "manual".into(),
                backup: None,
            });
        let table_id = job_table(&job);
        let mut job = Job {
            status: JobStatus::Running,
            start_time: Some(Timestamp::now()),
            ..job
        };
        if let Err(e) = self.stores.jobs.put(&job) {
            tracing::warn!("cannot mark job {job_id} running: {e}");
        }
        let started = Instant::now();
        let cpu_before = process_cpu_secs();
        // A job reads Parquet files too (compaction, cleanup): a DROP TABLE
        // meanwhile must not delete them under it.
        let lease = self.tables.cold().readers.enter();
        let outcome = self.run_job_body(&job, &table_id, &params).await;
        drop(lease);
        // Files a compaction replaced go now unless a statement still reads
        // them (then the scheduler's sweep takes them later).
        if let Err(e) = self.tables.cold().sweep_retired().await {
            tracing::warn!("cannot remove retired files: {e}");
        }
        let elapsed = started.elapsed();
        match &outcome {
            Ok(done) => self
                .metrics
                .record_job(job.job_type, true, done.rows, done.bytes, elapsed),
            Err(_) => self.metrics.record_job(job.job_type, false, 0, 0, elapsed),
        }
        self.jobs
            .pending
            .lock()
            .remove(&pending_key(job.job_type, &table_id, &params.partition));
        job.end_time = Some(Timestamp::now());
        // Progress the job recorded while it ran (backups, restores).
        if let Ok(Some(current)) = self.stores.jobs.get(job_id)
            && current.trace.is_some()
        {
            job.trace = current.trace;
        }
        if let (Some(before), Some(after)) = (cpu_before, process_cpu_secs()) {
            let wall = elapsed.as_secs_f64().max(1e-6);
            job.cpu_used_percent = Some(((after - before) / wall * 1000.0).round() / 10.0);
        }
        match outcome {
            Ok(mut outcome) => {
                if let Some(map) = outcome.result.as_object_mut() {
                    map.insert(
                        "duration_ms".into(),
                        json!((elapsed.as_secs_f64() * 1e6).round() / 1e3),
                    );
                }
                job.status = JobStatus::Completed;
                job.result = Some(outcome.result.to_string());
                job.memory_used_mb =
                    Some((outcome.memory as f64 / 1_048_576.0 * 100.0).round() / 100.0);
            }
            Err(e) => {
                tracing::warn!("job {job_id} failed: {e}");
                job.status = JobStatus::Failed;
                job.error_message = Some(e.to_string());
            }
        }
        if let Err(e) = self.stores.jobs.put(&job) {
            tracing::warn!("cannot record the end of job {job_id}: {e}");
        }
    }

    async fn run_job_body(
        &self,
        job: &Job,
        table_id: &TableId,
        params: &JobParams,
    ) -> Result<Outcome> {
        let namespace = table_id.namespace();
        let backup = || {
            params
                .backup
                .clone()
                .ok_or_else(|| EngineError::Internal(format!("job {} names no backup", job.job_id)))
        };
        let def = || {
            self.tables
                .by_id(table_id)
                .ok_or_else(|| EngineError::not_found(ObjectKind::Table, table_id.to_string()))
        };
        match job.job_type {
            JobKind::Flush => self.flush_job(def()?, params).await,
            JobKind::Compact => self.compact_job(def()?, params).await,
            JobKind::Cleanup => self.cleanup_job(def()?.as_ref()).await,
            JobKind::Backup => {
                let backup = backup()?;
                let result = self
                    .backup_job(&job.job_id, namespace, &backup.target)
                    .await?;
                Ok(Outcome::counted(result))
            }
            JobKind::Restore => {
                let backup = backup()?;
                let result = self
                    .restore_job(
                        &job.job_id,
                        namespace,
                        &backup.target,
                        backup.as_name.as_deref(),
                    )
                    .await?;
                Ok(Outcome::counted(result))
            }
        }
    }

    async fn flush_job(&self, mut def: Arc<TableDef>, params: &JobParams) -> Result<Outcome> {
        let scopes = match &params.partition {
            Some(label) => vec![partition(label)?],
            None => self.tables.hot().pending_partitions(&def)?,
        };
        let (mut rows, mut users, mut files, mut bytes, mut memory) = (0, 0, 0, 0, 0);
        for scope in &scopes {
            let flushed = match self.tables.tiers.flush_partition(&def, scope).await {
                // Rows of a newer schema version: an ALTER TABLE committed
                // meanwhile. Flush under the new definition.
                Err(EngineError::SchemaChanged(_)) => {
                    def = self.current_def(&def)?;
                    self.tables.tiers.flush_partition(&def, scope).await?
                }
                other => other?,
            };
            if flushed.rows > 0 {
                users += 1;
            }
            rows += flushed.rows;
            files += flushed.files;
            bytes += flushed.bytes;
            memory = memory.max(flushed.memory);
            if self.tables.cold().needs_compaction(&def, scope)? {
                let label = scope.label();
                self.queue_job(JobKind::Compact, &def, Some(label), "files", true)?;
            }
        }
        // Each flushed partition left a range tombstone in the memtable,
        // over the rows it moved to Parquet.
        let limit = match rows >= MEMTABLE_DEAD_ROWS {
            true => 0,
            false => MEMTABLE_RANGE_DELETES,
        };
        self.tables
            .hot()
            .storage()
            .settle_range_deletes(&def.column_family(), limit)?;
        Ok(Outcome {
            result: json!({
                "rows_flushed": rows,
                "users_count": users,
                "files": files,
                "bytes": bytes,
            }),
            memory,
            rows,
            bytes,
        })
    }

    /// The registered definition of `def`'s table: a job that met rows or
    /// files of a newer schema version (an ALTER TABLE committed while it
    /// ran) goes on with it.
    fn current_def(&self, def: &TableDef) -> Result<Arc<TableDef>> {
        self.tables
            .by_id(&def.table_id())
            .ok_or_else(|| EngineError::not_found(ObjectKind::Table, def.table_id().to_string()))
    }

    async fn compact_job(&self, mut def: Arc<TableDef>, params: &JobParams) -> Result<Outcome> {
        let scopes = match &params.partition {
            Some(label) => vec![partition(label)?],
            None => self
                .tables
                .cold()
                .cold_partitions(&def)?
                .into_iter()
                .map(|(scope, _)| scope)
                .collect(),
        };
        let mut totals = crate::tiers::PartitionCompaction::default();
        let mut partitions = 0;
        for scope in &scopes {
            let done = match self.tables.tiers.compact_partition(&def, scope).await {
                Err(EngineError::SchemaChanged(_)) => {
                    def = self.current_def(&def)?;
                    self.tables.tiers.compact_partition(&def, scope).await?
                }
                other => other?,
            };
            if done.files_before != done.files_after || done.rows_before != done.rows_after {
                partitions += 1;
            }
            totals.files_before += done.files_before;
            totals.files_after += done.files_after;
            totals.rows_before += done.rows_before;
            totals.rows_after += done.rows_after;
            totals.bytes += done.bytes;
            totals.memory = totals.memory.max(done.memory);
        }
        Ok(Outcome {
            result: json!({
                "users_count": partitions,
                "files_before": totals.files_before,
                "files": totals.files_after,
                "rows_before": totals.rows_before,
                "rows_after": totals.rows_after,
                "bytes": totals.bytes,
            }),
            memory: totals.memory,
            rows: totals.rows_after,
            bytes: totals.bytes,
        })
    }

    /// Purges tombstones older than the table's deleted retention: from
    /// RocksDB when no Parquet file holds an older version they hide (else
    /// they stay until flushed), and from Parquet by compacting partitions
    /// whose files hold expired ones. Removes orphaned files too.
    async fn cleanup_job(&self, def: &TableDef) -> Result<Outcome> {
        let cutoff = Timestamp::now().0 - i64::from(def.deleted_retention_hours) * 3_600_000_000;
        let by_scope = self.tables.hot().expired_tombstones(def, cutoff)?;
        let mut purged = 0u64;
        for (scope, tombstones) in by_scope {
            let pks: Vec<Vec<u8>> = tombstones.iter().map(|t| t.pk.clone()).collect();
            let in_parquet = self
                .tables
                .cold()
                .cold_rows(
                    def,
                    &scope,
                    &HashSet::new(),
                    vec![def.primary_key],
                    ColdFilter::Always(files::key_predicate(def, &pks)?, Some(pks.clone())),
                    true,
                )
                .await?;
            let mut hidden: HashSet<Vec<u8>> = HashSet::new();
            for batch in &in_parquet {
                hidden.extend(files::encoded_keys(batch.column(0))?);
            }
            let unhidden: Vec<RawRow> = tombstones
                .into_iter()
                .filter(|t| !hidden.contains(&t.pk))
                .collect();
            let _guard = self.tables.hot().lock_partition(def, &scope).await;
            purged += self.tables.hot().delete_if_unchanged(def, &unhidden)?;
        }
        let mut compacted = 0u64;
        let (mut memory, mut rows, mut bytes) = (0, 0, 0);
        for (scope, files) in self.tables.cold().cold_partitions(def)? {
            if files
                .iter()
                .any(|f| f.oldest_tombstone.is_some_and(|t| t <= cutoff))
            {
                let done = self.tables.tiers.compact_partition(def, &scope).await?;
                memory = memory.max(done.memory);
                rows += done.rows_after;
                bytes += done.bytes;
                compacted += 1;
            }
        }
        let orphans = self.tables.cold().remove_orphans(def).await?;
        Ok(Outcome {
            result: json!({
                "tombstones_purged": purged,
                "users_compacted": compacted,
                "orphan_files_removed": orphans,
            }),
            memory,
            rows,
            bytes,
        })
    }
}
