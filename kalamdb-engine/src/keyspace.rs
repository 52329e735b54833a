//! Every RocksDB keyspace the engine writes, declared once: where it lives,
//! its key and value types and their encoding. Nothing else builds a key
//! or decodes a value by hand.
//!
//! | keyspace | column family | key | value |
//! |---|---|---|---|
//! | [`Rows`] | `{kind}_table:{ns}:{table}` (one per table) | partition prefix ‖ primary key | [`StoredRow`] |
//! | [`Manifest`] | `default` | `cold\0{table_id}\0{partition tag}{file name}` | [`ColdFile`] (JSON) |
//! | [`Counters`] | `user_table_counters` | `{table_id}\0{partition tag}` | rows since the last flush (u64 BE) |
//! | [`SeqHighWater`] | `default` | `seq_high_water` | last `_seq` handed out (i64 BE) |
//! | [`Evicted`] | `default` | `stream\0{table_id}\0{partition tag}` | last `_seq` a STREAM partition evicted (i64 BE) |
//! | [`Trash`] | `default` | `trash\0{location}\0{path}` | empty |
//! | [`UserNames`] | `default` | `user_name\0{login name}` | user id |
//! | [`Markers`] | `default` | `meta\0{marker}` | `1` |
//! | system tables | one per model | the model's key | the model (JSON): `system::SystemStore` |
//!
//! Partition tags and prefixes come from [`Scope`]. The encodings are those
//! of every earlier release: a data directory reads the same.

use serde::{Deserialize, Serialize};

use crate::error::{EngineError, Result};
use crate::storage::{Storage, USER_TABLE_COUNTERS_CF, WriteOp};
use crate::table::TableId;
use crate::table::keys::Scope;
use crate::table::row::StoredRow;

const DEFAULT_CF: &str = "default";

/// A keyspace: a column family (or a key prefix within one) with typed keys
/// and values.
pub(crate) trait Keyspace {
    type Key<'a>;
    type Value;

    fn family(&self) -> &str;
    fn key(&self, key: Self::Key<'_>) -> Vec<u8>;
    fn encode(&self, value: &Self::Value) -> Result<Vec<u8>>;
    fn decode(&self, bytes: &[u8]) -> Result<Self::Value>;

    fn get(&self, storage: &Storage, key: Self::Key<'_>) -> Result<Option<Self::Value>> {
        storage
            .get(self.family(), &self.key(key))?
            .map(|bytes| self.decode(&bytes))
            .transpose()
    }

    /// Writes `value` (in the caller's write batch).
    fn put_op(&self, key: Self::Key<'_>, value: &Self::Value) -> Result<WriteOp> {
        Ok(WriteOp::Put {
            cf: self.family().to_string(),
            key: self.key(key),
            value: self.encode(value)?,
        })
    }

    fn delete_op(&self, key: Self::Key<'_>) -> WriteOp {
        self.delete_raw_op(self.key(key))
    }

    fn delete_raw_op(&self, key: Vec<u8>) -> WriteOp {
        WriteOp::Delete {
            cf: self.family().to_string(),
            key,
        }
    }

    /// Every entry whose encoded key starts with `prefix`, in key order.
    fn scan(&self, storage: &Storage, prefix: &[u8]) -> Result<Vec<(Vec<u8>, Self::Value)>> {
        storage
            .scan_prefix(self.family(), prefix)?
            .into_iter()
            .map(|(key, value)| Ok((key, self.decode(&value)?)))
            .collect()
    }
}

fn corrupt(what: &str, e: impl std::fmt::Display) -> EngineError {
    EngineError::Internal(format!("corrupt {what}: {e}"))
}

fn be_u64(bytes: &[u8]) -> u64 {
    <[u8; 8]>::try_from(bytes)
        .map(u64::from_be_bytes)
        .unwrap_or(0)
}

/// The row versions of one table (its own column family).
#[derive(Debug, Clone)]
pub(crate) struct Rows {
    family: String,
}

impl Rows {
    pub(crate) fn new(family: String) -> Self {
        Rows { family }
    }
}

impl Keyspace for Rows {
    /// A partition and a primary key's bytes.
    type Key<'a> = (&'a Scope, &'a [u8]);
    type Value = StoredRow;

    fn family(&self) -> &str {
        &self.family
    }
    fn key(&self, (scope, pk): Self::Key<'_>) -> Vec<u8> {
        scope.row_key(pk)
    }
    fn encode(&self, value: &StoredRow) -> Result<Vec<u8>> {
        value.encode()
    }
    fn decode(&self, bytes: &[u8]) -> Result<StoredRow> {
        StoredRow::decode(bytes)
    }
}

/// One Parquet file of a partition: the manifest's value.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub(crate) struct ColdFile {
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
    /// The table's schema version the file was written under (entries
    /// from before versions were recorded are version 1): its columns are
    /// that version's, matched to today's by the Parquet field ids.
    #[serde(default = "first_version")]
    pub schema_version: i32,
}

