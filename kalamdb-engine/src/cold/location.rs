//! Storage locations: where Parquet files are written and read from.
//!
//! A location is a local directory (`filesystem`) or an S3-compatible bucket
//! and prefix (`s3`). Its `path` may carry a template with `${namespace}`,
//! `${table}` and `${user_id}`; without one, files go to
//! `{path}/${namespace}/${table}/${user_id}` (`shared` in place of the user
//! id for SHARED tables). Every location is also registered with
//! DataFusion's object-store registry as `kalam://{name}`, so scans of its
//! files get Parquet statistics pruning, bloom filters and predicate
//! pushdown.

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use datafusion::execution::object_store::ObjectStoreUrl;
use futures::TryStreamExt;
use kalamdb_model::{StorageKind, StorageLocation};
use object_store::aws::AmazonS3Builder;
use object_store::local::LocalFileSystem;
use object_store::path::Path as ObjectPath;
use object_store::prefix::PrefixStore;
use object_store::{ClientOptions, ObjectStore, ObjectStoreExt, PutPayload, RetryConfig};
use parking_lot::RwLock;

use crate::error::{EngineError, Result};
use crate::table::keys::{Scope, path_segment};

/// Template used when a location's path has none.
const DEFAULT_TEMPLATE: &str = "${namespace}/${table}/${user_id}";

/// Options `CREATE STORAGE … OPTIONS (…)` accepts for S3 locations.
pub(crate) const S3_OPTIONS: [&str; 6] = [
    "endpoint",
    "region",
    "access_key_id",
    "secret_access_key",
    "session_token",
    "allow_http",
];

fn storage_error(location: &str, source: object_store::Error) -> EngineError {
    EngineError::ObjectStore {
        location: location.to_string(),
        source,
    }
}

fn io_error(location: &str, path: &Path, source: std::io::Error) -> EngineError {
    EngineError::LocationIo {
        location: location.to_string(),
        path: path.to_path_buf(),
        source,
    }
}

/// The kind named in `CREATE STORAGE … TYPE`: `filesystem` (or `local`) or `s3`.
pub(crate) fn parse_storage_kind(text: &str) -> Option<StorageKind> {
    if text.eq_ignore_ascii_case("local") {
        return Some(StorageKind::Filesystem);
    }
    StorageKind::parse(text)
}

/// One opened storage location.
pub(crate) struct ColdStore {
    pub name: String,
    pub kind: StorageKind,
    /// The location's files, relative to its root.
    pub(crate) store: Arc<dyn ObjectStore>,
    /// Root directory of a filesystem location (written directly, with fsync).
    local_root: Option<PathBuf>,
    /// Directory template below the root.
    template: String,
}

impl std::fmt::Debug for ColdStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "ColdStore({}, {:?})", self.name, self.kind)
    }
}

/// Splits a location path into its root and the template below it.
fn split_template(path: &str) -> (&str, String) {
    match path.find("${") {
        Some(at) => {
            let root = path[..at].trim_end_matches('/');
            (root, path[at..].trim_matches('/').to_string())
        }
        None => (path.trim_end_matches('/'), DEFAULT_TEMPLATE.to_string()),
    }
}

/// Parses `s3://bucket/prefix` into bucket and prefix.
fn parse_s3_url(root: &str) -> Result<(String, String)> {
    let rest = root.strip_prefix("s3://").ok_or_else(|| {
        EngineError::InvalidInput(format!(
            "an s3 storage path must look like s3://bucket/prefix, not {root}"
        ))
    })?;
    let (bucket, prefix) = rest.split_once('/').unwrap_or((rest, ""));
    if bucket.is_empty() {
        return Err(EngineError::InvalidInput(format!(
            "the s3 storage path {root} names no bucket"
        )));
    }
    Ok((bucket.to_string(), prefix.trim_matches('/').to_string()))
}

