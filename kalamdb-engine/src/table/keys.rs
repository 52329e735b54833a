//! Partitions and row keys. [`Scope`] owns every encoding of a partition:
//! its row-key prefix, its tag in manifest and counter keys, its label in
//! job parameters and its directory name in a storage location.
//!
//! A USER-table key is `len(user_id) as u16 BE ‖ user_id ‖ pk`, so
//! one user's rows are one contiguous range and no user id (whatever it
//! contains) can produce another user's prefix. A SHARED-table key is `pk`.
//! Primary keys encode order-preservingly: integers big-endian with the sign
//! bit flipped, text as its UTF-8 bytes.

use kalamdb_model::StorageKey;
use serde_json::Value;

use super::def::ColumnType;
use crate::error::{EngineError, Result};

/// Whose partition of a table a statement works on.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Scope {
    /// One user's partition of a USER table.
    User(String),
    /// The one partition of a SHARED table.
    Shared,
}

impl Scope {
    /// Key prefix of every row in this scope.
    pub fn prefix(&self) -> Vec<u8> {
        match self {
            Scope::User(user_id) => {
                let bytes = user_id.as_bytes();
                let mut prefix = Vec::with_capacity(2 + bytes.len());
                prefix.extend_from_slice(&(bytes.len() as u16).to_be_bytes());
                prefix.extend_from_slice(bytes);
                prefix
            }
            Scope::Shared => Vec::new(),
        }
    }

    /// The smallest key above every row key of this scope: the end of a
    /// range delete of the whole partition. Shared keys are UTF-8 text (never
    /// a 0xFF byte) or 8-byte integers, all below nine 0xFF bytes.
    pub fn end_key(&self) -> Vec<u8> {
        let mut end = self.prefix();
        while let Some(last) = end.pop() {
            if last < 0xFF {
                end.push(last + 1);
                return end;
            }
        }
        vec![0xFF; 9]
    }

    /// Full key of the row with primary key bytes `pk`.
    pub fn row_key(&self, pk: &[u8]) -> Vec<u8> {
        let mut key = self.prefix();
        key.extend_from_slice(pk);
        key
    }

    /// The partition's tag in manifest and counter keys: `S`, or `U` and
    /// the row-key prefix.
    pub fn tag(&self) -> Vec<u8> {
        match self {
            Scope::Shared => vec![b'S'],
            Scope::User(_) => {
                let mut tag = vec![b'U'];
                tag.extend(self.prefix());
                tag
            }
        }
    }

    /// The partition a key part starting with its [`Scope::tag`] belongs
    /// to, and the tag's length.
    pub fn from_tag(tag: &[u8]) -> Option<(Scope, usize)> {
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

    /// The partition's label in job parameters: `user:{id}` or `shared`.
    pub fn label(&self) -> String {
        match self {
            Scope::User(id) => format!("user:{id}"),
            Scope::Shared => SHARED_LABEL.into(),
        }
    }

    /// The partition a [`Scope::label`] names.
    pub fn from_label(label: &str) -> Option<Scope> {
        match label.strip_prefix("user:") {
            Some(id) => Some(Scope::User(id.to_string())),
            None => (label == SHARED_LABEL).then_some(Scope::Shared),
        }
    }

    /// The partition's directory in a storage location (`${user_id}` of
    /// the path template): the user id made safe as one path segment, or
    /// `shared`.
    pub fn directory_name(&self) -> String {
        match self {
            Scope::User(user_id) => path_segment(user_id),
            Scope::Shared => SHARED_LABEL.into(),
        }
    }
}

/// Label and directory name of a SHARED table's one partition.
const SHARED_LABEL: &str = "shared";

/// A path segment for a name that may hold any character: `[A-Za-z0-9_.-]`
/// stay, everything else (and a leading `.`) becomes `=XX` per byte, so the
/// mapping is injective and never yields `.`, `..` or a separator.
pub(crate) fn path_segment(name: &str) -> String {
    let mut out = String::with_capacity(name.len());
    for (i, byte) in name.bytes().enumerate() {
        let keep =
            byte.is_ascii_alphanumeric() || byte == b'_' || byte == b'-' || (byte == b'.' && i > 0);
        if keep {
            out.push(byte as char);
        } else {
            out.push_str(&format!("={byte:02X}"));
        }
    }
    if out.is_empty() {
        out.push_str("=00");
    }
    out
}

/// The partition and primary key bytes of a stored row's key.
pub(crate) fn split_key(def: &super::TableDef, key: &[u8]) -> Result<(Scope, Vec<u8>)> {
    def.rules()
        .split_key(key)
        .ok_or_else(|| EngineError::Internal(format!("corrupt row key in {}", def.table_id())))
}

/// Encodes a primary-key cell.
pub(crate) fn encode_pk(ty: ColumnType, cell: &Value) -> Result<Vec<u8>> {
    match (ty, cell) {
        (ColumnType::Int | ColumnType::BigInt, Value::Number(n)) => n
            .as_i64()
            .map(|v| v.storage_key())
            .ok_or_else(|| EngineError::InvalidInput(format!("primary key {n} is not an integer"))),
        (ColumnType::Text, Value::String(s)) => Ok(s.as_bytes().to_vec()),
        (_, Value::Null) => Err(EngineError::InvalidInput(
            "the primary key must not be NULL".into(),
        )),
        (ty, other) => Err(EngineError::InvalidInput(format!(
            "primary key {other} is not a {}",
            ty.sql_name()
        ))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn user_prefixes_cannot_collide() {
        // "a" + pk "b:c" vs "a:b" + pk "c" must differ.
        let k1 = Scope::User("a".into()).row_key(b"b:c");
        let k2 = Scope::User("a:b".into()).row_key(b"c");
        assert_ne!(k1, k2);
        assert!(!k2.starts_with(&Scope::User("a".into()).prefix()));
    }

    #[test]
    fn end_keys_bound_their_partition() {
        let alice = Scope::User("alice".into());
        let (from, to) = (alice.prefix(), alice.end_key());
        let inside = |key: Vec<u8>| from <= key && key < to;
        assert!(inside(alice.row_key(&[0xFF; 12])));
        assert!(inside(alice.row_key(b"")));
        assert!(!inside(Scope::User("alicf".into()).row_key(b"")));
        assert!(!inside(Scope::User("alice0".into()).row_key(b"")));
        assert!(!inside(Scope::User("alic".into()).row_key(&[0xFF; 4])));
        assert!(Scope::Shared.row_key(&i64::MAX.storage_key()) < Scope::Shared.end_key());
        assert!(Scope::Shared.row_key("\u{10FFFF}".as_bytes()) < Scope::Shared.end_key());
    }

    #[test]
    fn every_encoding_round_trips() {
        for scope in [Scope::Shared, Scope::User("a:b\0c".into())] {
            let mut tag = scope.tag();
            let len = tag.len();
            tag.extend_from_slice(b"batch-1.parquet");
            assert_eq!(Scope::from_tag(&tag), Some((scope.clone(), len)));
            assert_eq!(Scope::from_label(&scope.label()), Some(scope));
        }
        assert_eq!(Scope::from_label("bogus"), None);
    }

    #[test]
    fn integer_keys_keep_order() {
        let a = encode_pk(ColumnType::BigInt, &json!(-5)).unwrap();
        let b = encode_pk(ColumnType::BigInt, &json!(3)).unwrap();
        assert!(a < b);
        assert!(encode_pk(ColumnType::BigInt, &json!(null)).is_err());
        assert!(encode_pk(ColumnType::Text, &json!(1)).is_err());
    }
}
