//! Row keys. A USER-table key is `len(user_id) as u16 BE ‖ user_id ‖ pk`, so
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
}

/// The partition and primary key bytes of a stored row's key.
pub fn split_key(def: &super::TableDef, key: &[u8]) -> Result<(Scope, Vec<u8>)> {
    match def.kind {
        super::TableKind::User => {
            let corrupt =
                || EngineError::Internal(format!("corrupt row key in {}", def.table_id()));
            let len = u16::from_be_bytes([
                *key.first().ok_or_else(corrupt)?,
                *key.get(1).ok_or_else(corrupt)?,
            ]) as usize;
            let user = key.get(2..2 + len).ok_or_else(corrupt)?;
            let user = String::from_utf8(user.to_vec()).map_err(|_| corrupt())?;
            Ok((Scope::User(user), key[2 + len..].to_vec()))
        }
        _ => Ok((Scope::Shared, key.to_vec())),
    }
}

/// Encodes a primary-key cell.
pub fn encode_pk(ty: ColumnType, cell: &Value) -> Result<Vec<u8>> {
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
    fn integer_keys_keep_order() {
        let a = encode_pk(ColumnType::BigInt, &json!(-5)).unwrap();
        let b = encode_pk(ColumnType::BigInt, &json!(3)).unwrap();
        assert!(a < b);
        assert!(encode_pk(ColumnType::BigInt, &json!(null)).is_err());
        assert!(encode_pk(ColumnType::Text, &json!(1)).is_err());
    }
}
