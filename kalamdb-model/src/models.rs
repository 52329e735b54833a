//! The seven system tables. Doc comments become column comments.

use serde::{Deserialize, Serialize};

use crate::{JobKind, JobStatus, Role, StorageKind, TableKind, Timestamp, system_table};

/// Accounts that can log in and own rows of USER tables.
#[system_table(name = "users")]
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct User {
    /// Stable user id; owner of the user's partitions.
    #[column(key)]
    pub user_id: String,
    /// Login name.
    pub username: String,
    /// Argon2id hash of the password. Stored, never returned by SELECT.
    #[column(hidden)]
    pub password_hash: String,
    /// One of user, service, dba, system.
    pub role: Role,
    /// Contact address, if given.
    pub email: Option<String>,
    /// When the user was created.
    pub created_at: Timestamp,
    /// Last change to this row.
    pub updated_at: Timestamp,
    /// When the user was dropped; dropped users cannot log in.
    pub deleted_at: Option<Timestamp>,
}

/// Active live-query subscriptions, one row each.
#[system_table(name = "live_queries")]
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LiveQuery {
    /// Server-wide id of the subscription.
    #[column(key)]
    pub live_id: String,
    /// WebSocket connection the subscription belongs to.
    pub connection_id: String,
    /// Namespace of the watched table.
    pub namespace: String,
    /// Watched table.
    pub table_name: String,
    /// Subscription id chosen by the client.
    pub query_id: String,
    /// Subscriber.
    pub user_id: String,
    /// The subscribed SELECT.
    pub query: String,
    /// Subscription options as JSON.
    pub options: Option<String>,
    /// When the subscription started.
    pub created_at: Timestamp,
    /// Last change delivered.
    pub updated_at: Timestamp,
    /// Number of changes delivered.
    pub changes: i64,
    /// Node serving the subscription.
    pub node: String,
}

/// Where Parquet files of flushed rows are written.
#[system_table(name = "storage_locations")]
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StorageLocation {
    /// Name used in LOCATION REFERENCE.
    #[column(key)]
    pub location_name: String,
    /// filesystem or s3.
    pub location_type: StorageKind,
    /// Base path or URL; may hold ${namespace}, ${table} and ${user_id}.
    pub path: String,
    /// Name of the credentials to use, never the secret itself.
    pub credentials_ref: Option<String>,
    /// Connection options (endpoint, region, access keys) as JSON. Stored,
    /// never returned by SELECT.
    #[column(hidden)]
    #[serde(default)]
    pub options: Option<String>,
    /// Number of tables using this location.
    pub usage_count: i64,
    /// When the location was created.
    pub created_at: Timestamp,
    /// Last change to this row.
    pub updated_at: Timestamp,
}

/// Background work: flushes, cleanups, compactions, backups.
#[system_table(name = "jobs")]
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Job {
    /// Id of the job.
    #[column(key)]
    pub job_id: String,
    /// flush, compact or cleanup.
    pub job_type: JobKind,
    /// Namespace the job works on, if any.
    pub namespace: Option<String>,
    /// Table the job works on, if any.
    pub table_name: Option<String>,
    /// queued, running, completed or failed.
    pub status: JobStatus,
    /// When the job started running.
    pub start_time: Option<Timestamp>,
    /// When the job ended.
    pub end_time: Option<Timestamp>,
    /// Job parameters as JSON.
    pub parameters: Option<String>,
    /// Job result as JSON.
    pub result: Option<String>,
    /// Diagnostic trace.
    pub trace: Option<String>,
    /// Peak memory used, in MiB.
    pub memory_used_mb: Option<f64>,
    /// CPU used, in percent of one core.
    pub cpu_used_percent: Option<f64>,
    /// Node that ran the job.
    pub node_id: String,
    /// Why the job failed.
    pub error_message: Option<String>,
}

