//! The manifest: which Parquet files hold a partition's flushed rows, and
//! the per-partition counters of rows written since the last flush.
//!
//! Both live in RocksDB so that a flush records its file and deletes the
//! flushed row versions in one write batch. Manifest entries are in the
//! `default` column family under `cold\0{table_id}\0{scope}{file}`; counters
//! in `user_table_counters` under `{table_id}\0{scope}`, where `{scope}` is
//! `S` for a SHARED table or `U` and the user's key prefix.

use serde::{Deserialize, Serialize};

use crate::error::{EngineError, Result};
use crate::storage::{Storage, USER_TABLE_COUNTERS_CF, WriteOp};
use crate::table::keys::Scope;

const MANIFEST_CF: &str = "default";

/// One Parquet file of a partition.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ColdFile {
    /// File name, unique within the partition (`batch-{id}.parquet`).
    pub name: String,
    /// Storage location holding it.
    pub location: String,
    /// Path relative to the location's root.
    pub path: String,
    pub rows: u64,
    /// Rows that are tombstones.
    pub tombstones: u64,
    pub bytes: u64,
    pub min_seq: i64,
    pub max_seq: i64,
    /// Smallest and largest encoded primary key (order-preserving).
    pub min_pk: Vec<u8>,
    pub max_pk: Vec<u8>,
    /// Oldest tombstone's commit time (µs), if any: when it may be purged.
    #[serde(default)]
    pub oldest_tombstone: Option<i64>,
    /// When the file was written (µs).
    pub created_at: i64,
}

fn scope_tag(scope: &Scope) -> Vec<u8> {
    match scope {
        Scope::Shared => vec![b'S'],
        Scope::User(_) => {
            let mut tag = vec![b'U'];
            tag.extend(scope.prefix());
            tag
        }
    }
}

fn scope_from_tag(tag: &[u8]) -> Option<(Scope, usize)> {
    match tag.first()? {
        b'S' => Some((Scope::Shared, 1)),
        b'U' => {
            let len = u16::from_be_bytes([*tag.get(1)?, *tag.get(2)?]) as usize;
            let id = std::str::from_utf8(tag.get(3..3 + len)?).ok()?;
            Some((Scope::User(id.to_string()), 3 + len))
        }
        _ => None,
    }
}

fn table_prefix(table_id: &str) -> Vec<u8> {
    let mut key = b"cold\0".to_vec();
    key.extend_from_slice(table_id.as_bytes());
    key.push(0);
    key
}

fn scope_prefix(table_id: &str, scope: &Scope) -> Vec<u8> {
    let mut key = table_prefix(table_id);
    key.extend(scope_tag(scope));
    key
}

fn counter_prefix(table_id: &str) -> Vec<u8> {
    let mut key = table_id.as_bytes().to_vec();
    key.push(0);
    key
}

fn counter_key(table_id: &str, scope: &Scope) -> Vec<u8> {
    let mut key = counter_prefix(table_id);
    key.extend(scope_tag(scope));
    key
}

fn decode_file(bytes: &[u8]) -> Result<ColdFile> {
    serde_json::from_slice(bytes)
        .map_err(|e| EngineError::Internal(format!("corrupt manifest entry: {e}")))
}

/// The files of one partition, oldest first.
pub fn files(storage: &Storage, table_id: &str, scope: &Scope) -> Result<Vec<ColdFile>> {
    let mut files: Vec<ColdFile> = storage
        .scan_prefix(MANIFEST_CF, &scope_prefix(table_id, scope))?
        .iter()
        .map(|(_, v)| decode_file(v))
        .collect::<Result<_>>()?;
    files.sort_by_key(|f| f.max_seq);
    Ok(files)
}

