//! Retired Parquet files: replaced by a compaction, or left by a dropped
//! table. A statement lists a partition's files when it plans and reads
//! them later, so a file must outlive every statement that may have listed
//! it. A statement takes a [`ReadLease`] with an increasing number before
//! it first lists a manifest (see [`StatementLease`]) and holds it to its
//! end, as do a subscription's initial read and every job; a file retired
//! when the next lease number was `n` is deleted once no lease below `n` is
//! still held. Statements that read no Parquet file (system tables, DDL)
//! take none and never hold a deletion back.
//!
//! Retired files are also recorded in RocksDB (in the same write batch
//! that takes them out of the manifest), so a crash never leaks them: at
//! start nothing can still be reading them and they are deleted at the
//! first sweep.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use parking_lot::Mutex;

use super::manifest::ColdFile;
use crate::keyspace::{Keyspace, Trash};
use crate::storage::WriteOp;

/// Statements that may be reading Parquet files.
#[derive(Debug, Default)]
pub(crate) struct Readers {
    next: AtomicU64,
    active: Mutex<BTreeMap<u64, usize>>,
}

/// Held while a statement may read files; released on drop.
#[derive(Debug)]
pub(crate) struct ReadLease {
    readers: Arc<Readers>,
    number: u64,
}

impl Readers {
    pub(crate) fn enter(self: &Arc<Self>) -> ReadLease {
        let mut active = self.active.lock();
        let number = self.next.fetch_add(1, Ordering::SeqCst);
        *active.entry(number).or_default() += 1;
        ReadLease {
            readers: self.clone(),
            number,
        }
    }

    /// The number the next lease gets: every lease taken before is below it.
    fn watermark(&self) -> u64 {
        let _active = self.active.lock();
        self.next.load(Ordering::SeqCst)
    }

    /// The lowest lease number still held.
    fn oldest(&self) -> Option<u64> {
        self.active.lock().keys().next().copied()
    }
}

impl Drop for ReadLease {
    fn drop(&mut self) {
        let mut active = self.readers.active.lock();
        if let Some(count) = active.get_mut(&self.number) {
            *count -= 1;
            if *count == 0 {
                active.remove(&self.number);
            }
        }
    }
}

/// A statement's lease, taken the first time it lists a manifest (kept in
/// the session's config, so table providers and sinks find it) and
/// released when the statement's session is dropped.
#[derive(Debug)]
pub(crate) struct StatementLease {
    readers: Arc<Readers>,
    lease: Mutex<Option<ReadLease>>,
}

impl StatementLease {
    pub(crate) fn new(readers: Arc<Readers>) -> Self {
        StatementLease {
            readers,
            lease: Mutex::new(None),
        }
    }

    /// Takes the lease unless already held. Call before listing files.
    pub(crate) fn hold(&self) {
        let mut lease = self.lease.lock();
        if lease.is_none() {
            *lease = Some(self.readers.enter());
        }
    }
}

/// Takes the lease of the statement running with `config`, if it has one
/// (statements run by `Engine::execute` do).
pub(crate) fn hold_lease(config: &datafusion::execution::config::SessionConfig) {
    if let Some(lease) = config.get_extension::<StatementLease>() {
        lease.hold();
    }
}

/// One file waiting for its readers to finish.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct RetiredFile {
    /// Leases below this number may still read the file.
    watermark: u64,
    pub location: String,
    pub path: String,
}

/// The write-batch operations recording `files` as retired (the [`Trash`]
/// keyspace).
pub(crate) fn record_ops(files: &[ColdFile]) -> Vec<WriteOp> {
    files
        .iter()
        .map(|f| WriteOp::Put {
            cf: Trash.family().to_string(),
            key: Trash.key((&f.location, &f.path)),
            value: Vec::new(),
        })
        .collect()
}

/// The operation forgetting a retired file once it is deleted.
pub(crate) fn forget_op(file: &RetiredFile) -> WriteOp {
    Trash.delete_op((&file.location, &file.path))
}

/// Retired files recorded in RocksDB (left by a previous run): deletable
/// at once, since no statement of this run listed them.
pub(crate) fn recorded(
    storage: &crate::storage::Storage,
) -> crate::error::Result<Vec<RetiredFile>> {
    Ok(Trash
        .scan(storage, Trash.prefix())?
        .into_iter()
        .filter_map(|(key, ())| {
            let (location, path) = Trash.parse_key(&key)?;
            Some(RetiredFile {
                watermark: 0,
                location,
                path,
            })
        })
        .collect())
}

/// Retired files in memory, waiting for their readers.
#[derive(Debug, Default)]
pub(crate) struct Retired {
    files: Mutex<Vec<RetiredFile>>,
}

impl Retired {
    /// Adds files retired now (their retirement is already committed).
    pub(crate) fn add(&self, readers: &Readers, files: &[ColdFile]) {
        let watermark = readers.watermark();
        self.files.lock().extend(files.iter().map(|f| RetiredFile {
            watermark,
            location: f.location.clone(),
            path: f.path.clone(),
        }));
    }

    /// Adds files recorded by a previous run.
    pub(crate) fn restore(&self, files: Vec<RetiredFile>) {
        self.files.lock().extend(files);
    }

    /// Takes the files no statement can still read.
    pub(crate) fn take_due(&self, readers: &Readers) -> Vec<RetiredFile> {
        let oldest = readers.oldest();
        let mut files = self.files.lock();
        let (due, waiting): (Vec<_>, Vec<_>) = files
            .drain(..)
            .partition(|f| oldest.is_none_or(|o| o >= f.watermark));
        *files = waiting;
        due
    }

    /// Puts back files whose deletion failed, to try again later.
    pub(crate) fn put_back(&self, files: Vec<RetiredFile>) {
        self.files.lock().extend(files);
    }

    /// True when `location`/`path` is retired and not yet deleted.
    pub(crate) fn contains(&self, location: &str, path: &str) -> bool {
        self.files
            .lock()
            .iter()
            .any(|f| f.location == location && f.path == path)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn file(path: &str) -> ColdFile {
        ColdFile {
            name: path.into(),
            location: "local".into(),
            path: path.into(),
            rows: 1,
            tombstones: 0,
            bytes: 1,
            min_seq: 0,
            max_seq: 0,
            min_pk: Vec::new(),
            max_pk: Vec::new(),
            oldest_tombstone: None,
            created_at: 0,
            schema_version: 1,
        }
    }

    #[test]
    fn files_wait_for_the_statements_that_could_list_them() {
        let readers = Arc::new(Readers::default());
        let retired = Retired::default();
        let before = readers.enter();
        retired.add(&readers, &[file("a")]);
        let after = readers.enter();
        // A statement that started before the retirement may read "a".
        assert!(retired.take_due(&readers).is_empty());
        drop(before);
        // Only later statements remain: they listed the new manifest.
        let due = retired.take_due(&readers);
        assert_eq!(due.len(), 1);
        assert_eq!(due[0].path, "a");
        drop(after);
        assert!(retired.take_due(&readers).is_empty());
        retired.add(&readers, &[file("b")]);
        assert_eq!(retired.take_due(&readers).len(), 1, "no reader at all");
        // A statement's lease starts when it first lists files.
        let statement = StatementLease::new(readers.clone());
        retired.add(&readers, &[file("c")]);
        statement.hold();
        assert_eq!(
            retired.take_due(&readers).len(),
            1,
            "listed after the retirement"
        );
        retired.add(&readers, &[file("d")]);
        assert!(retired.take_due(&readers).is_empty(), "listed before it");
        drop(statement);
        assert_eq!(retired.take_due(&readers).len(), 1);
    }
}