impl ColdStore {
    /// Opens a location from its `system.storage_locations` row.
    pub(crate) fn open(location: &StorageLocation) -> Result<ColdStore> {
        let kind = location.location_type;
        let (root, template) = split_template(&location.path);
        for variable in template.split("${").skip(1) {
            let name = variable.split('}').next().unwrap_or_default();
            if !matches!(name, "namespace" | "table" | "user_id") {
                return Err(EngineError::InvalidInput(format!(
                    "storage path template variable ${{{name}}} is unknown; use ${{namespace}}, ${{table}} and ${{user_id}}"
                )));
            }
        }
        let options: BTreeMap<String, String> = location
            .options
            .as_deref()
            .and_then(|o| serde_json::from_str(o).ok())
            .unwrap_or_default();
        let name = location.location_name.clone();
        let (store, local_root): (Arc<dyn ObjectStore>, _) = match kind {
            StorageKind::Filesystem => {
                let root = PathBuf::from(root.strip_prefix("file://").unwrap_or(root));
                std::fs::create_dir_all(&root).map_err(|e| io_error(&name, &root, e))?;
                let store =
                    LocalFileSystem::new_with_prefix(&root).map_err(|e| storage_error(&name, e))?;
                (Arc::new(store), Some(root))
            }
            StorageKind::S3 => {
                let (bucket, prefix) = parse_s3_url(root)?;
                // Bounded retries and timeouts: a flush against an
                // unreachable endpoint fails in seconds and says why.
                let retry = RetryConfig {
                    max_retries: 3,
                    retry_timeout: Duration::from_secs(30),
                    ..Default::default()
                };
                let client = ClientOptions::new()
                    .with_connect_timeout(Duration::from_secs(5))
                    .with_timeout(Duration::from_secs(60));
                let mut builder = AmazonS3Builder::from_env()
                    .with_bucket_name(bucket)
                    .with_retry(retry)
                    .with_client_options(client);
                if let Some(v) = options.get("endpoint") {
                    builder = builder.with_endpoint(v);
                    if v.starts_with("http://") {
                        builder = builder.with_allow_http(true);
                    }
                }
                builder = builder.with_region(
                    options
                        .get("region")
                        .cloned()
                        .or_else(|| std::env::var("AWS_REGION").ok())
                        .unwrap_or_else(|| "us-east-1".into()),
                );
                if let Some(v) = options.get("access_key_id") {
                    builder = builder.with_access_key_id(v);
                }
                if let Some(v) = options.get("secret_access_key") {
                    builder = builder.with_secret_access_key(v);
                }
                if let Some(v) = options.get("session_token") {
                    builder = builder.with_token(v);
                }
                if let Some(v) = options.get("allow_http") {
                    builder = builder.with_allow_http(v == "true");
                }
                let s3 = builder.build().map_err(|e| storage_error(&name, e))?;
                let store: Arc<dyn ObjectStore> = if prefix.is_empty() {
                    Arc::new(s3)
                } else {
                    Arc::new(PrefixStore::new(s3, prefix.as_str()))
                };
                (store, None)
            }
        };
        Ok(ColdStore {
            name,
            kind,
            store,
            local_root,
            template,
        })
    }

    /// `kalam://{name}`: how DataFusion finds this location's files.
    pub(crate) fn url(&self) -> ObjectStoreUrl {
        location_url(&self.name)
    }

    /// Directory (relative to the root) of one partition's files.
    pub(crate) fn directory(&self, namespace: &str, table: &str, scope: &Scope) -> String {
        let owner = scope.directory_name();
        self.template
            .replace("${namespace}", &path_segment(namespace))
            .replace("${table}", &path_segment(table))
            .replace("${user_id}", &owner)
    }

    /// Directory (relative to the root) holding every partition of a table,
    /// when the template puts partitions below a per-table directory.
    pub(crate) fn table_directory(&self, namespace: &str, table: &str) -> Option<String> {
        let (head, _) = self.template.split_once("${user_id}")?;
        let head = head
            .replace("${namespace}", &path_segment(namespace))
            .replace("${table}", &path_segment(table));
        let head = head.trim_end_matches('/');
        (!head.contains("${") && head.contains(&path_segment(table))).then(|| head.to_string())
    }

    /// Writes a whole file. On the filesystem: a temporary name, fsync,
    /// rename, fsync of the directory. On S3 a PUT, which is atomic.
    pub(crate) async fn put(&self, path: &str, data: Bytes) -> Result<()> {
        match &self.local_root {
            Some(root) => {
                let target = root.join(path);
                let written = target.clone();
                tokio::task::spawn_blocking(move || write_durably(&target, &data))
                    .await
                    .map_err(|e| EngineError::Internal(format!("writing a file failed: {e}")))?
                    .map_err(|e| io_error(&self.name, &written, e))
            }
            None => self
                .store
                .put(&ObjectPath::from(path), PutPayload::from_bytes(data))
                .await
                .map(|_| ())
                .map_err(|e| storage_error(&self.name, e)),
        }
    }

    /// Deletes a file; a file that is already gone is not an error.
    pub(crate) async fn delete(&self, path: &str) -> Result<()> {
        match self.store.delete(&ObjectPath::from(path)).await {
            Ok(()) | Err(object_store::Error::NotFound { .. }) => Ok(()),
            Err(e) => Err(storage_error(&self.name, e)),
        }
    }

    /// Every file below `directory`, with its size.
    pub(crate) async fn list(&self, directory: &str) -> Result<Vec<(String, u64)>> {
        let prefix = ObjectPath::from(directory);
        let listed: Vec<_> = match self.store.list(Some(&prefix)).try_collect().await {
            Ok(listed) => listed,
            Err(object_store::Error::NotFound { .. }) => Vec::new(),
            Err(e) => return Err(storage_error(&self.name, e)),
        };
        Ok(listed
            .into_iter()
            .map(|meta| (meta.location.to_string(), meta.size))
            .collect())
    }

