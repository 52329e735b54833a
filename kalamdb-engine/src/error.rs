//! Engine errors. Each carries a message that names the problem; the HTTP
//! layer maps [`ErrorKind`] to a status code in exactly one place.

use datafusion::error::DataFusionError;

/// Name of KalamDB's one DataFusion catalog. Query errors leave it out of
/// the table names they quote.
pub(crate) const CATALOG_NAME: &str = "kalam";

/// How a failure should be reported to a client.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorKind {
    /// The request was wrong: bad SQL, unknown object, constraint violation.
    BadRequest,
    /// No valid credentials.
    Unauthorized,
    /// Valid credentials, not allowed.
    Forbidden,
    /// A genuine server fault.
    Internal,
}

#[derive(Debug, thiserror::Error)]
pub enum EngineError {
    /// SQL that does not parse or is not a statement KalamDB runs.
    #[error("{0}")]
    InvalidSql(String),
    /// A namespace, table, user or other object that does not exist; the
    /// hint, if any, says what to do about it.
    #[error("{kind} {name} does not exist{}", hint.as_deref().map(|h| format!("; {h}")).unwrap_or_default())]
    NotFound {
        kind: ObjectKind,
        name: String,
        hint: Option<String>,
    },
    /// An object that already exists.
    #[error("{kind} {name} already exists")]
    AlreadyExists { kind: ObjectKind, name: String },
    /// A value outside what is allowed (a bad name, an option, a parameter).
    #[error("{0}")]
    InvalidInput(String),
    /// A write that breaks a constraint: duplicate primary key, NULL in a NOT NULL column.
    #[error("{0}")]
    Constraint(String),
    /// A request over one of the configured limits (statements, SQL
    /// length, expression depth); the message names the setting.
    #[error("{0}")]
    LimitExceeded(String),
    /// A live-query resume from a `_seq` whose later events are no longer
    /// kept (a STREAM table's retention or `max_buffer`).
    #[error("{0}")]
    ResumeTooOld(String),
    /// A write read rows of a schema version newer than the one it was
    /// planned with (an ALTER TABLE committed meanwhile); the statement is
    /// run again.
    #[error("table {0} was altered while the statement ran; run it again")]
    SchemaChanged(String),
    /// A statement ran past the statement timeout and was cancelled.
    #[error("{0}")]
    Timeout(String),
    /// The caller's role does not allow this.
    #[error("{0}")]
    PermissionDenied(String),
    /// Credentials are missing, wrong or expired.
    #[error("{0}")]
    Unauthenticated(String),
    /// Errors from planning or running a query.
    #[error("{}", query_message(.0))]
    Query(DataFusionError),
    /// RocksDB failed.
    #[error("storage error: {0}")]
    Storage(#[from] rocksdb::Error),
    /// A storage location's object store (S3, or the local filesystem
    /// through `object_store`) failed.
    #[error("storage location {location}: {source}")]
    ObjectStore {
        location: String,
        #[source]
        source: object_store::Error,
    },
    /// A file operation in a filesystem storage location failed.
    #[error("storage location {location}: {}: {source}", path.display())]
    LocationIo {
        location: String,
        path: std::path::PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// Encoding or decoding Parquet failed.
    #[error("parquet: {0}")]
    Parquet(#[from] parquet::errors::ParquetError),
    /// Anything else that is the server's fault.
    #[error("internal error: {0}")]
    Internal(String),
}

pub type Result<T, E = EngineError> = std::result::Result<T, E>;

/// The kinds of object a statement can name.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ObjectKind {
    Namespace,
    Table,
    User,
    StorageLocation,
    LiveQuery,
}

impl std::fmt::Display for ObjectKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            ObjectKind::Namespace => "namespace",
            ObjectKind::Table => "table",
            ObjectKind::User => "user",
            ObjectKind::StorageLocation => "storage location",
            ObjectKind::LiveQuery => "live query",
        })
    }
}

impl EngineError {
    /// `{kind} {name} does not exist`.
    pub fn not_found(kind: ObjectKind, name: impl ToString) -> Self {
        EngineError::NotFound {
            kind,
            name: name.to_string(),
            hint: None,
        }
    }

    /// `{kind} {name} already exists`.
    pub fn already_exists(kind: ObjectKind, name: impl ToString) -> Self {
        EngineError::AlreadyExists {
            kind,
            name: name.to_string(),
        }
    }

    /// `{kind} {name} does not exist; {hint}`.
    pub fn not_found_hint(kind: ObjectKind, name: impl ToString, hint: String) -> Self {
        EngineError::NotFound {
            kind,
            name: name.to_string(),
            hint: Some(hint),
        }
    }
}

impl EngineError {
    pub fn kind(&self) -> ErrorKind {
        match self {
            EngineError::InvalidSql(_)
            | EngineError::NotFound { .. }
            | EngineError::AlreadyExists { .. }
            | EngineError::InvalidInput(_)
            | EngineError::Constraint(_)
            | EngineError::LimitExceeded(_)
            | EngineError::ResumeTooOld(_)
            | EngineError::SchemaChanged(_)
            | EngineError::Timeout(_) => ErrorKind::BadRequest,
            EngineError::PermissionDenied(_) => ErrorKind::Forbidden,
            EngineError::Unauthenticated(_) => ErrorKind::Unauthorized,
            EngineError::Storage(_)
            | EngineError::ObjectStore { .. }
            | EngineError::LocationIo { .. }
            | EngineError::Parquet(_)
            | EngineError::Internal(_) => ErrorKind::Internal,
            EngineError::Query(e) => match e.find_root() {
                DataFusionError::Internal(_)
                | DataFusionError::IoError(_)
                | DataFusionError::ObjectStore(_)
                | DataFusionError::ParquetError(_)
                | DataFusionError::ExecutionJoin(_) => ErrorKind::Internal,
                _ => ErrorKind::BadRequest,
            },
        }
    }

