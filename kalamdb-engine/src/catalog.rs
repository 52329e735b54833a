//! The DataFusion catalog: `system`, `information_schema` and one schema
//! per namespace, all read from the system tables at planning time (nothing
//! is cached, so DDL is visible to the next statement).

use std::sync::Arc;

use async_trait::async_trait;
use datafusion::catalog::{CatalogProvider, SchemaProvider, TableProvider};
use datafusion::error::DataFusionError;

use crate::information_schema::{INFORMATION_SCHEMA, information_schema};
use crate::live::LiveRouter;
use crate::provider::TableProviderImpl;
use crate::registry::TableRegistry;
use crate::system::{RowRefresh, SystemSchema, SystemStores};
use kalamdb_model::LiveQuery;
use std::sync::atomic::Ordering;

pub(crate) use crate::error::CATALOG_NAME;
use crate::system::SYSTEM_SCHEMA;
/// Names no namespace may take.
pub(crate) const RESERVED_NAMESPACES: [&str; 2] = [SYSTEM_SCHEMA, INFORMATION_SCHEMA];

#[derive(Debug)]
pub(crate) struct KalamCatalog {
    system: Arc<SystemSchema>,
    information: Arc<SystemSchema>,
    stores: SystemStores,
    tables: Arc<TableRegistry>,
}

impl KalamCatalog {
    pub(crate) fn new(stores: SystemStores, tables: Arc<TableRegistry>) -> Self {
        let system = Arc::new(SystemSchema::new(
            &stores,
            live_query_stats(tables.live.clone()),
        ));
        let information = Arc::new(information_schema(
            stores.clone(),
            tables.clone(),
            system.clone(),
        ));
        KalamCatalog {
            system,
            information,
            stores,
            tables,
        }
    }
}

impl CatalogProvider for KalamCatalog {
    fn schema_names(&self) -> Vec<String> {
        let mut names = vec![SYSTEM_SCHEMA.to_string(), INFORMATION_SCHEMA.to_string()];
        if let Ok(namespaces) = self.stores.namespaces.scan_all() {
            names.extend(namespaces.into_iter().map(|n| n.name));
        }
        names
    }

    fn schema(&self, name: &str) -> Option<Arc<dyn SchemaProvider>> {
        if name == SYSTEM_SCHEMA {
            return Some(self.system.clone());
        }
        if name == INFORMATION_SCHEMA {
            return Some(self.information.clone());
        }
        match self.stores.namespaces.get(name) {
            Ok(Some(_)) => Some(Arc::new(NamespaceSchema {
                namespace: name.to_string(),
                tables: self.tables.clone(),
            })),
            _ => None,
        }
    }
}

/// The tables of one namespace.
#[derive(Debug)]
pub(crate) struct NamespaceSchema {
    namespace: String,
    tables: Arc<TableRegistry>,
}

#[async_trait]
impl SchemaProvider for NamespaceSchema {
    fn table_names(&self) -> Vec<String> {
        self.tables.table_names(&self.namespace)
    }

    async fn table(&self, name: &str) -> Result<Option<Arc<dyn TableProvider>>, DataFusionError> {
        Ok(self.tables.get(&self.namespace, name).map(|def| {
            Arc::new(TableProviderImpl::new(def, self.tables.clone())) as Arc<dyn TableProvider>
        }))
    }

    fn table_exist(&self, name: &str) -> bool {
        self.tables.get(&self.namespace, name).is_some()
    }
}

/// Fills in a `system.live_queries` row's `changes` and `updated_at`, which
/// live in memory (no write per delivered change).
fn live_query_stats(live: Arc<LiveRouter>) -> RowRefresh<LiveQuery> {
    Arc::new(move |row: &mut LiveQuery| {
        if let Some(subscription) = live.get(&row.live_id) {
            row.changes = subscription.changes.load(Ordering::Relaxed);
            let last = subscription.last_change.load(Ordering::Relaxed);
            if last > 0 {
                row.updated_at = kalamdb_model::Timestamp(last);
            }
        }
    })
}
