//! The RocksDB hot tier: one instance, one column family per system table
//! and per user/shared/stream table. Only this module opens the database.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use rocksdb::{
    BoundColumnFamily, ColumnFamilyDescriptor, DBWithThreadMode, MultiThreaded, Options, WriteBatch,
};

use crate::error::{EngineError, Result};

type Db = DBWithThreadMode<MultiThreaded>;

/// A point-in-time view of the database (see [`Storage::snapshot`]).
pub(crate) struct Snapshot<'a> {
    storage: &'a Storage,
    snapshot: rocksdb::SnapshotWithThreadMode<'a, Db>,
}

impl Snapshot<'_> {
    /// Visits every key/value pair of a column family starting with
    /// `prefix`, in key order, as of the snapshot.
    pub(crate) fn walk_prefix(
        &self,
        cf: &str,
        prefix: &[u8],
        mut visit: impl FnMut(&[u8], &[u8]) -> Result<()>,
    ) -> Result<()> {
        let mut options = rocksdb::ReadOptions::default();
        options.set_snapshot(&self.snapshot);
        self.storage.walk_prefix(cf, prefix, options, |key, value| {
            visit(key, value)?;
            Ok(true)
        })
    }

    /// Every key/value pair starting with `prefix`, as of the snapshot.
    pub(crate) fn scan_prefix(&self, cf: &str, prefix: &[u8]) -> Result<Vec<(Vec<u8>, Vec<u8>)>> {
        let mut out = Vec::new();
        self.walk_prefix(cf, prefix, |key, value| {
            out.push((key.to_vec(), value.to_vec()));
            Ok(())
        })?;
        Ok(out)
    }
}

/// Column family of the per-user row counters used by flush policies.
pub(crate) const USER_TABLE_COUNTERS_CF: &str = "user_table_counters";

pub(crate) struct Storage {
    db: Db,
    path: PathBuf,
    /// Names of the open column families, for size reports.
    families: parking_lot::RwLock<std::collections::BTreeSet<String>>,
    /// Range deletions written per column family since its memtable was
    /// last flushed by [`Storage::write_with`].
    range_deletes: parking_lot::Mutex<std::collections::HashMap<String, usize>>,
}

impl std::fmt::Debug for Storage {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Storage").field("path", &self.path).finish()
    }
}

fn cf_options() -> Options {
    let mut opts = Options::default();
    opts.set_compression_type(rocksdb::DBCompressionType::Lz4);
    opts
}

impl Storage {
    /// Opens (or creates) the database at `path` with every column family it
    /// already has, creating any of `required` that are missing.
    pub(crate) fn open(path: &Path, required: &[&str]) -> Result<Self> {
        std::fs::create_dir_all(path)
            .map_err(|e| EngineError::Internal(format!("cannot create {}: {e}", path.display())))?;
        let mut db_opts = Options::default();
        db_opts.create_if_missing(true);
        db_opts.create_missing_column_families(true);
        db_opts.increase_parallelism(2);

        let mut names = Db::list_cf(&db_opts, path).unwrap_or_default();
        for name in required {
            if !names.iter().any(|n| n == name) {
                names.push(name.to_string());
            }
        }
        let descriptors = names
            .iter()
            .map(|name| ColumnFamilyDescriptor::new(name, cf_options()));
        let db = Db::open_cf_descriptors(&db_opts, path, descriptors)?;
        Ok(Storage {
            db,
            path: path.to_path_buf(),
            families: parking_lot::RwLock::new(names.into_iter().collect()),
            range_deletes: parking_lot::Mutex::new(std::collections::HashMap::new()),
        })
    }

