//! What differs between table kinds, in one place: how a kind partitions
//! and keys its rows, which system columns it has, whether its rows move
//! to Parquet and who may write it. Everything else (provider, registry,
//! jobs, live queries) asks [`TableDef::rules`] instead of matching on
//! [`TableKind`]. A new kind is one more implementation of [`KindRules`]
//! and one arm in [`rules`].

use kalamdb_model::Role;

use super::def::{DELETED_COLUMN, SEQ_COLUMN, TableKind, UPDATED_COLUMN};
use super::keys::Scope;
use crate::session::Caller;

pub trait KindRules: Send + Sync {
    /// The partition a caller reads and writes.
    fn partition(&self, caller: &Caller) -> Scope;

    /// The partition and primary-key bytes of a stored row key, or `None`
    /// for a key this kind cannot have written.
    fn split_key(&self, key: &[u8]) -> Option<(Scope, Vec<u8>)>;

    /// The lowest role that may write (its own partition, for a
    /// partitioned kind).
    fn min_writer(&self) -> Role;

    /// System columns after the user columns, in order.
    fn system_columns(&self) -> &'static [&'static str];

    /// Whether rows move to Parquet (flush, compaction, cleanup jobs).
    fn flushes(&self) -> bool;

    /// Whether rows are keyed by their `_seq` (an append-only log of
    /// events: no key lookups, no duplicate-key check, oldest first)
    /// instead of their primary key.
    fn keyed_by_sequence(&self) -> bool {
        false
    }

    /// Whether UPDATE and DELETE apply.
    fn mutable(&self) -> bool {
        true
    }
}

/// The rules of `kind`.
pub(crate) fn rules(kind: TableKind) -> &'static dyn KindRules {
    match kind {
        TableKind::User => &UserRules,
        TableKind::Shared => &SharedRules,
        TableKind::Stream => &StreamRules,
    }
}

const VERSIONED: [&str; 3] = [SEQ_COLUMN, UPDATED_COLUMN, DELETED_COLUMN];

/// One partition per user: a key is `len(user_id) as u16 BE ‖ user_id ‖ pk`.
struct UserRules;

impl KindRules for UserRules {
    fn partition(&self, caller: &Caller) -> Scope {
        Scope::User(caller.user_id.clone())
    }

    fn split_key(&self, key: &[u8]) -> Option<(Scope, Vec<u8>)> {
        let len = u16::from_be_bytes([*key.first()?, *key.get(1)?]) as usize;
        let user = std::str::from_utf8(key.get(2..2 + len)?).ok()?;
        Some((Scope::User(user.to_string()), key[2 + len..].to_vec()))
    }

    fn min_writer(&self) -> Role {
        Role::User
    }

    fn system_columns(&self) -> &'static [&'static str] {
        &VERSIONED
    }

    fn flushes(&self) -> bool {
        true
    }
}

/// One partition for everybody: a key is the primary key.
struct SharedRules;

impl KindRules for SharedRules {
    fn partition(&self, _caller: &Caller) -> Scope {
        Scope::Shared
    }

    fn split_key(&self, key: &[u8]) -> Option<(Scope, Vec<u8>)> {
        Some((Scope::Shared, key.to_vec()))
    }

    fn min_writer(&self) -> Role {
        Role::Service
    }

    fn system_columns(&self) -> &'static [&'static str] {
        &VERSIONED
    }

    fn flushes(&self) -> bool {
        true
    }
}

/// One partition per user like USER tables, keyed by `_seq` within it:
/// `len(user_id) as u16 BE ‖ user_id ‖ _seq`. Events are never flushed,
/// updated or deleted; they expire (`stream.rs`).
struct StreamRules;

impl KindRules for StreamRules {
    fn partition(&self, caller: &Caller) -> Scope {
        UserRules.partition(caller)
    }

    fn split_key(&self, key: &[u8]) -> Option<(Scope, Vec<u8>)> {
        UserRules.split_key(key)
    }

    fn min_writer(&self) -> Role {
        Role::User
    }

    fn system_columns(&self) -> &'static [&'static str] {
        &[SEQ_COLUMN]
    }

    fn flushes(&self) -> bool {
        false
    }

    fn keyed_by_sequence(&self) -> bool {
        true
    }

    fn mutable(&self) -> bool {
        false
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn user_keys_split_back_into_their_partition() {
        let alice = Scope::User("a:b".into());
        let key = alice.row_key(b"pk");
        let rules = rules(TableKind::User);
        assert_eq!(rules.split_key(&key), Some((alice, b"pk".to_vec())));
        assert_eq!(rules.split_key(&[0, 9, b'x']), None);
        assert_eq!(
            rules.partition(&Caller::new("bob", Role::User)),
            Scope::User("bob".into())
        );
        assert_eq!(
            super::rules(TableKind::Shared).partition(&Caller::internal()),
            Scope::Shared
        );
    }
}
