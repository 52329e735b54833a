//! The DataFusion catalog: `system` plus one schema per namespace, both read
//! from the system tables at planning time (nothing is cached, so DDL is
//! visible to the next statement).

use std::sync::Arc;

use async_trait::async_trait;
use datafusion::catalog::{CatalogProvider, SchemaProvider, TableProvider};
use datafusion::error::DataFusionError;

use crate::system::{SystemSchema, SystemStores};

/// Name of KalamDB's one DataFusion catalog.
pub const CATALOG_NAME: &str = "kalam";
/// Schema of the system tables.
pub const SYSTEM_SCHEMA: &str = "system";
/// Names no namespace may take.
pub const RESERVED_NAMESPACES: [&str; 2] = [SYSTEM_SCHEMA, "information_schema"];

#[derive(Debug)]
pub struct KalamCatalog {
    system: Arc<SystemSchema>,
    stores: SystemStores,
}

impl KalamCatalog {
    pub fn new(stores: SystemStores) -> Self {
        KalamCatalog {
            system: Arc::new(SystemSchema::new(&stores)),
            stores,
        }
    }
}

impl CatalogProvider for KalamCatalog {
    fn schema_names(&self) -> Vec<String> {
        let mut names = vec![SYSTEM_SCHEMA.to_string()];
        if let Ok(namespaces) = self.stores.namespaces.scan_all() {
            names.extend(namespaces.into_iter().map(|n| n.name));
        }
        names
    }

    fn schema(&self, name: &str) -> Option<Arc<dyn SchemaProvider>> {
        if name == SYSTEM_SCHEMA {
            return Some(self.system.clone());
        }
        match self.stores.namespaces.get(name) {
            Ok(Some(_)) => Some(Arc::new(NamespaceSchema {
                namespace: name.to_string(),
                stores: self.stores.clone(),
            })),
            _ => None,
        }
    }
}

/// The tables of one namespace.
#[derive(Debug)]
pub struct NamespaceSchema {
    namespace: String,
    stores: SystemStores,
}

#[async_trait]
impl SchemaProvider for NamespaceSchema {
    fn table_names(&self) -> Vec<String> {
        self.stores
            .tables
            .scan_all()
            .unwrap_or_default()
            .into_iter()
            .filter(|t| t.namespace == self.namespace)
            .map(|t| t.table_name)
            .collect()
    }

    async fn table(&self, _name: &str) -> Result<Option<Arc<dyn TableProvider>>, DataFusionError> {
        // USER / SHARED / STREAM table providers arrive with the tables issue.
        Ok(None)
    }

    fn table_exist(&self, name: &str) -> bool {
        self.table_names().iter().any(|t| t == name)
    }
}

/// RocksDB column family holding a table's rows:
/// `user_table:{ns}:{table}`, `shared_table:…` or `stream_table:…`.
pub fn table_column_family(table: &kalamdb_model::Table) -> String {
    format!(
        "{}_table:{}:{}",
        table.table_type.to_ascii_lowercase(),
        table.namespace,
        table.table_name
    )
}
