//! Backups of a namespace (`BACKUP DATABASE`), listing them (`SHOW
//! BACKUP`) and restoring them (`RESTORE DATABASE`).
//!
//! A backup is a directory (below `KALAMDB_BACKUP_DIR`, or a prefix of a
//! storage location) holding one Parquet file per flushed file of every
//! partition (copied byte for byte), one Parquet file per partition for the
//! rows still in RocksDB (tombstones included), and `manifest.json`: the
//! format version, the namespace, every table with every schema version,
//! options and storage location, the users owning partitions, row and file
//! counts and a SHA-256 of every file. The manifest is written last, so a
//! backup without one is incomplete and never restored.
//!
//! Consistency: the namespace's metadata, the RocksDB rows and the
//! manifests of its Parquet files are read through one RocksDB snapshot,
//! taken under the DDL lock (no ALTER or DROP in between), inside a read
//! lease (no file the snapshot lists is deleted before it is copied). A
//! flush moves rows and records its file in one write batch, so every
//! partition is backed up exactly as committed at the snapshot.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Component, Path, PathBuf};
use std::sync::Arc;

use bytes::Bytes;
use kalamdb_model::{Namespace, Role, StorageKind, StorageLocation, Table, TableSchema, Timestamp};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use sha2::{Digest, Sha256};

use crate::cold::files;
use crate::cold::location::ColdStore;
use crate::cold::manifest::{self, ColdFile};
use crate::engine::Engine;
use crate::error::{EngineError, ObjectKind, Result};
use crate::hot;
use crate::keyspace::{Keyspace, Manifest};
use crate::queue::BackupTarget;
use crate::storage::WriteOp;
use crate::table::keys::{Scope, split_key};
use crate::table::row::StoredRow;
use crate::table::{SchemaDoc, TableDef, TableId, schema_id, table_def};

/// Name of the manifest in a backup directory.
const MANIFEST_FILE: &str = "manifest.json";
/// What `format` says in every KalamDB backup manifest.
const FORMAT: &str = "kalamdb-backup";
/// Version of the backup format this release writes and reads.
const FORMAT_VERSION: u32 = 1;

/// `manifest.json`.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct BackupManifest {
    format: String,
    format_version: u32,
    kalamdb_version: String,
    created_at: Timestamp,
    /// The last `_seq` handed out when the snapshot was taken.
    snapshot_seq: i64,
    namespace: Namespace,
    tables: Vec<BackupTable>,
    /// Users who own a partition of a USER table in the backup.
    owners: Vec<PartitionOwner>,
    rows: u64,
    files: u64,
    bytes: u64,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