/// Namespaces: the schemas that hold user, shared and stream tables.
#[system_table(name = "namespaces")]
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Namespace {
    /// Id of the namespace (its name).
    #[column(key)]
    pub namespace_id: String,
    /// Name used in SQL.
    pub name: String,
    /// When the namespace was created.
    pub created_at: Timestamp,
    /// Options set with ALTER NAMESPACE, as a JSON object.
    pub options: Option<String>,
    /// Number of tables in the namespace.
    pub table_count: i32,
}

/// Tables of every namespace.
#[system_table(name = "tables")]
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Table {
    /// `namespace.table`.
    #[column(key)]
    pub table_id: String,
    /// Name of the table.
    pub table_name: String,
    /// Namespace holding the table.
    pub namespace: String,
    /// USER, SHARED or STREAM.
    pub table_type: TableKind,
    /// When the table was created.
    pub created_at: Timestamp,
    /// Storage location for flushed rows.
    pub storage_location: String,
    /// Flush policy as JSON, if set.
    pub flush_policy: Option<String>,
    /// Current schema version.
    pub schema_version: i32,
    /// Hours a deleted row is kept before it is purged.
    pub deleted_retention_hours: i32,
    /// A STREAM table's options as JSON (`retention_secs`, `ephemeral`,
    /// `max_buffer`); absent for USER and SHARED tables.
    #[serde(default)]
    pub options: Option<String>,
}

/// Every version of every table's schema.
#[system_table(name = "table_schemas")]
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TableSchema {
    /// `namespace.table#v<version>`.
    #[column(key)]
    pub schema_id: String,
    /// Table this schema belongs to.
    pub table_id: String,
    /// Schema version, from 1.
    pub version: i32,
    /// The Arrow schema as JSON.
    pub arrow_schema: String,
    /// When this version was created.
    pub created_at: Timestamp,
    /// What changed from the previous version.
    pub changes: Option<String>,
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::SystemTable;
    use arrow_schema::DataType;

    fn user(id: &str) -> User {
        User {
            user_id: id.into(),
            username: id.into(),
            password_hash: "secret-hash".into(),
            role: Role::User,
            email: None,
            created_at: Timestamp(1),
            updated_at: Timestamp(2),
            deleted_at: None,
        }
    }

    #[test]
    fn names_and_keys() {
        assert_eq!(User::TABLE_NAME, "users");
        assert_eq!(User::COLUMN_FAMILY, "system_users");
        assert_eq!(TableSchema::COLUMN_FAMILY, "system_table_schemas");
        assert_eq!(user("alice").key(), "alice");
    }

    #[test]
    fn hidden_columns_stay_out_of_the_schema_and_batches() {
        let schema = User::schema();
        let names: Vec<_> = schema.fields().iter().map(|f| f.name().as_str()).collect();
        assert_eq!(
            names,
            [
                "user_id",
                "username",
                "role",
                "email",
                "created_at",
                "updated_at",
                "deleted_at"
            ]
        );
        let batch = User::to_record_batch(&[user("a"), user("b")]).unwrap();
        assert_eq!(batch.num_rows(), 2);
        assert_eq!(batch.num_columns(), 7);
        assert!(batch.schema().field_with_name("password_hash").is_err());
    }

    #[test]
    fn types_nullability_and_comments() {
        let schema = Job::schema();
        let f = schema.field_with_name("memory_used_mb").unwrap();
        assert_eq!(f.data_type(), &DataType::Float64);
        assert!(f.is_nullable());
        let f = schema.field_with_name("job_id").unwrap();
        assert!(!f.is_nullable());
        assert_eq!(f.metadata()["comment"], "Id of the job.");
        assert!(schema.metadata()["comment"].starts_with("Background work"));
        let ts = Namespace::schema();
        assert!(matches!(
            ts.field_with_name("created_at").unwrap().data_type(),
            DataType::Timestamp(_, Some(tz)) if tz.as_ref() == "UTC"
        ));
    }

    #[test]
    fn empty_batch_has_schema() {
        let batch = LiveQuery::to_record_batch(&[]).unwrap();
        assert_eq!(batch.num_rows(), 0);
        assert_eq!(batch.schema(), LiveQuery::schema());
    }
}
