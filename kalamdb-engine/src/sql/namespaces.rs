//! CREATE / ALTER / DROP NAMESPACE.

use kalamdb_model::{Namespace, Table, Timestamp};

use super::result::StatementResult;
use crate::catalog::RESERVED_NAMESPACES;
use crate::engine::Engine;
use crate::error::{EngineError, ObjectKind, Result};
use crate::session::Caller;
use crate::table::TableId;

/// Fails unless the caller may change the catalog.
pub(crate) fn require_admin(caller: &Caller, action: &str) -> Result<()> {
    if caller.role.is_admin() {
        Ok(())
    } else {
        Err(EngineError::PermissionDenied(format!(
            "{action} requires role dba or system; user {} has role {}",
            caller.user_id, caller.role
        )))
    }
}

impl Engine {
    pub(crate) fn create_namespace(
        &self,
        caller: &Caller,
        name: &str,
        if_not_exists: bool,
    ) -> Result<StatementResult> {
        require_admin(caller, "CREATE NAMESPACE")?;
        if RESERVED_NAMESPACES.contains(&name) {
            return Err(EngineError::InvalidInput(format!(
                "namespace name {name} is reserved"
            )));
        }
        let _guard = self.ddl_lock.lock();
        if self.stores.namespaces.get(name)?.is_some() {
            if if_not_exists {
                return Ok(StatementResult::message(
                    0,
                    EngineError::already_exists(ObjectKind::Namespace, name).to_string(),
                ));
            }
            return Err(EngineError::already_exists(ObjectKind::Namespace, name));
        }
        self.stores.namespaces.put(&Namespace {
            namespace_id: name.to_string(),
            name: name.to_string(),
            created_at: Timestamp::now(),
            options: None,
            table_count: 0,
        })?;
        Ok(StatementResult::message(
            1,
            format!("namespace {name} created"),
        ))
    }

    pub(crate) fn alter_namespace(
        &self,
        caller: &Caller,
        name: &str,
        options: Vec<(String, serde_json::Value)>,
    ) -> Result<StatementResult> {
        require_admin(caller, "ALTER NAMESPACE")?;
        let _guard = self.ddl_lock.lock();
        let mut namespace = self.existing_namespace(name)?;
        let mut merged: serde_json::Map<String, serde_json::Value> = namespace
            .options
            .as_deref()
            .and_then(|o| serde_json::from_str(o).ok())
            .unwrap_or_default();
        for (key, value) in options {
            merged.insert(key, value);
        }
        namespace.options = Some(serde_json::Value::Object(merged).to_string());
        self.stores.namespaces.put(&namespace)?;
        Ok(StatementResult::message(
            1,
            format!("namespace {name} altered"),
        ))
    }

    pub(crate) fn drop_namespace(
        &self,
        caller: &Caller,
        name: &str,
        if_exists: bool,
        cascade: bool,
    ) -> Result<StatementResult> {
        require_admin(caller, "DROP NAMESPACE")?;
        let _guard = self.ddl_lock.lock();
        if self.stores.namespaces.get(name)?.is_none() {
            if if_exists {
                return Ok(StatementResult::message(
                    0,
                    EngineError::not_found(ObjectKind::Namespace, name).to_string(),
                ));
            }
            return Err(namespace_not_found(name));
        }
        let tables: Vec<Table> = self
            .stores
            .tables
            .scan_all()?
            .into_iter()
            .filter(|t| t.namespace == name)
            .collect();
        if !tables.is_empty() && !cascade {
            let names: Vec<_> = tables.iter().map(|t| t.table_name.as_str()).collect();
            return Err(EngineError::InvalidInput(format!(
                "namespace {name} still has tables: {}; drop them first or use DROP NAMESPACE {name} CASCADE",
                names.join(", ")
            )));
        }
        for table in &tables {
            self.drop_table_storage(table)?;
        }
        self.stores.namespaces.delete(name)?;
        let message = if tables.is_empty() {
            format!("namespace {name} dropped")
        } else {
            format!("namespace {name} dropped with {} table(s)", tables.len())
        };
        Ok(StatementResult::message(1, message))
    }

    pub(crate) fn existing_namespace(&self, name: &str) -> Result<Namespace> {
        self.stores
            .namespaces
            .get(name)?
            .ok_or_else(|| namespace_not_found(name))
    }

    /// Removes a table: its rows' column family, its schemas, its entry, and
    /// its share of the namespace and storage-location counters.
    pub(crate) fn drop_table_storage(&self, table: &Table) -> Result<()> {
        let family =
            crate::table::def::column_family(table.table_type, &table.namespace, &table.table_name);
        let mut ops = Vec::new();
        if let Some(mut ns) = self.stores.namespaces.get(&table.namespace)? {
            ns.table_count = (ns.table_count - 1).max(0);
            ops.push(self.stores.namespaces.put_op(&ns)?);
        }
        if let Some(mut location) = self.stores.storage_locations.get(&table.storage_location)? {
            location.usage_count = (location.usage_count - 1).max(0);
            location.updated_at = Timestamp::now();
            ops.push(self.stores.storage_locations.put_op(&location)?);
        }
        for schema in self.stores.table_schemas.scan_all()? {
            if schema.table_id == table.table_id {
                ops.push(self.stores.table_schemas.delete_op(&schema.schema_id));
            }
        }
        ops.push(self.stores.tables.delete_op(&table.table_id));
        let table_id = TableId::of(table);
        let (cold_ops, files) = self.tables.drop_ops(&table_id)?;
        ops.extend(cold_ops);
        self.stores.storage.write(ops)?;
        self.end_subscriptions_on(&table_id);
        self.tables.cold().remove_dropped_files(&files);
        self.tables.forget(&table_id);
        self.stores.storage.drop_cf(&family)?;
        Ok(())
    }
}

pub(crate) fn namespace_not_found(name: &str) -> EngineError {
    EngineError::not_found_hint(
        ObjectKind::Namespace,
        name,
        format!("create it with CREATE NAMESPACE {name}"),
    )
}
