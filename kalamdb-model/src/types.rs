//! Small value types shared by models, engine and HTTP layer.

use std::fmt;

use serde::{Deserialize, Serialize};

/// Microseconds since the Unix epoch, UTC. Arrow: `Timestamp(Microsecond, "UTC")`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Timestamp(pub i64);

impl Timestamp {
    /// The current wall-clock time.
    pub fn now() -> Self {
        let since = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap_or_default();
        Timestamp(since.as_micros() as i64)
    }
}

/// What a user may do. Ordered: each role can do what the ones before it can.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    /// Own rows of USER tables, read of SHARED tables.
    User,
    /// Writes SHARED tables and may act as a user.
    Service,
    /// DDL, users, storage and system tables.
    Dba,
    /// Everything.
    System,
}

impl Role {
    pub const ALL: [Role; 4] = [Role::User, Role::Service, Role::Dba, Role::System];

    pub fn as_str(self) -> &'static str {
        match self {
            Role::User => "user",
            Role::Service => "service",
            Role::Dba => "dba",
            Role::System => "system",
        }
    }

    /// Parses a role name, case-insensitively.
    pub fn parse(name: &str) -> Option<Role> {
        Role::ALL
            .into_iter()
            .find(|r| r.as_str().eq_ignore_ascii_case(name))
    }

    /// DDL, user management and unrestricted system-table reads.
    pub fn is_admin(self) -> bool {
        self >= Role::Dba
    }
}

impl fmt::Display for Role {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// An enum stored and shown as one word per variant.
macro_rules! word_enum {
    ($(#[$meta:meta])* $name:ident { $($(#[$vmeta:meta])* $variant:ident => $word:literal),+ $(,)? }) => {
        $(#[$meta])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
        pub enum $name {
            $($(#[$vmeta])* #[serde(rename = $word)] $variant),+
        }

        impl $name {
            pub const ALL: &'static [$name] = &[$($name::$variant),+];

            pub fn as_str(self) -> &'static str {
                match self {
                    $($name::$variant => $word),+
                }
            }

            /// Parses the word, case-insensitively.
            pub fn parse(word: &str) -> Option<$name> {
                $name::ALL.iter().copied().find(|v| v.as_str().eq_ignore_ascii_case(word))
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(self.as_str())
            }
        }
    };
}

word_enum!(
    /// The kinds of user tables (`system.tables.table_type`).
    TableKind {
        /// One isolated partition per user.
        User => "USER",
        /// One partition visible to every user of the namespace.
        Shared => "SHARED",
        /// Ephemeral events with a retention window.
        Stream => "STREAM",
    }
);

word_enum!(
    /// Where a storage location keeps its files
    /// (`system.storage_locations.location_type`).
    StorageKind {
        /// A local directory.
        Filesystem => "filesystem",
        /// An S3-compatible bucket and prefix.
        S3 => "s3",
    }
);

word_enum!(
    /// What a background job does (`system.jobs.job_type`).
    JobKind {
        /// Moves a partition's hot rows to a Parquet file.
        Flush => "flush",
        /// Rewrites a partition's Parquet files as one.
        Compact => "compact",
        /// Purges expired tombstones and orphaned files.
        Cleanup => "cleanup",
        /// Writes a namespace's schemas and rows to a backup.
        Backup => "backup",
        /// Recreates a namespace from a backup.
        Restore => "restore",
    }
);

word_enum!(
    /// Where a job is (`system.jobs.status`): `queued → running → completed | failed`.
    JobStatus {
        Queued => "queued",
        Running => "running",
        Completed => "completed",
        Failed => "failed",
    }
);

impl JobStatus {
    /// Completed or failed.
    pub fn is_finished(self) -> bool {
        matches!(self, JobStatus::Completed | JobStatus::Failed)
    }
}

/// A value usable as a RocksDB key: its encoding is injective and keeps order.
pub trait StorageKey {
    fn storage_key(&self) -> Vec<u8>;
}

impl StorageKey for str {
    fn storage_key(&self) -> Vec<u8> {
        self.as_bytes().to_vec()
    }
}

impl StorageKey for String {
    fn storage_key(&self) -> Vec<u8> {
        self.as_bytes().to_vec()
    }
}

impl StorageKey for i64 {
    /// Big-endian with the sign bit flipped, so byte order is numeric order.
    fn storage_key(&self) -> Vec<u8> {
        ((*self as u64) ^ (1 << 63)).to_be_bytes().to_vec()
    }
}

impl StorageKey for u64 {
    fn storage_key(&self) -> Vec<u8> {
        self.to_be_bytes().to_vec()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn integer_keys_sort_numerically() {
        let mut values = [5i64, -1, i64::MIN, 0, i64::MAX, -300];
        let mut keys: Vec<_> = values.iter().map(|v| v.storage_key()).collect();
        keys.sort();
        values.sort();
        let expected: Vec<_> = values.iter().map(|v| v.storage_key()).collect();
        assert_eq!(keys, expected);
    }

    #[test]
    fn job_words_round_trip() {
        for kind in JobKind::ALL {
            assert_eq!(JobKind::parse(kind.as_str()), Some(*kind));
            let json = serde_json::to_string(kind).unwrap();
            assert_eq!(json, format!("\"{kind}\""));
        }
        let status: JobStatus = serde_json::from_str("\"running\"").unwrap();
        let kind: TableKind = serde_json::from_str("\"SHARED\"").unwrap();
        assert_eq!(
            (kind, TableKind::parse("user")),
            (TableKind::Shared, Some(TableKind::User))
        );
        assert_eq!(serde_json::to_string(&StorageKind::S3).unwrap(), "\"s3\"");
        assert_eq!(status, JobStatus::Running);
        assert!(JobStatus::Failed.is_finished() && !JobStatus::Queued.is_finished());
    }

    #[test]
    fn roles_are_ordered_and_parse() {
        assert!(
            Role::System > Role::Dba && Role::Dba > Role::Service && Role::Service > Role::User
        );
        assert_eq!(Role::parse("DBA"), Some(Role::Dba));
        assert_eq!(Role::parse("root"), None);
        assert!(Role::Dba.is_admin() && !Role::Service.is_admin());
    }
}