    fn cf(&self, name: &str) -> Result<Arc<BoundColumnFamily<'_>>> {
        self.db
            .cf_handle(name)
            .ok_or_else(|| EngineError::Internal(format!("column family {name} is missing")))
    }

    pub(crate) fn has_cf(&self, name: &str) -> bool {
        self.db.cf_handle(name).is_some()
    }

    pub(crate) fn create_cf(&self, name: &str) -> Result<()> {
        if !self.has_cf(name) {
            self.db.create_cf(name, &cf_options())?;
            self.families.write().insert(name.to_string());
        }
        Ok(())
    }

    pub(crate) fn drop_cf(&self, name: &str) -> Result<()> {
        if self.has_cf(name) {
            self.db.drop_cf(name)?;
            self.families.write().remove(name);
        }
        Ok(())
    }

    pub(crate) fn get(&self, cf: &str, key: &[u8]) -> Result<Option<Vec<u8>>> {
        Ok(self.db.get_cf(&self.cf(cf)?, key)?)
    }

    /// The values of several keys of one column family, in order.
    pub(crate) fn multi_get(&self, cf: &str, keys: &[&[u8]]) -> Result<Vec<Option<Vec<u8>>>> {
        let handle = self.cf(cf)?;
        self.db
            .batched_multi_get_cf(&handle, keys, false)
            .into_iter()
            .map(|r| Ok(r?.map(|v| v.to_vec())))
            .collect()
    }

    pub(crate) fn put(&self, cf: &str, key: &[u8], value: &[u8]) -> Result<()> {
        Ok(self.db.put_cf(&self.cf(cf)?, key, value)?)
    }

    pub(crate) fn delete(&self, cf: &str, key: &[u8]) -> Result<()> {
        Ok(self.db.delete_cf(&self.cf(cf)?, key)?)
    }

    /// Every key/value pair whose key starts with `prefix`, in key order.
    pub(crate) fn scan_prefix(&self, cf: &str, prefix: &[u8]) -> Result<Vec<(Vec<u8>, Vec<u8>)>> {
        self.scan_prefix_limit(cf, prefix, usize::MAX)
    }

    /// At most `limit` key/value pairs whose key starts with `prefix`, in
    /// key order.
    pub(crate) fn scan_prefix_limit(
        &self,
        cf: &str,
        prefix: &[u8],
        limit: usize,
    ) -> Result<Vec<(Vec<u8>, Vec<u8>)>> {
        let mut out = Vec::new();
        if limit == 0 {
            return Ok(out);
        }
        self.walk_prefix(cf, prefix, rocksdb::ReadOptions::default(), |key, value| {
            out.push((key.to_vec(), value.to_vec()));
            Ok(out.len() < limit)
        })?;
        Ok(out)
    }

    /// Visits the pairs whose key starts with `prefix`, in key order, while
    /// `visit` returns true.
    fn walk_prefix(
        &self,
        cf: &str,
        prefix: &[u8],
        options: rocksdb::ReadOptions,
        mut visit: impl FnMut(&[u8], &[u8]) -> Result<bool>,
    ) -> Result<()> {
        let handle = self.cf(cf)?;
        let mut iter = self.db.raw_iterator_cf_opt(&handle, options);
        iter.seek(prefix);
        while let (Some(key), Some(value)) = (iter.key(), iter.value()) {
            if !key.starts_with(prefix) || !visit(key, value)? {
                break;
            }
            iter.next();
        }
        iter.status()?;
        Ok(())
    }

    /// Visits a column family in key order; `visit` says where to go next.
    pub(crate) fn walk(
        &self,
        cf: &str,
        mut visit: impl FnMut(&[u8], &[u8]) -> Result<Walk>,
    ) -> Result<()> {
        let handle = self.cf(cf)?;
        let mut iter = self.db.raw_iterator_cf(&handle);
        iter.seek_to_first();
        while let (Some(key), Some(value)) = (iter.key(), iter.value()) {
            match visit(key, value)? {
                Walk::Next => iter.next(),
                Walk::SeekTo(to) => iter.seek(&to),
            }
        }
        iter.status()?;
        Ok(())
    }

    /// A consistent view of the whole database as of now: every later
    /// write is invisible to it (backups read through one).
    pub(crate) fn snapshot(&self) -> Snapshot<'_> {
        Snapshot {
            storage: self,
            snapshot: self.db.snapshot(),
        }
    }

    /// Applies puts and deletes over several column families atomically.
    pub(crate) fn write(&self, ops: Vec<WriteOp>) -> Result<()> {
        self.write_with(ops, Durability::Logged)
    }

    /// [`Storage::write`] with the given durability.
    pub(crate) fn write_with(&self, ops: Vec<WriteOp>, durability: Durability) -> Result<()> {
        let mut batch = WriteBatch::default();
        let mut ranged: Vec<String> = Vec::new();
        for op in ops {
            match op {
                WriteOp::Put { cf, key, value } => batch.put_cf(&self.cf(&cf)?, key, value),
                WriteOp::Delete { cf, key } => batch.delete_cf(&self.cf(&cf)?, key),
                WriteOp::DeleteRange { cf, from, to } => {
                    batch.delete_range_cf(&self.cf(&cf)?, from, to);
                    ranged.push(cf);
                }
            }
        }
        let mut options = rocksdb::WriteOptions::default();
        match durability {
            Durability::Logged => {}
            Durability::Unlogged => options.disable_wal(true),
            Durability::Synced => options.set_sync(true),
        }
        self.db.write_opt(batch, &options)?;
        if !ranged.is_empty() {
            let mut counts = self.range_deletes.lock();
            for cf in ranged {
                *counts.entry(cf).or_default() += 1;
            }
        }
        Ok(())
    }

    /// Flushes a column family's memtable once it holds at least `limit`
    /// range deletions written since the last such flush. Every iterator
    /// over a memtable pays for each range tombstone in it (after a flush
    /// job over 1,000 partitions, every read of the table took ~10 ms
    /// more); in an SST file they are fragmented once and cached.
    pub(crate) fn settle_range_deletes(&self, cf: &str, limit: usize) -> Result<()> {
        let due = {
            let mut counts = self.range_deletes.lock();
            match counts.get_mut(cf) {
                Some(count) if *count >= limit => {
                    *count = 0;
                    true
                }
                _ => false,
            }
        };
        if due {
            self.flush_cf(cf)?;
        }
        Ok(())
    }

    /// Bytes the database holds: SST files plus live memtables, summed over
    /// every column family. Reads RocksDB's counters; touches no file.
    pub(crate) fn approximate_size(&self) -> Result<u64> {
        let mut total = 0u64;
        for name in self.families.read().iter() {
            let Some(cf) = self.db.cf_handle(name) else {
                continue;
            };
            for property in [
                rocksdb::properties::TOTAL_SST_FILES_SIZE,
                rocksdb::properties::CUR_SIZE_ALL_MEM_TABLES,
            ] {
                total = total
                    .saturating_add(self.db.property_int_value_cf(&cf, property)?.unwrap_or(0));
            }
        }
        Ok(total)
    }

    /// Writes a column family's memtable to disk (what an unlogged write
    /// needs to survive a restart).
    pub(crate) fn flush_cf(&self, name: &str) -> Result<()> {
        Ok(self.db.flush_cf(&self.cf(name)?)?)
    }
}

