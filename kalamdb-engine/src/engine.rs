//! Opening the data directory and first-start bootstrap.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use datafusion::execution::SessionStateBuilder;
use datafusion::prelude::{SessionConfig, SessionContext};
use kalamdb_model::{Role, StorageLocation, Timestamp, User};

use crate::auth;
use crate::catalog::{CATALOG_NAME, KalamCatalog};
use crate::cold::{ColdConfig, ColdTier};
use crate::error::{EngineError, Result};
use crate::jobs::{JobConfig, Jobs};
use crate::sql::functions::SnowflakeIdUdf;
use crate::storage::{Storage, USER_TABLE_COUNTERS_CF};
use crate::system::{SYSTEM_COLUMN_FAMILIES, SystemStores};
use crate::table::TableRegistry;
use datafusion::execution::runtime_env::RuntimeEnv;
use datafusion::logical_expr::ScalarUDF;

/// Name of the built-in administrator.
pub const ROOT_USER: &str = "root";
/// Name of the default storage location.
pub const LOCAL_STORAGE: &str = "local";

/// What the engine needs to open a data directory.
#[derive(Debug, Clone)]
pub struct EngineConfig {
    /// Holds RocksDB, Parquet files and the generated secrets.
    pub data_dir: PathBuf,
    /// Password for `root` at first start; generated when absent.
    pub root_password: Option<String>,
    /// Name of this node in system tables.
    pub node_id: String,
    /// Flush defaults and compaction thresholds.
    pub cold: ColdConfig,
    /// Job retention and cleanup schedule.
    pub jobs: JobConfig,
}

impl EngineConfig {
    /// A configuration with defaults for everything but the data directory.
    pub fn new(data_dir: impl Into<PathBuf>) -> Self {
        EngineConfig {
            data_dir: data_dir.into(),
            root_password: None,
            node_id: "node-1".into(),
            cold: ColdConfig::default(),
            jobs: JobConfig::default(),
        }
    }
}

/// What happened at start that the operator must hear about once.
#[derive(Debug, Default)]
pub struct Bootstrap {
    /// Set when this start created `root` with a generated password.
    pub generated_root_password: Option<String>,
    /// Where that password was written.
    pub root_password_file: Option<PathBuf>,
}

pub struct Engine {
    pub(crate) config: EngineConfig,
    pub(crate) stores: SystemStores,
    pub(crate) tables: Arc<TableRegistry>,
    /// Template session: catalog and functions. Each batch clones its state
    /// and attaches the caller.
    pub(crate) ctx: SessionContext,
    /// Serialises catalog changes (namespaces, tables, users).
    pub(crate) ddl_lock: parking_lot::Mutex<()>,
    /// Flush, compaction and cleanup jobs.
    pub(crate) jobs: Jobs,
}

impl std::fmt::Debug for Engine {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Engine")
            .field("data_dir", &self.config.data_dir)
            .finish()
    }
}

impl Engine {
    /// Opens (creating on first start) the data directory.
    pub fn open(config: EngineConfig) -> Result<(Arc<Engine>, Bootstrap)> {
        let mut families: Vec<&str> = SYSTEM_COLUMN_FAMILIES.to_vec();
        families.push(USER_TABLE_COUNTERS_CF);
        families.push("default");
        let storage =
            Storage::open(&config.data_dir.join("rocksdb"), &families).map_err(|e| match e {
                EngineError::Storage(err) if err.to_string().contains("lock") => {
                    EngineError::Internal(format!(
                        "the data directory {} is in use by another KalamDB server ({err})",
                        config.data_dir.display()
                    ))
                }
                other => other,
            })?;
        let storage = Arc::new(storage);
        let stores = SystemStores::new(&storage);
        let runtime = Arc::new(RuntimeEnv::default());
        let (cold, flush_requests) = ColdTier::new(runtime.clone(), config.cold.clone());
        let tables = Arc::new(TableRegistry::open(storage.clone(), &stores, cold)?);

        let session_config = SessionConfig::new()
            .with_default_catalog_and_schema(CATALOG_NAME, "default")
            .with_create_default_catalog_and_schema(false)
            .with_information_schema(true);
        let state = SessionStateBuilder::new()
            .with_config(session_config)
            .with_runtime_env(runtime)
            .with_default_features()
            .build();
        let ctx = SessionContext::new_with_state(state);
        ctx.register_catalog(
            CATALOG_NAME,
            Arc::new(KalamCatalog::new(stores.clone(), tables.clone())),
        );
        ctx.register_udf(ScalarUDF::new_from_impl(SnowflakeIdUdf::new(
            tables.clone(),
        )));

        let jobs = Jobs::new(config.jobs.clone(), flush_requests);
        let engine = Engine {
            config,
            stores,
            tables,
            ctx,
            ddl_lock: parking_lot::Mutex::new(()),
            jobs,
        };
        let bootstrap = engine.bootstrap()?;
        for location in engine.stores.storage_locations.scan_all()? {
            if let Err(e) = engine.tables.cold.open_location(&location) {
                tracing::warn!(
                    "storage location {} cannot be opened: {e}",
                    location.location_name
                );
            }
        }
        Ok((Arc::new(engine), bootstrap))
    }