fn first_version() -> i32 {
    1
}

/// Which Parquet files hold each partition's flushed rows.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Manifest;

const MANIFEST_PREFIX: &[u8] = b"cold\0";

impl Manifest {
    /// Prefix of every entry of every table.
    pub(crate) fn all_prefix(&self) -> &'static [u8] {
        MANIFEST_PREFIX
    }

    /// Prefix of every entry of one table.
    pub(crate) fn table_prefix(&self, table_id: &TableId) -> Vec<u8> {
        let mut key = MANIFEST_PREFIX.to_vec();
        table_id.append_to(&mut key);
        key.push(0);
        key
    }

    /// Prefix of every entry of one partition.
    pub(crate) fn partition_prefix(&self, table_id: &TableId, scope: &Scope) -> Vec<u8> {
        let mut key = self.table_prefix(table_id);
        key.extend(scope.tag());
        key
    }

    /// The partition of an entry found under [`Manifest::table_prefix`].
    pub(crate) fn partition_of(&self, table_id: &TableId, key: &[u8]) -> Option<Scope> {
        let prefix_len = self.table_prefix(table_id).len();
        Scope::from_tag(key.get(prefix_len..)?).map(|(scope, _)| scope)
    }
}

impl Keyspace for Manifest {
    /// Table id, partition, file name.
    type Key<'a> = (&'a TableId, &'a Scope, &'a str);
    type Value = ColdFile;

    fn family(&self) -> &str {
        DEFAULT_CF
    }
    fn key(&self, (table_id, scope, name): Self::Key<'_>) -> Vec<u8> {
        let mut key = self.partition_prefix(table_id, scope);
        key.extend_from_slice(name.as_bytes());
        key
    }
    fn encode(&self, value: &ColdFile) -> Result<Vec<u8>> {
        serde_json::to_vec(value).map_err(|e| EngineError::Internal(e.to_string()))
    }
    fn decode(&self, bytes: &[u8]) -> Result<ColdFile> {
        serde_json::from_slice(bytes).map_err(|e| corrupt("manifest entry", e))
    }
}

/// Rows written to each partition since its last flush (for `FLUSH
/// POLICY ROWS`).
#[derive(Debug, Clone, Copy)]
pub(crate) struct Counters;

impl Counters {
    /// Prefix of every counter of one table.
    pub(crate) fn table_prefix(&self, table_id: &TableId) -> Vec<u8> {
        let mut key = Vec::new();
        table_id.append_to(&mut key);
        key.push(0);
        key
    }

    /// The partition of a counter found under [`Counters::table_prefix`].
    pub(crate) fn partition_of(&self, table_id: &TableId, key: &[u8]) -> Option<Scope> {
        let prefix_len = self.table_prefix(table_id).len();
        Scope::from_tag(key.get(prefix_len..)?).map(|(scope, _)| scope)
    }

    /// Sets a counter; zero removes it.
    pub(crate) fn set_op(&self, table_id: &TableId, scope: &Scope, value: u64) -> WriteOp {
        if value == 0 {
            self.delete_op((table_id, scope))
        } else {
            WriteOp::Put {
                cf: self.family().to_string(),
                key: self.key((table_id, scope)),
                value: value.to_be_bytes().to_vec(),
            }
        }
    }
}

impl Keyspace for Counters {
    /// Table id and partition.
    type Key<'a> = (&'a TableId, &'a Scope);
    type Value = u64;

    fn family(&self) -> &str {
        USER_TABLE_COUNTERS_CF
    }
    fn key(&self, (table_id, scope): Self::Key<'_>) -> Vec<u8> {
        let mut key = self.table_prefix(table_id);
        key.extend(scope.tag());
        key
    }
    fn encode(&self, value: &u64) -> Result<Vec<u8>> {
        Ok(value.to_be_bytes().to_vec())
    }
    fn decode(&self, bytes: &[u8]) -> Result<u64> {
        Ok(be_u64(bytes))
    }
}

/// The last `_seq` handed out, written with every commit so sequences
/// never repeat across restarts.
#[derive(Debug, Clone, Copy)]
pub(crate) struct SeqHighWater;

impl Keyspace for SeqHighWater {
    type Key<'a> = ();
    type Value = i64;

    fn family(&self) -> &str {
        DEFAULT_CF
    }
    fn key(&self, (): ()) -> Vec<u8> {
        b"seq_high_water".to_vec()
    }
    fn encode(&self, value: &i64) -> Result<Vec<u8>> {
        Ok(value.to_be_bytes().to_vec())
    }
    fn decode(&self, bytes: &[u8]) -> Result<i64> {
        Ok(be_u64(bytes) as i64)
    }
}

/// The last `_seq` each STREAM partition evicted (by retention or
/// `max_buffer`): a resume from before it would miss events.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Evicted;

