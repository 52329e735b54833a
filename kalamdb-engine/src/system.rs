//! System tables: a typed RocksDB store and a DataFusion provider, each
//! written once and generic over [`SystemTable`], so every model in
//! `kalamdb-model` gets both without per-table code.

use std::borrow::Borrow;
use std::collections::HashMap;
use std::fmt;
use std::marker::PhantomData;
use std::sync::Arc;

use async_trait::async_trait;
use datafusion::arrow::datatypes::SchemaRef;
use datafusion::catalog::{SchemaProvider, Session, TableProvider};
use datafusion::datasource::TableType;
use datafusion::datasource::memory::MemorySourceConfig;
use datafusion::error::DataFusionError;
use datafusion::logical_expr::Expr;
use datafusion::physical_plan::ExecutionPlan;
use kalamdb_model::{
    Job, LiveQuery, Namespace, StorageKey, StorageLocation, SystemTable, Table, TableSchema, User,
};

use crate::error::{EngineError, Result};
use crate::session::Caller;
use crate::storage::Storage;

/// Schema of the system tables.
pub(crate) const SYSTEM_SCHEMA: &str = "system";

/// Typed `put/get/delete/scan_all` over the column family of model `M`.
pub(crate) struct SystemStore<M> {
    storage: Arc<Storage>,
    _model: PhantomData<fn() -> M>,
}

impl<M> Clone for SystemStore<M> {
    fn clone(&self) -> Self {
        SystemStore {
            storage: self.storage.clone(),
            _model: PhantomData,
        }
    }
}

impl<M: SystemTable> fmt::Debug for SystemStore<M> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "SystemStore({})", M::COLUMN_FAMILY)
    }
}

impl<M: SystemTable> SystemStore<M> {
    pub(crate) fn new(storage: Arc<Storage>) -> Self {
        SystemStore {
            storage,
            _model: PhantomData,
        }
    }

    pub(crate) fn put(&self, row: &M) -> Result<()> {
        let value = encode(row)?;
        self.storage
            .put(M::COLUMN_FAMILY, &row.key().storage_key(), &value)
    }

    pub(crate) fn get<Q>(&self, key: &Q) -> Result<Option<M>>
    where
        M::Key: Borrow<Q>,
        Q: StorageKey + ?Sized,
    {
        match self.storage.get(M::COLUMN_FAMILY, &key.storage_key())? {
            Some(bytes) => decode(&bytes).map(Some),
            None => Ok(None),
        }
    }

    pub(crate) fn delete<Q>(&self, key: &Q) -> Result<()>
    where
        M::Key: Borrow<Q>,
        Q: StorageKey + ?Sized,
    {
        self.storage.delete(M::COLUMN_FAMILY, &key.storage_key())
    }

    /// Every row, in key order.
    pub(crate) fn scan_all(&self) -> Result<Vec<M>> {
        self.storage
            .scan_prefix(M::COLUMN_FAMILY, b"")?
            .iter()
            .map(|(_, v)| decode(v))
            .collect()
    }

    /// The operation that writes `row`, for an atomic multi-table write.
    pub(crate) fn put_op(&self, row: &M) -> Result<crate::storage::WriteOp> {
        Ok(crate::storage::WriteOp::Put {
            cf: M::COLUMN_FAMILY.to_string(),
            key: row.key().storage_key(),
            value: encode(row)?,
        })
    }
}

impl<M: SystemTable> SystemStore<M> {
    /// The operation that deletes the row with `key`.
    pub(crate) fn delete_op<Q>(&self, key: &Q) -> crate::storage::WriteOp
    where
        M::Key: Borrow<Q>,
        Q: StorageKey + ?Sized,
    {
        crate::storage::WriteOp::Delete {
            cf: M::COLUMN_FAMILY.to_string(),
            key: key.storage_key(),
        }
    }
}

fn encode<M: SystemTable>(row: &M) -> Result<Vec<u8>> {
    serde_json::to_vec(row)
        .map_err(|e| EngineError::Internal(format!("cannot encode a {} row: {e}", M::TABLE_NAME)))
}

fn decode<M: SystemTable>(bytes: &[u8]) -> Result<M> {
    serde_json::from_slice(bytes)
        .map_err(|e| EngineError::Internal(format!("corrupt row in system.{}: {e}", M::TABLE_NAME)))
}

/// Which rows of a system table a caller may see, and what of them: the
/// row as shown to the caller, or `None` when it is hidden.
pub(crate) type RowVisibility<M> = fn(M, &Caller) -> Option<M>;

/// `system.<name>` as a DataFusion table. Rows are read from RocksDB when the
/// query runs, filtered by the caller's visibility; DataFusion re-applies
/// every WHERE filter, and the limit is honoured at the scan.
pub(crate) struct SystemTableProvider<M> {
    store: SystemStore<M>,
    visible: RowVisibility<M>,
    /// Brings stored rows up to date with in-memory state before they are shown.
    refresh: Option<RowRefresh<M>>,
}