    /// Reads a whole file.
    pub(crate) async fn get(&self, path: &str) -> Result<Bytes> {
        let result = self
            .store
            .get(&ObjectPath::from(path))
            .await
            .map_err(|e| storage_error(&self.name, e))?;
        result
            .bytes()
            .await
            .map_err(|e| storage_error(&self.name, e))
    }

    /// Checks that the location can be written, read and deleted from.
    pub(crate) async fn probe(&self) -> Result<()> {
        let path = format!(".kalamdb-probe-{}", std::process::id());
        self.put(&path, Bytes::from_static(b"ok")).await?;
        self.get(&path).await?;
        self.delete(&path).await
    }

    /// After a file was deleted: removes its directory and the ones above
    /// it while they are empty, up to the location's root (filesystem
    /// locations only). A directory that still holds anything, of this
    /// table or another sharing the template, is left alone.
    pub(crate) fn prune_empty_dirs(&self, file_path: &str) {
        let Some(root) = &self.local_root else {
            return;
        };
        let mut dir = Path::new(file_path).parent();
        while let Some(relative) = dir.filter(|d| !d.as_os_str().is_empty()) {
            // Fails (and stops) on a directory that is not empty.
            if std::fs::remove_dir(root.join(relative)).is_err() {
                break;
            }
            dir = relative.parent();
        }
    }
}

/// `kalam://{name}`.
pub(crate) fn location_url(name: &str) -> ObjectStoreUrl {
    ObjectStoreUrl::parse(format!("kalam://{name}"))
        .unwrap_or_else(|_| ObjectStoreUrl::local_filesystem())
}

fn write_durably(target: &Path, data: &[u8]) -> std::io::Result<()> {
    use std::io::Write;
    let dir = target
        .parent()
        .ok_or_else(|| std::io::Error::other("a file path needs a directory"))?;
    let file_name = target
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let temp = dir.join(format!(".{file_name}.tmp"));
    // The sweeper removes directories that became empty; one may vanish
    // between creating it and creating the file in it.
    let mut attempts = 0;
    let mut file = loop {
        attempts += 1;
        std::fs::create_dir_all(dir)?;
        match std::fs::File::create(&temp) {
            Err(e) if e.kind() == std::io::ErrorKind::NotFound && attempts < 5 => continue,
            other => break other?,
        }
    };
    file.write_all(data)?;
    file.sync_all()?;
    drop(file);
    std::fs::rename(&temp, target)?;
    std::fs::File::open(dir)?.sync_all()
}

/// Every opened location by name, registered with DataFusion as well.
#[derive(Default)]
pub(crate) struct Locations {
    stores: RwLock<HashMap<String, Arc<ColdStore>>>,
}

impl std::fmt::Debug for Locations {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Locations")
            .field("count", &self.stores.read().len())
            .finish()
    }
}

impl Locations {
    /// Opens `location`; [`Locations::register`] makes it readable.
    pub(crate) fn add(&self, location: &StorageLocation) -> Result<Arc<ColdStore>> {
        let store = Arc::new(ColdStore::open(location)?);
        self.stores
            .write()
            .insert(location.location_name.clone(), store.clone());
        Ok(store)
    }

    pub(crate) fn remove(&self, name: &str) {
        self.stores.write().remove(name);
    }

    pub(crate) fn get(&self, name: &str) -> Result<Arc<ColdStore>> {
        self.stores
            .read()
            .get(name)
            .cloned()
            .ok_or_else(|| EngineError::Internal(format!("storage location {name} is not open")))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn segments_are_safe_and_injective() {
        assert_eq!(path_segment("alice"), "alice");
        assert_eq!(path_segment("a/b"), "a=2Fb");
        assert_eq!(path_segment(".."), "=2E.");
        assert_eq!(path_segment("a=2Fb"), "a=3D2Fb");
        assert_ne!(path_segment("a/b"), path_segment("a=2Fb"));
        assert_eq!(path_segment(""), "=00");
    }

    #[test]
    fn templates() {
        assert_eq!(
            split_template("/data/storage/"),
            ("/data/storage", DEFAULT_TEMPLATE.to_string())
        );
        assert_eq!(
            split_template("s3://b/p/${namespace}/x/${table}/${user_id}"),
            ("s3://b/p", "${namespace}/x/${table}/${user_id}".to_string())
        );
        assert_eq!(
            parse_s3_url("s3://bucket/a/b").unwrap(),
            ("bucket".into(), "a/b".into())
        );
        assert!(parse_s3_url("http://x").is_err());
    }
}