impl Evicted {
    /// Prefix of every mark of one table.
    pub(crate) fn table_prefix(&self, table_id: &TableId) -> Vec<u8> {
        let mut key = b"stream\0".to_vec();
        table_id.append_to(&mut key);
        key.push(0);
        key
    }
}

impl Keyspace for Evicted {
    /// Table id and partition.
    type Key<'a> = (&'a TableId, &'a Scope);
    type Value = i64;

    fn family(&self) -> &str {
        DEFAULT_CF
    }
    fn key(&self, (table_id, scope): Self::Key<'_>) -> Vec<u8> {
        let mut key = self.table_prefix(table_id);
        key.extend(scope.tag());
        key
    }
    fn encode(&self, value: &i64) -> Result<Vec<u8>> {
        Ok(value.to_be_bytes().to_vec())
    }
    fn decode(&self, bytes: &[u8]) -> Result<i64> {
        Ok(be_u64(bytes) as i64)
    }
}

/// Files taken out of a manifest and not yet deleted (they wait for the
/// statements that may read them).
#[derive(Debug, Clone, Copy)]
pub(crate) struct Trash;

const TRASH_PREFIX: &[u8] = b"trash\0";

impl Trash {
    pub(crate) fn prefix(&self) -> &'static [u8] {
        TRASH_PREFIX
    }

    /// Location name and path of an entry's key.
    pub(crate) fn parse_key(&self, key: &[u8]) -> Option<(String, String)> {
        let rest = std::str::from_utf8(key.strip_prefix(TRASH_PREFIX)?).ok()?;
        let (location, path) = rest.split_once('\0')?;
        Some((location.to_string(), path.to_string()))
    }
}

impl Keyspace for Trash {
    /// Location name and path.
    type Key<'a> = (&'a str, &'a str);
    type Value = ();

    fn family(&self) -> &str {
        DEFAULT_CF
    }
    fn key(&self, (location, path): Self::Key<'_>) -> Vec<u8> {
        let mut key = TRASH_PREFIX.to_vec();
        key.extend_from_slice(location.as_bytes());
        key.push(0);
        key.extend_from_slice(path.as_bytes());
        key
    }
    fn encode(&self, (): &()) -> Result<Vec<u8>> {
        Ok(Vec::new())
    }
    fn decode(&self, _: &[u8]) -> Result<()> {
        Ok(())
    }
}

/// Login name → user id (ids are never reused; names are).
#[derive(Debug, Clone, Copy)]
pub(crate) struct UserNames;

impl Keyspace for UserNames {
    type Key<'a> = &'a str;
    type Value = String;

    fn family(&self) -> &str {
        DEFAULT_CF
    }
    fn key(&self, name: &str) -> Vec<u8> {
        let mut key = b"user_name\0".to_vec();
        key.extend_from_slice(name.as_bytes());
        key
    }
    fn encode(&self, value: &String) -> Result<Vec<u8>> {
        Ok(value.as_bytes().to_vec())
    }
    fn decode(&self, bytes: &[u8]) -> Result<String> {
        String::from_utf8(bytes.to_vec()).map_err(|e| corrupt("user name index", e))
    }
}

/// One-time migrations done on a data directory.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Markers;

impl Keyspace for Markers {
    type Key<'a> = &'a str;
    type Value = ();

    fn family(&self) -> &str {
        DEFAULT_CF
    }
    fn key(&self, marker: &str) -> Vec<u8> {
        let mut key = b"meta\0".to_vec();
        key.extend_from_slice(marker.as_bytes());
        key
    }
    fn encode(&self, (): &()) -> Result<Vec<u8>> {
        Ok(b"1".to_vec())
    }
    fn decode(&self, _: &[u8]) -> Result<()> {
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The byte layouts of earlier releases, written out: a data directory
    /// they wrote must read the same.
    #[test]
    fn keys_keep_their_on_disk_layout() {
        let t = &TableId::new("app", "t");
        let alice = Scope::User("al".into());
        assert_eq!(
            Manifest.key((t, &alice, "batch-1.parquet")),
            b"cold\0app.t\0U\0\x02albatch-1.parquet".to_vec()
        );
        assert_eq!(
            Manifest.key((t, &Scope::Shared, "f")),
            b"cold\0app.t\0Sf".to_vec()
        );
        assert_eq!(Counters.key((t, &alice)), b"app.t\0U\0\x02al".to_vec());
        assert_eq!(SeqHighWater.key(()), b"seq_high_water".to_vec());
        assert_eq!(Trash.key(("local", "a/b")), b"trash\0local\0a/b".to_vec());
        assert_eq!(
            Trash.parse_key(b"trash\0local\0a/b"),
            Some(("local".into(), "a/b".into()))
        );
        assert_eq!(UserNames.key("bob"), b"user_name\0bob".to_vec());
        assert_eq!(Markers.key("x"), b"meta\0x".to_vec());
        let key = Manifest.key((t, &alice, "f"));
        assert_eq!(Manifest.partition_of(t, &key), Some(alice));
    }
}