/// Updates a stored system-table row from in-memory state when it is read.
pub(crate) type RowRefresh<M> = Arc<dyn Fn(&mut M) + Send + Sync>;

impl<M: SystemTable> fmt::Debug for SystemTableProvider<M> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "SystemTableProvider(system.{})", M::TABLE_NAME)
    }
}

impl<M: SystemTable> SystemTableProvider<M> {
    pub(crate) fn new(store: SystemStore<M>, visible: RowVisibility<M>) -> Self {
        SystemTableProvider {
            store,
            visible,
            refresh: None,
        }
    }

    /// Adds a step that updates each row from live state at scan time.
    pub(crate) fn with_refresh(mut self, refresh: RowRefresh<M>) -> Self {
        self.refresh = Some(refresh);
        self
    }
}

/// Every row of a system table is visible.
pub(crate) fn all_rows<M>(row: M, _: &Caller) -> Option<M> {
    Some(row)
}

#[async_trait]
impl<M: SystemTable> TableProvider for SystemTableProvider<M> {
    fn schema(&self) -> SchemaRef {
        M::schema()
    }

    fn table_type(&self) -> TableType {
        TableType::View
    }

    async fn scan(
        &self,
        state: &dyn Session,
        projection: Option<&Vec<usize>>,
        _filters: &[Expr],
        limit: Option<usize>,
    ) -> datafusion::error::Result<Arc<dyn ExecutionPlan>> {
        let caller = Caller::of_session(state);
        let rows: Vec<M> = self
            .store
            .scan_all()?
            .into_iter()
            .filter_map(|row| (self.visible)(row, &caller))
            .take(limit.unwrap_or(usize::MAX))
            .map(|mut row| {
                if let Some(refresh) = &self.refresh {
                    refresh(&mut row);
                }
                row
            })
            .collect();
        let batch = M::to_record_batch(&rows)?;
        let exec =
            MemorySourceConfig::try_new_exec(&[vec![batch]], M::schema(), projection.cloned())?;
        Ok(exec)
    }
}

/// A schema of a fixed set of tables: `system` (the seven system tables)
/// and `information_schema`.
#[derive(Debug)]
pub(crate) struct SystemSchema {
    tables: HashMap<&'static str, Arc<dyn TableProvider>>,
}

/// The typed stores of the seven system tables.
#[derive(Debug, Clone)]
pub(crate) struct SystemStores {
    /// The database itself, for table column families.
    pub storage: Arc<Storage>,
    pub users: SystemStore<User>,
    pub live_queries: SystemStore<LiveQuery>,
    pub storage_locations: SystemStore<StorageLocation>,
    pub jobs: SystemStore<Job>,
    pub namespaces: SystemStore<Namespace>,
    pub tables: SystemStore<Table>,
    pub table_schemas: SystemStore<TableSchema>,
}

/// Column families of the system tables.
pub(crate) const SYSTEM_COLUMN_FAMILIES: [&str; 7] = [
    User::COLUMN_FAMILY,
    LiveQuery::COLUMN_FAMILY,
    StorageLocation::COLUMN_FAMILY,
    Job::COLUMN_FAMILY,
    Namespace::COLUMN_FAMILY,
    Table::COLUMN_FAMILY,
    TableSchema::COLUMN_FAMILY,
];

impl SystemStores {
    pub(crate) fn new(storage: &Arc<Storage>) -> Self {
        SystemStores {
            storage: storage.clone(),
            users: SystemStore::new(storage.clone()),
            live_queries: SystemStore::new(storage.clone()),
            storage_locations: SystemStore::new(storage.clone()),
            jobs: SystemStore::new(storage.clone()),
            namespaces: SystemStore::new(storage.clone()),
            tables: SystemStore::new(storage.clone()),
            table_schemas: SystemStore::new(storage.clone()),
        }
    }
}

// What a `user` or `service` sees of each system table (docs/sql.md has
// the table): nothing that names another user or the server's disk.

/// Admins see every user; anyone else sees only their own row.
fn own_user_row(row: User, caller: &Caller) -> Option<User> {
    (caller.role.is_admin() || row.user_id == caller.user_id).then_some(row)
}

/// Admins see every subscription; anyone else only their own.
fn own_live_query(row: LiveQuery, caller: &Caller) -> Option<LiveQuery> {
    (caller.role.is_admin() || row.user_id == caller.user_id).then_some(row)
}

/// Which `system.tables` rows a caller sees: every one (definitions, no
/// data). `SHOW STATS FOR TABLE` and `information_schema` show the same
/// tables.
pub(crate) fn visible_table(row: Table, caller: &Caller) -> Option<Table> {
    all_rows(row, caller)
}