/// Every partition of a table that has files, with its files.
pub fn all_files(storage: &Storage, table_id: &str) -> Result<Vec<(Scope, Vec<ColdFile>)>> {
    let prefix = table_prefix(table_id);
    let mut out: Vec<(Scope, Vec<ColdFile>)> = Vec::new();
    for (key, value) in storage.scan_prefix(MANIFEST_CF, &prefix)? {
        let Some((scope, _)) = scope_from_tag(&key[prefix.len()..]) else {
            continue;
        };
        let file = decode_file(&value)?;
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
pub fn every_file(storage: &Storage) -> Result<Vec<ColdFile>> {
    storage
        .scan_prefix(MANIFEST_CF, b"cold\0")?
        .iter()
        .map(|(_, v)| decode_file(v))
        .collect()
}

/// Records a file.
pub fn add_op(table_id: &str, scope: &Scope, file: &ColdFile) -> Result<WriteOp> {
    let mut key = scope_prefix(table_id, scope);
    key.extend_from_slice(file.name.as_bytes());
    Ok(WriteOp::Put {
        cf: MANIFEST_CF.into(),
        key,
        value: serde_json::to_vec(file).map_err(|e| EngineError::Internal(e.to_string()))?,
    })
}

/// Forgets a file.
pub fn remove_op(table_id: &str, scope: &Scope, name: &str) -> WriteOp {
    let mut key = scope_prefix(table_id, scope);
    key.extend_from_slice(name.as_bytes());
    WriteOp::Delete {
        cf: MANIFEST_CF.into(),
        key,
    }
}

/// Operations removing every manifest entry and counter of a table.
pub fn drop_ops(storage: &Storage, table_id: &str) -> Result<Vec<WriteOp>> {
    let mut ops = Vec::new();
    for (key, _) in storage.scan_prefix(MANIFEST_CF, &table_prefix(table_id))? {
        ops.push(WriteOp::Delete {
            cf: MANIFEST_CF.into(),
            key,
        });
    }
    for (key, _) in storage.scan_prefix(USER_TABLE_COUNTERS_CF, &counter_prefix(table_id))? {
        ops.push(WriteOp::Delete {
            cf: USER_TABLE_COUNTERS_CF.into(),
            key,
        });
    }
    Ok(ops)
}

/// Rows written to a partition since its last flush.
pub fn counter(storage: &Storage, table_id: &str, scope: &Scope) -> Result<u64> {
    Ok(storage
        .get(USER_TABLE_COUNTERS_CF, &counter_key(table_id, scope))?
        .and_then(|b| <[u8; 8]>::try_from(b.as_slice()).ok())
        .map(u64::from_be_bytes)
        .unwrap_or(0))
}

/// Sets the counter (in the caller's write batch).
pub fn counter_op(table_id: &str, scope: &Scope, value: u64) -> WriteOp {
    let key = counter_key(table_id, scope);
    if value == 0 {
        WriteOp::Delete {
            cf: USER_TABLE_COUNTERS_CF.into(),
            key,
        }
    } else {
        WriteOp::Put {
            cf: USER_TABLE_COUNTERS_CF.into(),
            key,
            value: value.to_be_bytes().to_vec(),
        }
    }
}

/// Every partition of a table with rows written since its last flush.
pub fn pending(storage: &Storage, table_id: &str) -> Result<Vec<(Scope, u64)>> {
    let prefix = counter_prefix(table_id);
    let mut out = Vec::new();
    for (key, value) in storage.scan_prefix(USER_TABLE_COUNTERS_CF, &prefix)? {
        let count = <[u8; 8]>::try_from(value.as_slice())
            .map(u64::from_be_bytes)
            .unwrap_or(0);
        if let Some((scope, _)) = scope_from_tag(&key[prefix.len()..])
            && count > 0
        {
            out.push((scope, count));
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scope_tags_round_trip() {
        for scope in [Scope::Shared, Scope::User("a:b\0c".into())] {
            let mut tag = scope_tag(&scope);
            let len = tag.len();
            tag.extend_from_slice(b"batch-1.parquet");
            assert_eq!(scope_from_tag(&tag), Some((scope, len)));
        }
    }
}