    pub fn data_dir(&self) -> &Path {
        &self.config.data_dir
    }

    /// Creates what a fresh data directory needs: the `local` storage
    /// location and the `root` user.
    fn bootstrap(&self) -> Result<Bootstrap> {
        let now = Timestamp::now();
        if self.stores.storage_locations.get(LOCAL_STORAGE)?.is_none() {
            let path = self.config.data_dir.join("storage");
            self.stores.storage_locations.put(&StorageLocation {
                location_name: LOCAL_STORAGE.into(),
                location_type: "filesystem".into(),
                path: path.to_string_lossy().into_owned(),
                credentials_ref: None,
                options: None,
                usage_count: 0,
                created_at: now,
                updated_at: now,
            })?;
        }
        // Subscriptions do not survive a restart: rows left by a crash are stale.
        for stale in self.stores.live_queries.scan_all()? {
            self.stores.live_queries.delete(&stale.live_id)?;
        }
        let mut bootstrap = Bootstrap::default();
        if self.stores.users.get(ROOT_USER)?.is_none() {
            let password = match &self.config.root_password {
                Some(p) => p.clone(),
                None => {
                    let generated = auth::random_secret(24);
                    let file = self.config.data_dir.join("root.password");
                    write_private_file(&file, &generated)?;
                    bootstrap.generated_root_password = Some(generated.clone());
                    bootstrap.root_password_file = Some(file);
                    generated
                }
            };
            self.stores.users.put(&User {
                user_id: ROOT_USER.into(),
                username: ROOT_USER.into(),
                password_hash: auth::hash_password(&password)?,
                role: Role::System,
                email: None,
                created_at: now,
                updated_at: now,
                deleted_at: None,
            })?;
        }
        Ok(bootstrap)
    }

    /// The token-signing secret: `configured` if given, else the one kept in
    /// `{data_dir}/jwt.secret`, generated on first use.
    pub fn jwt_secret(&self, configured: Option<&str>) -> Result<String> {
        if let Some(secret) = configured {
            return Ok(secret.to_string());
        }
        let file = self.config.data_dir.join("jwt.secret");
        match std::fs::read_to_string(&file) {
            Ok(secret) if !secret.trim().is_empty() => Ok(secret.trim().to_string()),
            _ => {
                let secret = auth::random_secret(48);
                write_private_file(&file, &secret)?;
                Ok(secret)
            }
        }
    }

    /// The live (not dropped) user with this id.
    pub fn user(&self, user_id: &str) -> Result<Option<User>> {
        Ok(self
            .stores
            .users
            .get(user_id)?
            .filter(|u| u.deleted_at.is_none()))
    }

    /// Checks a username and password; the same error for every failure.
    pub fn login(&self, username: &str, password: &str) -> Result<User> {
        let user = self.user(username)?;
        let hash = user.as_ref().map(|u| u.password_hash.as_str());
        if auth::verify_password(password, hash)
            && let Some(user) = user
        {
            return Ok(user);
        }
        Err(EngineError::Unauthenticated(
            "invalid username or password".into(),
        ))
    }
}

/// Writes a secret readable by the owner only (mode 0600 on Unix).
fn write_private_file(path: &Path, contents: &str) -> Result<()> {
    use std::io::Write;
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create(true).truncate(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    let mut file = options
        .open(path)
        .map_err(|e| EngineError::Internal(format!("cannot write {}: {e}", path.display())))?;
    file.write_all(contents.as_bytes())
        .and_then(|_| file.sync_all())
        .map_err(|e| EngineError::Internal(format!("cannot write {}: {e}", path.display())))
}
