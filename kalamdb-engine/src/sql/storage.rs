//! `FLUSH TABLE`, `COMPACT TABLE`, `CREATE STORAGE` and `DROP STORAGE`.

use std::collections::BTreeMap;

use kalamdb_model::{JobKind, Role, StorageKind, StorageLocation, Timestamp};

use super::namespaces::require_admin;
use super::parser::{CreateStorage, TableRef};
use super::result::StatementResult;
use crate::cold::location::{ColdStore, S3_OPTIONS};
use crate::engine::{Engine, LOCAL_STORAGE};
use crate::error::{EngineError, ObjectKind, Result};
use crate::session::Caller;
use crate::table::TableId;

/// A storage path as it is stored: `..` is refused anywhere (a location
/// must not reach outside the directory it names), and a relative
/// filesystem path is anchored in the data directory, never in the server's
/// working directory. Absolute filesystem paths are the operator's choice.
fn anchored_path(kind: StorageKind, path: &str, data_dir: &std::path::Path) -> Result<String> {
    let body = path.strip_prefix("file://").unwrap_or(path);
    if body.split(['/', '\\']).any(|part| part == "..") {
        return Err(EngineError::InvalidInput(format!(
            "storage path {path} contains '..': name the directory itself"
        )));
    }
    if body.trim().is_empty() {
        return Err(EngineError::InvalidInput(
            "the storage path is empty".into(),
        ));
    }
    if kind != StorageKind::Filesystem || std::path::Path::new(body).is_absolute() {
        return Ok(path.to_string());
    }
    let base = std::path::absolute(data_dir).map_err(|e| {
        EngineError::Internal(format!("cannot resolve {}: {e}", data_dir.display()))
    })?;
    let relative = body.trim_start_matches("./");
    Ok(format!("{}/{relative}", base.display()))
}

impl Engine {
    /// Queues a flush or compaction of every partition of a table and
    /// returns the job id; the job's progress is its `system.jobs` row.
    pub(crate) fn queue_table_job(
        &self,
        caller: &Caller,
        job_type: JobKind,
        name: &TableRef,
        namespace: Option<&str>,
    ) -> Result<StatementResult> {
        let statement = format!("{} TABLE", job_type.as_str().to_ascii_uppercase());
        if caller.role < Role::Service {
            return Err(EngineError::PermissionDenied(format!(
                "{statement} requires role service, dba or system; user {} has role {}",
                caller.user_id, caller.role
            )));
        }
        let ns = self.resolve_namespace(name, namespace)?;
        let table_id = TableId::new(&ns, &name.name);
        let def = self
            .tables
            .by_id(&table_id)
            .ok_or_else(|| super::tables::table_not_found(&table_id))?;
        if !def.rules().flushes() {
            return Err(EngineError::InvalidInput(format!(
                "{statement} does not apply to {} table {table_id}: its rows are never flushed",
                def.kind.as_str().to_ascii_lowercase()
            )));
        }
        let job_id = self.queue_job(job_type, &def, None, "manual", false)?;
        let verb = match job_type {
            JobKind::Compact => "compaction",
            other => other.as_str(),
        };
        Ok(StatementResult::job(
            &job_id,
            format!("{verb} of {table_id} queued as job {job_id}; see system.jobs"),
        ))
    }

    pub(crate) async fn create_storage(
        &self,
        caller: &Caller,
        create: CreateStorage,
    ) -> Result<StatementResult> {
        require_admin(caller, "CREATE STORAGE")?;
        let name = create.name.as_str();
        if self.stores.storage_locations.get(name)?.is_some() {
            if create.if_not_exists {
                return Ok(StatementResult::message(
                    0,
                    EngineError::already_exists(ObjectKind::StorageLocation, name).to_string(),
                ));
            }
            return Err(EngineError::already_exists(
                ObjectKind::StorageLocation,
                name,
            ));
        }
        let kind = create.kind;
        let mut settings = BTreeMap::new();
        for (key, value) in create.options {
            let key = key.to_ascii_lowercase();
            if kind == StorageKind::Filesystem || !S3_OPTIONS.contains(&key.as_str()) {
                return Err(EngineError::InvalidInput(format!(
                    "unknown storage option {key}; s3 storage accepts {}, filesystem storage none",
                    S3_OPTIONS.join(", ")
                )));
            }
            let text = match value {
                serde_json::Value::String(s) => s,
                other => other.to_string(),
            };
            settings.insert(key, text);
        }
        let path = anchored_path(kind, &create.path, &self.config.data_dir)?;
        let has_keys = settings.contains_key("access_key_id");
        let now = Timestamp::now();
        let location = StorageLocation {
            location_name: name.to_string(),
            location_type: kind,
            path,
            credentials_ref: create.credentials.or_else(|| {
                (kind == StorageKind::S3)
                    .then(|| if has_keys { "options" } else { "environment" }.to_string())
            }),
            options: (!settings.is_empty())
                .then(|| serde_json::to_string(&settings).unwrap_or_default()),
            usage_count: 0,
            created_at: now,
            updated_at: now,
        };
        // Fail now, naming the problem, rather than at the first flush.
        let store = ColdStore::open(&location)?;
        store.probe().await.map_err(|e| {
            EngineError::InvalidInput(format!("storage {name} cannot be written: {e}"))
        })?;
        {
            let _guard = self.ddl_lock.lock();
            if self.stores.storage_locations.get(name)?.is_some() {
                return Err(EngineError::already_exists(
                    ObjectKind::StorageLocation,
                    name,
                ));
            }
            self.stores.storage_locations.put(&location)?;
        }
        self.tables.cold().open_location(&location)?;
        Ok(StatementResult::message(
            1,
            format!("storage {name} created"),
        ))
    }

    pub(crate) fn drop_storage(
        &self,
        caller: &Caller,
        name: &str,
        if_exists: bool,
    ) -> Result<StatementResult> {
        require_admin(caller, "DROP STORAGE")?;
        let _guard = self.ddl_lock.lock();
        if self.stores.storage_locations.get(name)?.is_none() {
            if if_exists {
                return Ok(StatementResult::message(
                    0,
                    EngineError::not_found(ObjectKind::StorageLocation, name).to_string(),
                ));
            }
            return Err(EngineError::not_found(ObjectKind::StorageLocation, name));
        }
        if name == LOCAL_STORAGE {
            return Err(EngineError::InvalidInput(format!(
                "storage {LOCAL_STORAGE} is the default location and cannot be dropped"
            )));
        }
        let mut users: Vec<String> = self
            .stores
            .tables
            .scan_all()?
            .into_iter()
            .filter(|t| t.storage_location == name)
            .map(|t| t.table_id)
            .collect();
        if !users.is_empty() {
            users.sort();
            return Err(EngineError::InvalidInput(format!(
                "storage {name} is used by {} table(s): {}; drop them first",
                users.len(),
                users.join(", ")
            )));
        }
        self.stores.storage_locations.delete(name)?;
        self.tables.cold().locations.remove(name);
        Ok(StatementResult::message(
            1,
            format!("storage {name} dropped"),
        ))
    }
}