    /// A stable, machine-readable code for clients.
    pub fn code(&self) -> &'static str {
        match self {
            EngineError::InvalidSql(_) => "INVALID_SQL",
            EngineError::NotFound { .. } => "NOT_FOUND",
            EngineError::AlreadyExists { .. } => "ALREADY_EXISTS",
            EngineError::InvalidInput(_) => "INVALID_INPUT",
            EngineError::Constraint(_) => "CONSTRAINT_VIOLATION",
            EngineError::LimitExceeded(_) => "LIMIT_EXCEEDED",
            EngineError::ResumeTooOld(_) => "RESUME_TOO_OLD",
            EngineError::SchemaChanged(_) => "SCHEMA_CHANGED",
            EngineError::Timeout(_) => "STATEMENT_TIMEOUT",
            EngineError::PermissionDenied(_) => "PERMISSION_DENIED",
            EngineError::Unauthenticated(_) => "UNAUTHORIZED",
            EngineError::Storage(_)
            | EngineError::ObjectStore { .. }
            | EngineError::LocationIo { .. }
            | EngineError::Parquet(_)
            | EngineError::Internal(_) => "INTERNAL_ERROR",
            EngineError::Query(e) => match e.find_root() {
                DataFusionError::SQL(..) => "INVALID_SQL",
                DataFusionError::NotImplemented(_) => "UNSUPPORTED",
                _ if self.kind() == ErrorKind::Internal => "INTERNAL_ERROR",
                _ => "QUERY_ERROR",
            },
        }
    }
}

impl EngineError {
    /// The same error, from a reference (variants with a source become
    /// `Internal` with the source's message).
    fn copy(&self) -> EngineError {
        let text = self.to_string();
        match self {
            EngineError::InvalidSql(_) => EngineError::InvalidSql(text),
            EngineError::NotFound { kind, name, hint } => EngineError::NotFound {
                kind: *kind,
                name: name.clone(),
                hint: hint.clone(),
            },
            EngineError::AlreadyExists { kind, name } => EngineError::AlreadyExists {
                kind: *kind,
                name: name.clone(),
            },
            EngineError::InvalidInput(_) => EngineError::InvalidInput(text),
            EngineError::Constraint(_) => EngineError::Constraint(text),
            EngineError::LimitExceeded(_) => EngineError::LimitExceeded(text),
            EngineError::ResumeTooOld(_) => EngineError::ResumeTooOld(text),
            EngineError::SchemaChanged(table) => EngineError::SchemaChanged(table.clone()),
            EngineError::Timeout(_) => EngineError::Timeout(text),
            EngineError::PermissionDenied(_) => EngineError::PermissionDenied(text),
            EngineError::Unauthenticated(_) => EngineError::Unauthenticated(text),
            EngineError::Internal(message) => EngineError::Internal(message.clone()),
            EngineError::Query(_)
            | EngineError::Storage(_)
            | EngineError::ObjectStore { .. }
            | EngineError::LocationIo { .. }
            | EngineError::Parquet(_) => EngineError::Internal(text),
        }
    }
}

impl From<DataFusionError> for EngineError {
    /// Unwraps engine errors that travelled through DataFusion (raised inside
    /// a table provider) so they keep their own kind.
    fn from(err: DataFusionError) -> Self {
        let is_engine =
            matches!(err.find_root(), DataFusionError::External(e) if e.is::<EngineError>());
        if is_engine {
            // Behind an Arrow or other wrapper it can only be read, not
            // taken: rebuild it from what it says.
            let copy = match err.find_root() {
                DataFusionError::External(e) => {
                    e.downcast_ref::<EngineError>().map(EngineError::copy)
                }
                _ => None,
            };
            if let DataFusionError::External(e) = unwrap_context(err)
                && let Ok(engine) = e.downcast::<EngineError>()
            {
                return *engine;
            }
            return copy.unwrap_or_else(|| EngineError::Internal("lost an engine error".into()));
        }
        EngineError::Query(err)
    }
}

impl From<EngineError> for DataFusionError {
    fn from(err: EngineError) -> Self {
        DataFusionError::External(Box::new(err))
    }
}

fn unwrap_context(err: DataFusionError) -> DataFusionError {
    match err {
        DataFusionError::Context(_, inner) => unwrap_context(*inner),
        DataFusionError::Shared(inner) => match std::sync::Arc::try_unwrap(inner) {
            Ok(inner) => unwrap_context(inner),
            Err(shared) => DataFusionError::Internal(shared.to_string()),
        },
        other => other,
    }
}

/// DataFusion messages without the internal catalog name and error-kind prefix.
fn query_message(err: &DataFusionError) -> String {
    let root = err.find_root();
    let text = match root {
        DataFusionError::SQL(e, _) => format!("SQL syntax error: {e}"),
        DataFusionError::Plan(m)
        | DataFusionError::Execution(m)
        | DataFusionError::NotImplemented(m)
        | DataFusionError::Configuration(m) => m.clone(),
        DataFusionError::SchemaError(e, _) => e.to_string(),
        other => other.to_string(),
    };
    text.replace(&format!("{}.", CATALOG_NAME), "")
}
