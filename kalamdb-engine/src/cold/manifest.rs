//! The manifest: which Parquet files hold a partition's flushed rows (the
//! [`Manifest`] keyspace). It lives in RocksDB so that a flush records its
//! file and deletes the flushed row versions in one write batch.

use crate::error::Result;
pub(crate) use crate::keyspace::ColdFile;
use crate::keyspace::{Keyspace, Manifest};
use crate::storage::{Storage, WriteOp};
use crate::table::TableId;
use crate::table::keys::Scope;

/// The files of one partition, oldest first.
pub(crate) fn files(storage: &Storage, table_id: &TableId, scope: &Scope) -> Result<Vec<ColdFile>> {
    let mut files: Vec<ColdFile> = Manifest
        .scan(storage, &Manifest.partition_prefix(table_id, scope))?
        .into_iter()
        .map(|(_, file)| file)
        .collect();
    files.sort_by_key(|f| f.max_seq);
    Ok(files)
}

/// Every partition of a table that has files, with its files.
pub(crate) fn all_files(
    storage: &Storage,
    table_id: &TableId,
) -> Result<Vec<(Scope, Vec<ColdFile>)>> {
    let mut out: Vec<(Scope, Vec<ColdFile>)> = Vec::new();
    for (key, file) in Manifest.scan(storage, &Manifest.table_prefix(table_id))? {
        let Some(scope) = Manifest.partition_of(table_id, &key) else {
            continue;
        };
        match out.last_mut() {
            Some((last, files)) if *last == scope => files.push(file),
            _ => out.push((scope, vec![file])),
        }
    }
    for (_, files) in &mut out {
        files.sort_by_key(|f| f.max_seq);
    }
    Ok(out)
}

/// Every file of every table's manifest.
pub(crate) fn every_file(storage: &Storage) -> Result<Vec<ColdFile>> {
    Ok(Manifest
        .scan(storage, Manifest.all_prefix())?
        .into_iter()
        .map(|(_, file)| file)
        .collect())
}

/// Records a file.
pub(crate) fn add_op(table_id: &TableId, scope: &Scope, file: &ColdFile) -> Result<WriteOp> {
    Manifest.put_op((table_id, scope, &file.name), file)
}

/// Forgets a file.
pub(crate) fn remove_op(table_id: &TableId, scope: &Scope, name: &str) -> WriteOp {
    Manifest.delete_op((table_id, scope, name))
}

/// Operations removing every manifest entry of a table.
pub(crate) fn drop_ops(storage: &Storage, table_id: &TableId) -> Result<Vec<WriteOp>> {
    Ok(storage
        .scan_prefix(Manifest.family(), &Manifest.table_prefix(table_id))?
        .into_iter()
        .map(|(key, _)| Manifest.delete_raw_op(key))
        .collect())
}