struct BackupTable {
    /// The `system.tables` row.
    table: Table,
    /// Every version, oldest first.
    schemas: Vec<TableSchema>,
    partitions: Vec<BackupPartition>,
    rows: u64,
    files: u64,
    bytes: u64,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
struct BackupPartition {
    /// `user:{id}` or `shared`.
    partition: String,
    files: Vec<BackupFile>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
struct BackupFile {
    /// Path below the backup directory.
    path: String,
    sha256: String,
    /// Its manifest entry (location and path as they were on the server).
    file: ColdFile,
    /// Holds the rows that were in RocksDB.
    #[serde(default)]
    hot: bool,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
struct PartitionOwner {
    user_id: String,
    username: Option<String>,
    role: Option<Role>,
}

/// A table as read through the snapshot.
struct CapturedTable {
    table: Table,
    schemas: Vec<TableSchema>,
    /// Flushed files per partition.
    cold: Vec<(Scope, Vec<ColdFile>)>,
    /// Rows in RocksDB per partition, encoded as Parquet.
    hot: Vec<(Scope, Bytes, ColdFile)>,
}

fn check_name(name: &str, what: &str) -> Result<()> {
    crate::table::def::validate_name(name, what).map_err(EngineError::InvalidInput)
}

fn sha256(bytes: &[u8]) -> String {
    Sha256::digest(bytes)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// A path inside a backup: relative, `/`-separated, no `.`/`..`.
fn check_relative(path: &str, what: &str) -> Result<String> {
    let trimmed = path.trim_matches('/');
    let bad = trimmed.is_empty()
        || trimmed.contains('\\')
        || trimmed
            .split('/')
            .any(|part| part.is_empty() || part == "." || part == "..");
    if bad {
        return Err(EngineError::InvalidInput(format!(
            "invalid {what} '{path}': use a relative path of names separated by / (no . or ..)"
        )));
    }
    Ok(trimmed.to_string())
}

/// `dest` of `BACKUP … TO 'dest'` as a path relative to `root`: a relative
/// path, or an absolute one inside `root`; `..` is refused.
fn relative_to_root(root: &Path, dest: &str) -> Result<String> {
    let outside = || {
        EngineError::InvalidInput(format!(
            "backup destination '{dest}' is outside the backup directory {} (KALAMDB_BACKUP_DIR)",
            root.display()
        ))
    };
    let path = Path::new(dest);
    let relative: PathBuf = if path.is_absolute() {
        path.strip_prefix(root)
            .map_err(|_| outside())?
            .to_path_buf()
    } else {
        path.to_path_buf()
    };
    let mut parts = Vec::new();
    for component in relative.components() {
        match component {
            Component::Normal(part) => parts.push(part.to_string_lossy().into_owned()),
            Component::CurDir => {}
            Component::ParentDir => {
                return Err(EngineError::InvalidInput(format!(
                    "backup destination '{dest}' uses ..: name a directory below the backup directory"
                )));
            }
            _ => return Err(outside()),
        }
    }
    check_relative(&parts.join("/"), "backup destination")
}

impl Engine {
    /// The directory local backups live in.
    fn backup_root(&self) -> PathBuf {
        let root = self
            .config
            .backup_dir
            .clone()
            .unwrap_or_else(|| self.config.data_dir.join("backups"));
        std::path::absolute(&root).unwrap_or(root)
    }

    /// Where a backup is: its store and its directory in that store.
    fn backup_store(&self, target: &BackupTarget) -> Result<(Arc<ColdStore>, String)> {
        match target {
            BackupTarget::Path { path } => {
                let root = self.backup_root();
                let relative = relative_to_root(&root, path)?;
                let now = Timestamp::now();
                let store = ColdStore::open(&StorageLocation {
                    location_name: "backups".into(),
                    location_type: StorageKind::Filesystem,
                    path: root.to_string_lossy().into_owned(),
                    credentials_ref: None,
                    options: None,
                    usage_count: 0,
                    created_at: now,
                    updated_at: now,
                })?;
                Ok((Arc::new(store), relative))
            }
            BackupTarget::Storage { location, path } => {
                if self.stores.storage_locations.get(location)?.is_none() {
                    return Err(EngineError::not_found(
                        ObjectKind::StorageLocation,
                        location,
                    ));
                }
                let store = self.tables.cold().locations.get(location)?;
                Ok((store, check_relative(path, "backup path")?))
            }
        }
    }

    /// Checks a `BACKUP`/`RESTORE`/`SHOW BACKUP` target before a job is
    /// queued, so a bad path is a `400` now rather than a failed job later.
    pub(crate) fn check_backup_target(&self, target: &BackupTarget) -> Result<()> {
        self.backup_store(target).map(|_| ())
    }

    /// Reads the namespace's metadata, hot rows and file lists through one
    /// snapshot (see the module comment).
    fn capture(&self, namespace: &str) -> Result<(Namespace, i64, Vec<CapturedTable>)> {
        let storage = self.tables.hot().storage().clone();
        let guard = self.ddl_lock.lock();
        let ns = self
            .stores
            .namespaces
            .get(namespace)?
            .ok_or_else(|| EngineError::not_found(ObjectKind::Namespace, namespace))?;
        let mut tables = Vec::new();
        for table in self.stores.tables.scan_all()? {
            if table.namespace != namespace {
                continue;
            }
            let schemas = (1..=table.schema_version)
                .map(|v| {
                    let id = schema_id(&table.table_id, v);
                    self.stores
                        .table_schemas
                        .get(&id)?
                        .ok_or_else(|| EngineError::Internal(format!("schema {id} is missing")))
                })
                .collect::<Result<Vec<_>>>()?;
            let def = self.tables.by_id(&TableId::of(&table)).ok_or_else(|| {
                EngineError::Internal(format!("{} is not loaded", table.table_id))
            })?;
            tables.push((table, schemas, def));
        }
        let seq = self.tables.hot().current_seq();
        let snapshot = storage.snapshot();
        drop(guard);

        let mut captured = Vec::with_capacity(tables.len());
        for (table, schemas, def) in tables {
            let table_id = def.table_id();
            let mut cold: Vec<(Scope, Vec<ColdFile>)> = Vec::new();
            let mut hot_parts = Vec::new();
            if def.rules().flushes() {
                for (key, value) in
                    snapshot.scan_prefix(Manifest.family(), &Manifest.table_prefix(&table_id))?
                {
                    let Some(scope) = Manifest.partition_of(&table_id, &key) else {
                        continue;
                    };
                    let file = Manifest.decode(&value)?;
                    match cold.last_mut() {
                        Some((last, files)) if *last == scope => files.push(file),
                        _ => cold.push((scope, vec![file])),
                    }
                }
                // Rows of one partition are contiguous: encode each
                // partition as it ends.
                let mut current: Option<(Scope, Vec<Vec<u8>>, Vec<StoredRow>)> = None;
                let mut finish =
                    |part: Option<(Scope, Vec<Vec<u8>>, Vec<StoredRow>)>| -> Result<()> {
                        if let Some((scope, keys, rows)) = part {
                            let (data, _) = files::encode(&def, &rows)?;
                            let name = "hot.parquet".to_string();
                            let bounds = (keys[0].as_slice(), keys[keys.len() - 1].as_slice());
                            let file = files::describe(
                                name,
                                "",
                                String::new(),
                                &rows,
                                bounds,
                                data.len() as u64,
                                def.version,
                            );
                            hot_parts.push((scope, data, file));
                        }
                        Ok(())
                    };
                snapshot.walk_prefix(&def.column_family(), &[], |key, value| {
                    let (scope, pk) = split_key(&def, key)?;
                    let row = hot::decode(&def, value)?;
                    match &mut current {
                        Some((s, keys, rows)) if *s == scope => {
                            keys.push(pk);
                            rows.push(row);
                        }
                        _ => {
                            finish(current.take())?;
                            current = Some((scope, vec![pk], vec![row]));
                        }
                    }
                    Ok(())
                })?;
                finish(current.take())?;
            }
            captured.push(CapturedTable {
                table,
                schemas,
                cold,
                hot: hot_parts,
            });
        }
        Ok((ns, seq, captured))
    }

    /// Records a running backup's or restore's progress in its job row.
    fn job_progress(&self, job_id: &str, progress: Value) {
        if let Ok(Some(mut job)) = self.stores.jobs.get(job_id) {
            job.trace = Some(progress.to_string());
            if let Err(e) = self.stores.jobs.put(&job) {
                tracing::warn!("cannot record the progress of job {job_id}: {e}");
            }
        }
    }

    /// `BACKUP DATABASE ns TO …`, run as a job.
    pub(crate) async fn backup_job(
        &self,
        job_id: &str,
        namespace: &str,
        target: &BackupTarget,
    ) -> Result<Value> {
        let (store, base) = self.backup_store(target)?;
        if !store.list(&base).await?.is_empty() {
            return Err(EngineError::InvalidInput(format!(
                "backup destination {target} is not empty: choose a new name"
            )));
        }
        let (ns, snapshot_seq, tables) = self.capture(namespace)?;
        let total_tables = tables.len();
        let mut manifest = BackupManifest {
            format: FORMAT.into(),
            format_version: FORMAT_VERSION,
            kalamdb_version: env!("CARGO_PKG_VERSION").into(),
            created_at: Timestamp::now(),
            snapshot_seq,
            namespace: ns,
            tables: Vec::new(),
            owners: Vec::new(),
            rows: 0,
            files: 0,
            bytes: 0,
        };
        let mut owners: BTreeSet<String> = BTreeSet::new();
        for (done, captured) in tables.into_iter().enumerate() {
            let table_dir = format!(
                "{base}/{}",
                crate::table::keys::path_segment(&captured.table.table_name)
            );
            let mut partitions: BTreeMap<String, Vec<BackupFile>> = BTreeMap::new();
            // Every file goes to `{table}/{partition}/{name}` with its checksum.
            let mut add = async |scope: &Scope, data: Bytes, file: ColdFile, hot: bool| {
                let path = format!("{table_dir}/{}/{}", scope.directory_name(), file.name);
                let sha256 = sha256(&data);
                store.put(&path, data).await?;
                partitions
                    .entry(scope.label())
                    .or_default()
                    .push(BackupFile {
                        path: path[base.len() + 1..].to_string(),
                        sha256,
                        file,
                        hot,
                    });
                Ok::<(), EngineError>(())
            };
            for (scope, cold_files) in &captured.cold {
                for file in cold_files {
                    let location = self.tables.cold().locations.get(&file.location)?;
                    let data = location.get(&file.path).await?;
                    add(scope, data, file.clone(), false).await?;
                }
            }
            for (scope, data, file) in captured.hot {
                add(&scope, data, file, true).await?;
            }
            let mut table = BackupTable {
                table: captured.table,
                schemas: captured.schemas,
                partitions: Vec::new(),
                rows: 0,
                files: 0,
                bytes: 0,
            };
            for (label, files) in partitions {
                if let Some(Scope::User(id)) = Scope::from_label(&label) {
                    owners.insert(id);
                }
                table.rows += files.iter().map(|f| f.file.rows).sum::<u64>();
                table.files += files.len() as u64;
                table.bytes += files.iter().map(|f| f.file.bytes).sum::<u64>();
                table.partitions.push(BackupPartition {
                    partition: label,
                    files,
                });
            }
            manifest.rows += table.rows;
            manifest.files += table.files;
            manifest.bytes += table.bytes;
            manifest.tables.push(table);
            self.job_progress(
                job_id,
                json!({"tables_done": done + 1, "tables": total_tables, "bytes_done": manifest.bytes}),
            );
        }
        for user_id in owners {
            let user = self.stores.users.get(&user_id)?;
            manifest.owners.push(PartitionOwner {
                username: user.as_ref().map(|u| u.username.clone()),
                role: user.map(|u| u.role),
                user_id,
            });
        }
        let text = serde_json::to_vec_pretty(&manifest).map_err(|e| {
            EngineError::Internal(format!("cannot encode the backup manifest: {e}"))
        })?;
        store
            .put(&format!("{base}/{MANIFEST_FILE}"), Bytes::from(text))
            .await?;
        Ok(json!({
            "namespace": manifest.namespace.name,
            "destination": target.to_string(),
            "tables": manifest.tables.len(),
            "rows": manifest.rows,
            "files": manifest.files,
            "bytes": manifest.bytes,
        }))
    }

    /// Reads a backup's manifest and checks every file against it.
    async fn verified_manifest(
        &self,
        store: &ColdStore,
        base: &str,
        target: &BackupTarget,
    ) -> Result<BackupManifest> {
        let text = match store.get(&format!("{base}/{MANIFEST_FILE}")).await {
            Ok(text) => text,
            Err(_) => {
                return Err(EngineError::InvalidInput(format!(
                    "there is no complete backup at {target}: {MANIFEST_FILE} is missing"
                )));
            }
        };
        let manifest: BackupManifest = serde_json::from_slice(&text).map_err(|e| {
            EngineError::InvalidInput(format!(
                "the manifest of the backup at {target} is corrupt or truncated: {e}"
            ))
        })?;
        if manifest.format != FORMAT || manifest.format_version > FORMAT_VERSION {
            return Err(EngineError::InvalidInput(format!(
                "the backup at {target} has format {} version {}; this server reads {FORMAT} up to version {FORMAT_VERSION}",
                manifest.format, manifest.format_version
            )));
        }
        check_name(&manifest.namespace.name, "namespace")?;
        for table in &manifest.tables {
            check_name(&table.table.table_name, "table")?;
            if table.schemas.len() != table.table.schema_version as usize {
                return Err(EngineError::InvalidInput(format!(
                    "the backup at {target} is corrupt: table {} lists {} schema versions, not {}",
                    table.table.table_name,
                    table.schemas.len(),
                    table.table.schema_version
                )));
            }
            for partition in &table.partitions {
                if Scope::from_label(&partition.partition).is_none() {
                    return Err(EngineError::InvalidInput(format!(
                        "the backup at {target} is corrupt: unknown partition {}",
                        partition.partition
                    )));
                }
                for file in &partition.files {
                    let path = check_relative(&file.path, "file path in the backup")?;
                    let data = store.get(&format!("{base}/{path}")).await.map_err(|_| {
                        EngineError::InvalidInput(format!(
                            "the backup at {target} is incomplete: {path} is missing"
                        ))
                    })?;
                    if data.len() as u64 != file.file.bytes || sha256(&data) != file.sha256 {
                        return Err(EngineError::InvalidInput(format!(
                            "the backup at {target} is corrupt: {path} does not match its checksum"
                        )));
                    }
                }
            }
        }
        Ok(manifest)
    }

    /// `SHOW BACKUP …`: what a backup holds, after checking every file.
    pub(crate) async fn show_backup(&self, target: &BackupTarget) -> Result<Vec<Value>> {
        let (store, base) = self.backup_store(target)?;
        let manifest = self.verified_manifest(&store, &base, target).await?;
        let created = manifest.created_at;
        Ok(manifest
            .tables
            .iter()
            .map(|t| {
                json!({
                    "namespace": manifest.namespace.name,
                    "table_name": t.table.table_name,
                    "table_type": t.table.table_type.as_str(),
                    "schema_version": t.table.schema_version,
                    "partitions": t.partitions.len(),
                    "rows": t.rows,
                    "files": t.files,
                    "bytes": t.bytes,
                    "created_at": created,
                    "format_version": manifest.format_version,
                    "verified": true,
                })
            })
            .collect())
    }

    /// `RESTORE DATABASE ns FROM … [AS other]`, run as a job. Verifies the
    /// whole backup first; copies the files into the tables' storage
    /// locations; then creates the namespace, its tables (every schema
    /// version) and their manifests in one RocksDB write. A failure before
    /// that write removes the files it copied: nothing is left behind.
    pub(crate) async fn restore_job(
        &self,
        job_id: &str,
        namespace: &str,
        target: &BackupTarget,
        as_name: Option<&str>,
    ) -> Result<Value> {
        let (store, base) = self.backup_store(target)?;
        let manifest = self.verified_manifest(&store, &base, target).await?;
        if manifest.namespace.name != namespace {
            return Err(EngineError::InvalidInput(format!(
                "the backup at {target} holds namespace {}, not {namespace}",
                manifest.namespace.name
            )));
        }
        let new_ns = as_name.unwrap_or(namespace).to_string();
        check_name(&new_ns, "namespace")?;
        let exists = || -> Result<()> {
            if self.stores.namespaces.get(&new_ns)?.is_some() {
                return Err(EngineError::InvalidInput(format!(
                    "namespace {new_ns} already exists: restore AS another name, or DROP NAMESPACE {new_ns} CASCADE first"
                )));
            }
            Ok(())
        };
        exists()?;
        for table in &manifest.tables {
            self.tables
                .cold()
                .locations
                .get(&table.table.storage_location)
                .map_err(|_| {
                    EngineError::InvalidInput(format!(
                        "table {} of the backup uses storage location {}, which does not exist here: CREATE STORAGE it first",
                        table.table.table_name, table.table.storage_location
                    ))
                })?;
        }
        let mut copied: Vec<(Arc<ColdStore>, String)> = Vec::new();
        let outcome = self
            .restore_files(job_id, &store, &base, &manifest, &new_ns, &mut copied)
            .await;
        let committed = match outcome {
            Ok(ops) => exists().and_then(|()| self.restore_metadata(&manifest, &new_ns, ops)),
            Err(e) => Err(e),
        };
        if let Err(e) = committed {
            for (location, path) in copied {
                if let Err(e) = location.delete(&path).await {
                    tracing::warn!("cannot remove {path} of a failed restore: {e}");
                }
            }
            return Err(e);
        }
        Ok(json!({
            "namespace": new_ns,
            "source": target.to_string(),
            "tables": manifest.tables.len(),
            "rows": manifest.rows,
            "files": manifest.files,
            "bytes": manifest.bytes,
        }))
    }

    /// Copies every file of the backup into the restored tables' locations
    /// (new names, unique like every file the server writes); returns the
    /// manifest entries to record.
    async fn restore_files(
        &self,
        job_id: &str,
        store: &ColdStore,
        base: &str,
        manifest: &BackupManifest,
        new_ns: &str,
        copied: &mut Vec<(Arc<ColdStore>, String)>,
    ) -> Result<Vec<WriteOp>> {
        let mut ops = Vec::new();
        let mut bytes_done = 0u64;
        for (done, table) in manifest.tables.iter().enumerate() {
            let location = self
                .tables
                .cold()
                .locations
                .get(&table.table.storage_location)?;
            let table_id = TableId::new(new_ns, &table.table.table_name);
            for partition in &table.partitions {
                let scope = Scope::from_label(&partition.partition).ok_or_else(|| {
                    EngineError::Internal(format!("unknown partition {}", partition.partition))
                })?;
                let directory = location.directory(new_ns, &table.table.table_name, &scope);
                for file in &partition.files {
                    let data = store.get(&format!("{base}/{}", file.path)).await?;
                    if sha256(&data) != file.sha256 {
                        return Err(EngineError::InvalidInput(format!(
                            "{} changed while it was restored: its checksum no longer matches",
                            file.path
                        )));
                    }
                    let name = format!("batch-{}.parquet", self.tables.hot().snowflake_id());
                    let path = format!("{directory}/{name}");
                    bytes_done += data.len() as u64;
                    location.put(&path, data).await?;
                    copied.push((location.clone(), path.clone()));
                    let restored = ColdFile {
                        name,
                        location: location.name.clone(),
                        path,
                        ..file.file.clone()
                    };
                    ops.push(manifest::add_op(&table_id, &scope, &restored)?);
                }
            }
            self.job_progress(
                job_id,
                json!({"tables_done": done + 1, "tables": manifest.tables.len(), "bytes_done": bytes_done}),
            );
        }
        Ok(ops)
    }

    /// Creates the namespace and its tables with their schema history and
    /// records the copied files, in one write.
    fn restore_metadata(
        &self,
        manifest: &BackupManifest,
        new_ns: &str,
        mut ops: Vec<WriteOp>,
    ) -> Result<()> {
        let _guard = self.ddl_lock.lock();
        if self.stores.namespaces.get(new_ns)?.is_some() {
            return Err(EngineError::already_exists(ObjectKind::Namespace, new_ns));
        }
        let namespace = Namespace {
            namespace_id: new_ns.to_string(),
            name: new_ns.to_string(),
            table_count: manifest.tables.len() as i32,
            ..manifest.namespace.clone()
        };
        ops.push(self.stores.namespaces.put_op(&namespace)?);
        let mut defs = Vec::new();
        let mut locations: BTreeMap<String, i64> = BTreeMap::new();
        for backed_up in &manifest.tables {
            let table_id = TableId::new(new_ns, &backed_up.table.table_name).to_string();
            let table = Table {
                table_id: table_id.clone(),
                namespace: new_ns.to_string(),
                ..backed_up.table.clone()
            };
            let mut docs = Vec::new();
            for schema in &backed_up.schemas {
                let schema = TableSchema {
                    schema_id: schema_id(&table_id, schema.version),
                    table_id: table_id.clone(),
                    ..schema.clone()
                };
                let doc: SchemaDoc = serde_json::from_str(&schema.arrow_schema).map_err(|e| {
                    EngineError::InvalidInput(format!(
                        "the backup's schema {} of {} is corrupt: {e}",
                        schema.version, table.table_name
                    ))
                })?;
                docs.push(doc);
                ops.push(self.stores.table_schemas.put_op(&schema)?);
            }
            defs.push(table_def(&table, docs)?);
            *locations.entry(table.storage_location.clone()).or_default() += 1;
            ops.push(self.stores.tables.put_op(&table)?);
        }
        for (name, count) in locations {
            if let Some(mut location) = self.stores.storage_locations.get(&name)? {
                location.usage_count += count;
                location.updated_at = Timestamp::now();
                ops.push(self.stores.storage_locations.put_op(&location)?);
            }
        }
        let storage = &self.stores.storage;
        let created: Vec<String> = defs.iter().map(TableDef::column_family).collect();
        let result = created
            .iter()
            .try_for_each(|cf| storage.create_cf(cf))
            .and_then(|()| storage.write(ops));
        if let Err(e) = result {
            for cf in &created {
                let _ = storage.drop_cf(cf);
            }
            return Err(e);
        }
        // Restored rows keep their `_seq`: later commits must come after.
        let max_seq = manifest
            .tables
            .iter()
            .flat_map(|t| t.partitions.iter().flat_map(|p| p.files.iter()))
            .map(|f| f.file.max_seq)
            .max()
            .unwrap_or(0);
        self.tables.hot().advance_seq(max_seq)?;
        for def in defs {
            self.tables.register(def);
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backup_destinations_stay_below_the_root() {
        let root = Path::new("/srv/backups");
        assert_eq!(
            relative_to_root(root, "daily/2026-11-28").unwrap(),
            "daily/2026-11-28"
        );
        assert_eq!(relative_to_root(root, "/srv/backups/a/b").unwrap(), "a/b");
        assert_eq!(relative_to_root(root, "./a").unwrap(), "a");
        for bad in [
            "../etc",
            "a/../../b",
            "/etc/passwd",
            "/srv/backups",
            "",
            "/srv/backupsX/a",
        ] {
            assert!(relative_to_root(root, bad).is_err(), "{bad}");
        }
        assert!(check_relative("t/shared/hot.parquet", "p").is_ok());
        for bad in ["../x", "a//b", "a/./b", "a\\b", ""] {
            assert!(check_relative(bad, "p").is_err(), "{bad}");
        }
    }
}