/// Storage locations (paths, endpoints) are for admins only.
fn admin_only<M>(row: M, caller: &Caller) -> Option<M> {
    caller.role.is_admin().then_some(row)
}

/// Admins see every job. Anyone else sees jobs on whole tables and on
/// their own partition, never one naming another user's partition; the
/// error and trace of a whole-table job (which may name a partition's
/// path) are withheld.
fn visible_job(mut row: Job, caller: &Caller) -> Option<Job> {
    if caller.role.is_admin() {
        return Some(row);
    }
    let partition = row
        .parameters
        .as_deref()
        .and_then(|p| serde_json::from_str::<serde_json::Value>(p).ok())
        .and_then(|p| {
            p.get("partition")
                .and_then(|v| v.as_str())
                .map(String::from)
        });
    match partition.as_deref() {
        None | Some("shared") => {
            if row.error_message.is_some() {
                row.error_message =
                    Some("the job failed; its error is visible to dba and system".into());
            }
            row.trace = None;
            Some(row)
        }
        Some(label) => {
            (label.strip_prefix("user:") == Some(caller.user_id.as_str())).then_some(row)
        }
    }
}

impl SystemSchema {
    /// The system schema; `live_query_stats` fills in the in-memory
    /// counters of a `system.live_queries` row when it is read.
    pub(crate) fn new(stores: &SystemStores, live_query_stats: RowRefresh<LiveQuery>) -> Self {
        fn entry<M: SystemTable>(
            store: &SystemStore<M>,
            visible: RowVisibility<M>,
        ) -> (&'static str, Arc<dyn TableProvider>) {
            let provider = SystemTableProvider::new(store.clone(), visible);
            (M::TABLE_NAME, Arc::new(provider) as Arc<dyn TableProvider>)
        }
        let live_queries = SystemTableProvider::new(stores.live_queries.clone(), own_live_query)
            .with_refresh(live_query_stats);
        let tables = HashMap::from([
            entry(&stores.users, own_user_row),
            (
                LiveQuery::TABLE_NAME,
                Arc::new(live_queries) as Arc<dyn TableProvider>,
            ),
            entry(&stores.storage_locations, admin_only),
            entry(&stores.jobs, visible_job),
            entry(&stores.namespaces, all_rows),
            entry(&stores.tables, visible_table),
            entry(&stores.table_schemas, all_rows),
        ]);
        SystemSchema { tables }
    }
}

impl SystemSchema {
    /// A schema of a fixed set of tables (`information_schema` is one too).
    pub(crate) fn fixed(tables: HashMap<&'static str, Arc<dyn TableProvider>>) -> Self {
        SystemSchema { tables }
    }

    /// Each table's name and schema, sorted by name.
    pub(crate) fn schemas(&self) -> Vec<(&'static str, SchemaRef)> {
        let mut out: Vec<(&'static str, SchemaRef)> = self
            .tables
            .iter()
            .map(|(name, provider)| (*name, provider.schema()))
            .collect();
        out.sort_by_key(|(name, _)| *name);
        out
    }
}

#[async_trait]
impl SchemaProvider for SystemSchema {
    fn table_names(&self) -> Vec<String> {
        let mut names: Vec<String> = self.tables.keys().map(|s| s.to_string()).collect();
        names.sort();
        names
    }

    async fn table(&self, name: &str) -> Result<Option<Arc<dyn TableProvider>>, DataFusionError> {
        Ok(self.tables.get(name).cloned())
    }

    fn table_exist(&self, name: &str) -> bool {
        self.tables.contains_key(name)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use kalamdb_model::{Role, Timestamp};

    fn user(id: &str) -> User {
        User {
            user_id: id.into(),
            username: id.into(),
            password_hash: "h".into(),
            role: Role::User,
            email: None,
            created_at: Timestamp(0),
            updated_at: Timestamp(0),
            deleted_at: None,
        }
    }

    #[test]
    fn typed_put_get_delete_scan() {
        let dir = tempfile::tempdir().unwrap();
        let storage = Arc::new(Storage::open(dir.path(), &SYSTEM_COLUMN_FAMILIES).unwrap());
        let users = SystemStore::<User>::new(storage);
        users.put(&user("b")).unwrap();
        users.put(&user("a:1")).unwrap();
        users.put(&user("a")).unwrap();
        assert_eq!(users.get("a").unwrap().unwrap().user_id, "a");
        let ids: Vec<_> = users
            .scan_all()
            .unwrap()
            .into_iter()
            .map(|u| u.user_id)
            .collect();
        assert_eq!(ids, ["a", "a:1", "b"]);
        users.delete("a").unwrap();
        assert!(users.get("a").unwrap().is_none());
        assert!(users.get("a:1").unwrap().is_some());
    }
}
