//! The statements KalamDB parses itself, as values.

use datafusion::sql::sqlparser::ast::{ColumnDef, DataType, Statement, TableConstraint};
use kalamdb_model::Role;

use super::StatementSource;
pub(crate) use crate::queue::BackupTarget;

/// A parsed statement.
#[derive(Debug, Clone)]
pub(crate) enum KalamStatement {
    CreateNamespace {
        name: String,
        if_not_exists: bool,
    },
    AlterNamespace {
        name: String,
        options: Vec<(String, serde_json::Value)>,
    },
    DropNamespace {
        name: String,
        if_exists: bool,
        cascade: bool,
    },
    ShowNamespaces,
    CreateUser {
        username: String,
        password: String,
        role: Role,
        email: Option<String>,
        if_not_exists: bool,
    },
    AlterUser {
        username: String,
        change: UserChange,
    },
    DropUser {
        username: String,
        if_exists: bool,
    },
    CreateTable(Box<CreateTable>),
    DropTable {
        name: TableRef,
        if_exists: bool,
    },
    /// `ALTER TABLE ns.t …`: one schema or option change.
    AlterTable {
        name: TableRef,
        change: TableChange,
    },
    ShowTables {
        namespace: Option<String>,
    },
    DescribeTable {
        name: TableRef,
        history: bool,
    },
    /// `FLUSH TABLE ns.t`: queue a flush of every partition.
    FlushTable {
        name: TableRef,
    },
    /// `COMPACT TABLE ns.t`: queue a compaction of every partition.
    CompactTable {
        name: TableRef,
    },
    CreateStorage(CreateStorage),
    /// `DROP STORAGE [IF EXISTS] name`.
    DropStorage {
        name: String,
        if_exists: bool,
    },
    /// `KILL LIVE QUERY 'live_id'`.
    KillLiveQuery {
        live_id: String,
    },
    /// `SHOW STATS FOR TABLE ns.t`: one table's rows, files and subscriptions.
    ShowTableStats {
        name: TableRef,
    },
    /// `SHOW STATS`: the server's uptime, connections, statements and sizes.
    ShowServerStats,
    /// `EXECUTE AS USER 'id' (statement)`.
    ExecuteAs {
        user: String,
        statement: StatementSource,
    },
    /// `BACKUP DATABASE ns TO 'dest' | STORAGE loc PATH 'prefix'`.
    Backup {
        namespace: String,
        target: BackupTarget,
    },
    /// `RESTORE DATABASE ns FROM … [AS other]`.
    Restore {
        namespace: String,
        target: BackupTarget,
        as_name: Option<String>,
    },
    /// `SHOW BACKUP 'dest' | STORAGE loc PATH 'prefix'`.
    ShowBackup {
        target: BackupTarget,
    },
    /// Anything else: planned and run by DataFusion.
    Sql(Box<Statement>),
}

/// A table name as written: `ns.table` or `table` (namespace from the request).
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct TableRef {
    pub namespace: Option<String>,
    pub name: String,
}

/// `CREATE USER|SHARED|STREAM TABLE …`.
#[derive(Debug, Clone)]
pub(crate) struct CreateTable {
    pub kind: crate::table::TableKind,
    pub name: TableRef,
    pub if_not_exists: bool,
    pub columns: Vec<ColumnDef>,
    pub constraints: Vec<TableConstraint>,
    pub location: Option<String>,
    pub flush_rows: Option<u64>,
    pub flush_interval: Option<std::time::Duration>,
    pub deleted_retention: Option<std::time::Duration>,
    pub with_options: Vec<(String, serde_json::Value)>,
}

/// What one `ALTER TABLE` changes. Column names are as written (unquoted
/// ones lower-cased).
#[derive(Debug, Clone)]
pub(crate) enum TableChange {
    /// `ADD [COLUMN] c TYPE [NOT NULL] [DEFAULT …]`.
    AddColumn(Box<ColumnDef>),
    /// `DROP [COLUMN] c`.
    DropColumn(String),
    /// `RENAME COLUMN a TO b`.
    RenameColumn { from: String, to: String },
    /// `MODIFY [COLUMN] c TYPE` or `ALTER COLUMN c [SET DATA] TYPE t`.
    ModifyColumn { name: String, data_type: DataType },
    /// `SET FLUSH POLICY ROWS n [INTERVAL '…']`.
    SetFlushPolicy {
        rows: Option<u64>,
        interval: Option<std::time::Duration>,
    },
    /// `SET DELETED RETENTION '…'`.
    SetDeletedRetention(std::time::Duration),
}

/// `CREATE STORAGE name TYPE filesystem|s3 PATH '…' [CREDENTIALS 'ref'] [OPTIONS (…)]`.
#[derive(Debug, Clone)]
pub(crate) struct CreateStorage {
    pub name: String,
    pub if_not_exists: bool,
    pub kind: kalamdb_model::StorageKind,
    pub path: String,
    pub credentials: Option<String>,
    pub options: Vec<(String, serde_json::Value)>,
}

/// What `ALTER USER` changes.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum UserChange {
    Password(String),
    Role(Role),
    Email(Option<String>),
}