/// Where [`Storage::walk`] goes next.
#[derive(Debug)]
pub(crate) enum Walk {
    Next,
    /// The first key at or after this one.
    SeekTo(Vec<u8>),
}

/// How durable a write is before it returns.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Durability {
    /// In the write-ahead log (the default): survives a crash of the
    /// process.
    Logged,
    /// Memtable only: lost in a crash unless flushed first (STREAM rows).
    Unlogged,
    /// In the write-ahead log and fsynced.
    Synced,
}

/// One operation of an atomic [`Storage::write`].
#[derive(Debug, Clone)]
pub(crate) enum WriteOp {
    Put {
        cf: String,
        key: Vec<u8>,
        value: Vec<u8>,
    },
    Delete {
        cf: String,
        key: Vec<u8>,
    },
    /// Deletes every key in `[from, to)` with one range tombstone.
    DeleteRange {
        cf: String,
        from: Vec<u8>,
        to: Vec<u8>,
    },
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn column_families_survive_reopen() {
        let dir = tempfile::tempdir().unwrap();
        {
            let s = Storage::open(dir.path(), &["a"]).unwrap();
            s.create_cf("user_table:app:t").unwrap();
            s.put("user_table:app:t", b"k1", b"v1").unwrap();
            s.put("a", b"x", b"1").unwrap();
        }
        let s = Storage::open(dir.path(), &["a", "b"]).unwrap();
        assert!(s.has_cf("b"));
        assert_eq!(s.get("user_table:app:t", b"k1").unwrap().unwrap(), b"v1");
        s.drop_cf("user_table:app:t").unwrap();
        assert!(!s.has_cf("user_table:app:t"));
    }

    #[test]
    fn size_counts_memtables_and_sst_files_of_every_family() {
        let dir = tempfile::tempdir().unwrap();
        let s = Storage::open(dir.path(), &["a"]).unwrap();
        let empty = s.approximate_size().unwrap();
        s.create_cf("t").unwrap();
        s.put("t", b"k", &[7u8; 4096]).unwrap();
        let in_memtable = s.approximate_size().unwrap();
        assert!(in_memtable > empty, "{in_memtable} > {empty}");
        s.flush_cf("t").unwrap();
        assert!(s.approximate_size().unwrap() > empty);
        s.drop_cf("t").unwrap();
        assert_eq!(s.approximate_size().unwrap(), empty);
    }

    #[test]
    fn prefix_scan_and_batches() {
        let dir = tempfile::tempdir().unwrap();
        let s = Storage::open(dir.path(), &["a"]).unwrap();
        s.write(vec![
            WriteOp::Put {
                cf: "a".into(),
                key: b"p:1".to_vec(),
                value: b"1".to_vec(),
            },
            WriteOp::Put {
                cf: "a".into(),
                key: b"p:2".to_vec(),
                value: b"2".to_vec(),
            },
            WriteOp::Put {
                cf: "a".into(),
                key: b"q:1".to_vec(),
                value: b"3".to_vec(),
            },
        ])
        .unwrap();
        let rows = s.scan_prefix("a", b"p:").unwrap();
        assert_eq!(rows.len(), 2);
        s.write(vec![WriteOp::Delete {
            cf: "a".into(),
            key: b"p:1".to_vec(),
        }])
        .unwrap();
        assert_eq!(s.scan_prefix("a", b"p:").unwrap().len(), 1);
    }
}
