//! Opening the data directory and first-start bootstrap.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use datafusion::execution::SessionStateBuilder;
use datafusion::prelude::{SessionConfig, SessionContext};
use kalamdb_model::{Role, StorageKind, StorageLocation, Timestamp, User};

use crate::auth;
use crate::catalog::{CATALOG_NAME, KalamCatalog};
use crate::cold::{ColdConfig, ColdTier};
use crate::error::{EngineError, Result};
use crate::functions::SnowflakeIdUdf;
use crate::keyspace::{Keyspace, Markers, UserNames};
use crate::metrics::Metrics;
use crate::queue::{JobConfig, Jobs};
use crate::registry::TableRegistry;
use crate::session::Limits;
use crate::storage::{Storage, USER_TABLE_COUNTERS_CF, WriteOp};
use crate::system::{SYSTEM_COLUMN_FAMILIES, SystemStores};
use datafusion::execution::memory_pool::FairSpillPool;
use datafusion::execution::runtime_env::RuntimeEnvBuilder;
use datafusion::logical_expr::ScalarUDF;

/// Name of the built-in administrator.
pub(crate) const ROOT_USER: &str = "root";
/// Name of the default storage location.
pub(crate) const LOCAL_STORAGE: &str = "local";

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
    /// Bounds on the work one request may ask for.
    pub limits: Limits,
    /// The only local directory backups are written to and restored from;
    /// `{data_dir}/backups` when absent.
    pub backup_dir: Option<PathBuf>,
    /// Run plain INSERT … VALUES and point SELECTs without DataFusion
    /// planning (`sql::fast`); off only to compare the two paths.
    pub fast_path: bool,
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
            limits: Limits::default(),
            backup_dir: None,
            fast_path: true,
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
    /// What `/metrics` reports; recorded by the engine and the HTTP layer.
    pub(crate) metrics: Arc<Metrics>,
    /// Ids of users whose sessions must end now (dropped, or their role or
    /// password changed): open WebSocket connections listen to it.
    revocations: tokio::sync::broadcast::Sender<String>,
    /// Held (locked) while the engine is open: one server per data directory.
    _lock: std::fs::File,
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
        let lock = lock_data_dir(&config.data_dir)?;
        let storage = Storage::open(&config.data_dir.join("rocksdb"), &families)?;
        let storage = Arc::new(storage);
        let stores = SystemStores::new(&storage);
        // A bounded pool: a join or sort of a hostile query fails (or
        // spills) instead of taking the server's memory.
        let runtime = RuntimeEnvBuilder::new()
            .with_memory_pool(Arc::new(FairSpillPool::new(
                config.limits.query_memory_bytes,
            )))
            .with_temp_file_path(config.data_dir.join("spill"))
            .build_arc()?;
        let (cold, flush_requests) =
            ColdTier::new(storage.clone(), runtime.clone(), config.cold.clone())?;
        let tables = Arc::new(TableRegistry::open(storage.clone(), &stores, cold)?);

        let session_config = SessionConfig::new()
            .with_default_catalog_and_schema(CATALOG_NAME, "default")
            .with_create_default_catalog_and_schema(false)
            // KalamDB's own information_schema (USER/SHARED/STREAM/SYSTEM
            // kinds) is a schema of its catalog; DataFusion's would shadow it.
            .with_information_schema(false);
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
        // Functions whose output size an argument sets, bounded per call.
        let state = ctx.state();
        for function in crate::functions::bounded_functions(state.scalar_functions().values()) {
            ctx.register_udf(function);
        }

        let jobs = Jobs::new(config.jobs.clone(), flush_requests);
        let engine = Engine {
            config,
            stores,
            tables,
            ctx,
            ddl_lock: parking_lot::Mutex::new(()),
            jobs,
            metrics: Arc::new(Metrics::new()?),
            revocations: tokio::sync::broadcast::channel(1024).0,
            _lock: lock,
        };
        engine.index_user_names()?;
        let bootstrap = engine.bootstrap()?;
        for location in engine.stores.storage_locations.scan_all()? {
            if let Err(e) = engine.tables.cold().open_location(&location) {
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

    /// The server's metrics, for the HTTP layer to record requests and
    /// WebSocket traffic in.
    pub fn metrics(&self) -> &Arc<Metrics> {
        &self.metrics
    }

    /// Creates what a fresh data directory needs: the `local` storage
    /// location and the `root` user.
    fn bootstrap(&self) -> Result<Bootstrap> {
        let now = Timestamp::now();
        // `local` is always `{data_dir}/storage`: a data directory that was
        // moved (or restored elsewhere) keeps finding its Parquet files.
        let path = self
            .config
            .data_dir
            .join("storage")
            .to_string_lossy()
            .into_owned();
        match self.stores.storage_locations.get(LOCAL_STORAGE)? {
            None => self.stores.storage_locations.put(&StorageLocation {
                location_name: LOCAL_STORAGE.into(),
                location_type: StorageKind::Filesystem,
                path,
                credentials_ref: None,
                options: None,
                usage_count: 0,
                created_at: now,
                updated_at: now,
            })?,
            Some(mut local) if local.path != path => {
                tracing::info!(
                    "the data directory moved: storage location local is now {path} (was {})",
                    local.path
                );
                local.path = path;
                local.updated_at = now;
                self.stores.storage_locations.put(&local)?;
            }
            Some(_) => {}
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
            self.insert_user(&User {
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

    /// Whether a namespace of this name exists.
    pub fn namespace_exists(&self, name: &str) -> Result<bool> {
        Ok(self.stores.namespaces.get(name)?.is_some())
    }

    /// The live user with this login name.
    pub fn user_by_name(&self, username: &str) -> Result<Option<User>> {
        let Some(id) = UserNames.get(&self.stores.storage, username)? else {
            return Ok(None);
        };
        Ok(self.user(&id)?.filter(|u| u.username == username))
    }

    /// An id for a new user called `username`: the name itself unless an
    /// account (live or dropped) ever had that id, else `{name}~{n}`. `~`
    /// is not allowed in names, so no name can claim such an id later, and
    /// ids are never reused: a dropped account's rows, files, tokens and
    /// subscriptions can never pass to a new one.
    pub(crate) fn fresh_user_id(&self, username: &str) -> Result<String> {
        let mut candidate = username.to_string();
        let mut n = 1u64;
        while self.stores.users.get(&candidate)?.is_some() {
            n += 1;
            candidate = format!("{username}~{n}");
        }
        Ok(candidate)
    }

    /// Writes a new user and its login name in one batch.
    pub(crate) fn insert_user(&self, user: &User) -> Result<()> {
        self.stores
            .storage
            .write(vec![self.stores.users.put_op(user)?, user_name_op(user)?])
    }

    /// The operation freeing a dropped user's login name.
    pub(crate) fn forget_user_name_op(&self, username: &str) -> WriteOp {
        UserNames.delete_op(username)
    }

    /// Builds the login-name index of a data directory written before it
    /// existed (where every user id was its login name).
    fn index_user_names(&self) -> Result<()> {
        if Markers
            .get(&self.stores.storage, USER_NAMES_INDEXED)?
            .is_some()
        {
            return Ok(());
        }
        let mut ops = Vec::new();
        for user in self.stores.users.scan_all()? {
            if user.deleted_at.is_none() {
                ops.push(user_name_op(&user)?);
            }
        }
        ops.push(Markers.put_op(USER_NAMES_INDEXED, &())?);
        self.stores.storage.write(ops)
    }

    /// Ends every session of a user: its subscriptions stop at once and its
    /// WebSocket connections (listening on [`Engine::revocations`]) close.
    pub(crate) fn revoke_sessions(&self, user_id: &str) {
        for subscription in self.tables.live.of_user(user_id) {
            self.unsubscribe(&subscription.live_id);
        }
        let _ = self.revocations.send(user_id.to_string());
    }

    /// Ids of users whose sessions were revoked, as it happens.
    pub fn revocations(&self) -> tokio::sync::broadcast::Receiver<String> {
        self.revocations.subscribe()
    }

    /// Checks a username and password; the same error for every failure.
    pub fn login(&self, username: &str, password: &str) -> Result<User> {
        let user = self.user_by_name(username)?;
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

/// Set once the index of login names is complete.
const USER_NAMES_INDEXED: &str = "user_names_indexed";

/// The index entry of a live user: its login name → its id.
fn user_name_op(user: &User) -> Result<WriteOp> {
    UserNames.put_op(&user.username, &user.user_id)
}

/// Locks `{data_dir}/kalamdb.lock` for this process, creating the
/// directory on first start; a second server on the same directory gets a
/// clear error instead of RocksDB's.
fn lock_data_dir(data_dir: &Path) -> Result<std::fs::File> {
    let cannot = |e: std::io::Error| {
        EngineError::Internal(format!("cannot lock {}: {e}", data_dir.display()))
    };
    std::fs::create_dir_all(data_dir).map_err(cannot)?;
    let file = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(data_dir.join("kalamdb.lock"))
        .map_err(cannot)?;
    match file.try_lock() {
        Ok(()) => Ok(file),
        Err(std::fs::TryLockError::WouldBlock) => Err(EngineError::Internal(format!(
            "the data directory {} is in use by another KalamDB server",
            data_dir.display()
        ))),
        Err(std::fs::TryLockError::Error(e)) => Err(cannot(e)),
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::run;

    #[tokio::test]
    async fn user_ids_are_never_reused_and_old_directories_get_a_name_index() {
        let dir = tempfile::tempdir().unwrap();
        let mut config = EngineConfig::new(dir.path());
        config.root_password = Some("root-pw".into());
        {
            let (engine, _) = Engine::open(config.clone()).unwrap();
            run(&engine, "CREATE USER 'alice' WITH PASSWORD 'pw-1'").await;
            assert_eq!(engine.login("alice", "pw-1").unwrap().user_id, "alice");
            run(&engine, "DROP USER 'alice'").await;
            assert!(engine.login("alice", "pw-1").is_err());
            run(&engine, "CREATE USER 'alice' WITH PASSWORD 'pw-2'").await;
            assert_eq!(engine.login("alice", "pw-2").unwrap().user_id, "alice~2");
            assert!(
                engine.user("alice").unwrap().is_none(),
                "the old id stays dropped"
            );
            // A data directory from before the index: no entries, no marker.
            let mut ops = vec![Markers.delete_op(USER_NAMES_INDEXED)];
            for name in ["root", "alice"] {
                ops.push(engine.forget_user_name_op(name));
            }
            engine.stores.storage.write(ops).unwrap();
            assert!(engine.user_by_name("alice").unwrap().is_none());
        }
        let (engine, _) = Engine::open(config).unwrap();
        assert_eq!(engine.login("alice", "pw-2").unwrap().user_id, "alice~2");
        assert_eq!(engine.login("root", "root-pw").unwrap().user_id, "root");
        run(&engine, "DROP USER 'alice'").await;
        run(&engine, "CREATE USER 'alice' WITH PASSWORD 'pw-3'").await;
        assert_eq!(engine.login("alice", "pw-3").unwrap().user_id, "alice~3");
    }
}
