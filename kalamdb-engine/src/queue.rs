//! The job queue's state: settings, the channel to the worker, the jobs
//! queued or running, and what a job works on. Running jobs is `jobs`.

use std::collections::HashSet;
use std::sync::atomic::AtomicBool;

use kalamdb_model::JobKind;
use parking_lot::Mutex;
use serde::{Deserialize, Serialize};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use crate::cold::FlushRequest;
use crate::table::TableId;

/// Settings of the job system.
#[derive(Debug, Clone)]
pub struct JobConfig {
    /// Completed and failed job rows older than this are removed.
    pub retention_secs: u64,
    /// Seconds between cleanup jobs (0 disables them).
    pub cleanup_interval_secs: u64,
}

impl Default for JobConfig {
    fn default() -> Self {
        JobConfig {
            retention_secs: 7 * 86_400,
            cleanup_interval_secs: 3_600,
        }
    }
}

/// What a job works on, kept in `system.jobs.parameters`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct JobParams {
    /// `user:{id}` or `shared` for one partition; absent for all.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub partition: Option<String>,
    /// What started the job: manual, rows, interval, files, schedule, restart.
    pub trigger: String,
    /// Where a backup goes or a restore comes from.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub backup: Option<BackupJob>,
}

/// The target of a `BACKUP` or `RESTORE` job.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub(crate) struct BackupJob {
    pub target: BackupTarget,
    /// `RESTORE … AS other`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub as_name: Option<String>,
}

/// Where a backup is: `'path'` below `KALAMDB_BACKUP_DIR`, or
/// `STORAGE location PATH 'prefix'`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub(crate) enum BackupTarget {
    Path { path: String },
    Storage { location: String, path: String },
}

impl std::fmt::Display for BackupTarget {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            BackupTarget::Path { path } => write!(f, "'{path}'"),
            BackupTarget::Storage { location, path } => {
                write!(f, "STORAGE {location} PATH '{path}'")
            }
        }
    }
}

/// The queue and its worker.
pub(crate) struct Jobs {
    pub(crate) config: JobConfig,
    pub(crate) sender: mpsc::UnboundedSender<String>,
    pub(crate) receiver: Mutex<Option<mpsc::UnboundedReceiver<String>>>,
    pub(crate) flush_requests: Mutex<Option<mpsc::UnboundedReceiver<FlushRequest>>>,
    /// Automatic jobs queued or running, by (type, table, partition), so a
    /// busy partition does not queue the same flush twice.
    pub(crate) pending: Mutex<HashSet<PendingKey>>,
    /// Cancelled by `stop_jobs`: the worker, the scheduler and the
    /// flush-request listener end their loops.
    pub(crate) stop: CancellationToken,
    pub(crate) started: AtomicBool,
    /// Those three tasks, awaited by `stop_jobs`.
    pub(crate) tasks: Mutex<Vec<tokio::task::JoinHandle<()>>>,
}

impl std::fmt::Debug for Jobs {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Jobs").finish()
    }
}

impl Jobs {
    pub(crate) fn new(
        config: JobConfig,
        flush_requests: mpsc::UnboundedReceiver<FlushRequest>,
    ) -> Jobs {
        let (sender, receiver) = mpsc::unbounded_channel();
        Jobs {
            config,
            sender,
            receiver: Mutex::new(Some(receiver)),
            flush_requests: Mutex::new(Some(flush_requests)),
            pending: Mutex::new(HashSet::new()),
            stop: CancellationToken::new(),
            started: AtomicBool::new(false),
            tasks: Mutex::new(Vec::new()),
        }
    }
}

/// What makes two automatic jobs the same: type, table, partition.
pub(crate) type PendingKey = (JobKind, TableId, String);

pub(crate) fn pending_key(
    job_type: JobKind,
    table_id: &TableId,
    partition: &Option<String>,
) -> PendingKey {
    (
        job_type,
        table_id.clone(),
        partition.clone().unwrap_or_default(),
    )
}
