//! `ALTER TABLE`: schema evolution without rewriting data.
//!
//! Each change writes a new version to `system.table_schemas` and bumps
//! `system.tables.schema_version`; nothing stored is touched. Columns keep
//! stable ids, rows and Parquet files record the version they were written
//! under, and readers bring what they read to the current version (see
//! `TableDef::upgrade` and `cold::files::VersionRead`). So the time of an
//! ALTER does not depend on how many rows the table holds.

use kalamdb_model::{TableSchema, Timestamp};
use serde_json::Value;

use super::namespaces::require_admin;
use super::parser::{TableChange, TableRef};
use super::result::StatementResult;
use super::tables::{
    check_column_name, column_spec, column_type, table_not_found, too_many_columns,
};
use crate::cold::manifest;
use crate::engine::Engine;
use crate::error::{EngineError, Result};
use crate::session::Caller;
use crate::table::def::MAX_COLUMNS;
use crate::table::row::convert_cell;
use crate::table::{ColumnType, DefaultValue, SchemaDoc, TableDef, TableId, schema_id};

/// Whether a column of type `from` may become `to` without losing values.
fn widens(from: ColumnType, to: ColumnType) -> bool {
    use ColumnType::*;
    matches!(
        (from, to),
        (Int, BigInt) | (Int | BigInt, Double) | (_, Text)
    )
}

impl Engine {
    pub(crate) fn alter_table(
        &self,
        caller: &Caller,
        name: &TableRef,
        change: TableChange,
        default_namespace: Option<&str>,
    ) -> Result<StatementResult> {
        require_admin(caller, "ALTER TABLE")?;
        let namespace = self.resolve_namespace(name, default_namespace)?;
        let table_id = TableId::new(&namespace, &name.name);
        let _guard = self.ddl_lock.lock();
        let old = self
            .tables
            .by_id(&table_id)
            .ok_or_else(|| table_not_found(&table_id))?;
        if old.stream.is_some() {
            return Err(EngineError::InvalidInput(format!(
                "the schema of stream table {table_id} cannot be altered: its events are short-lived; create a new stream table (or DROP and re-create this one)"
            )));
        }
        let mut def = TableDef::clone(&old);
        let Some(description) = self.apply_change(&mut def, change)? else {
            return Ok(StatementResult::message(
                0,
                format!(
                    "table {table_id} unchanged (schema version {})",
                    old.version
                ),
            ));
        };
        def.version = old.version + 1;
        let mut history = old.history.as_ref().clone();
        history.push(old.columns.clone().into());
        def.history = std::sync::Arc::new(history);

        let mut table = self
            .stores
            .tables
            .get(&table_id.to_string())?
            .ok_or_else(|| table_not_found(&table_id))?;
        table.schema_version = def.version;
        table.flush_policy = (def.flush_policy != Default::default())
            .then(|| serde_json::to_string(&def.flush_policy).unwrap_or_default());
        table.deleted_retention_hours = def.deleted_retention_hours;
        let doc = SchemaDoc {
            columns: def.columns.clone(),
            primary_key: def.key_column().name.clone(),
            next_column_id: def.next_column_id,
        };
        let schema = TableSchema {
            schema_id: schema_id(&table.table_id, def.version),
            table_id: table.table_id.clone(),
            version: def.version,
            arrow_schema: serde_json::to_string(&doc)
                .map_err(|e| EngineError::Internal(e.to_string()))?,
            created_at: Timestamp::now(),
            changes: Some(description.clone()),
        };
        self.stores.storage.write(vec![
            self.stores.tables.put_op(&table)?,
            self.stores.table_schemas.put_op(&schema)?,
        ])?;
        // Subscriptions follow first (rows of the old version still
        // committing reach them upgraded); those that use what changed end.
        for subscription in self.tables.live.on_table(&table_id) {
            match subscription.altered(&def) {
                Some(altered) => self.tables.live.replace(std::sync::Arc::new(altered)),
                None => {
                    self.unsubscribe(&subscription.live_id);
                    subscription.end("schema_changed");
                }
            }
        }
        let version = def.version;
        self.tables.register(def);
        Ok(StatementResult::message(
            1,
            format!("table {table_id} altered: {description} (schema version {version})"),
        ))
    }

    /// Applies one change to `def` (columns and options; the version is the
    /// caller's). Returns what changed, or `None` when nothing did.
    fn apply_change(&self, def: &mut TableDef, change: TableChange) -> Result<Option<String>> {
        let table_id = def.table_id();
        let column_index = |def: &TableDef, name: &str| -> Result<usize> {
            if name.starts_with('_') {
                return Err(EngineError::InvalidInput(format!(
                    "{name} is a system column of {table_id}; system columns cannot be altered"
                )));
            }
            def.column_index(name).ok_or_else(|| {
                EngineError::InvalidInput(format!("table {table_id} has no column {name}"))
            })
        };
        let not_key = |def: &TableDef, index: usize, what: &str| -> Result<()> {
            if index == def.primary_key {
                return Err(EngineError::InvalidInput(format!(
                    "{} is the primary key of {table_id}; the primary key cannot be {what}",
                    def.columns[index].name
                )));
            }
            Ok(())
        };
        Ok(Some(match change {
            TableChange::AddColumn(column) => {
                let (mut spec, is_key) = column_spec(&column)?;
                if is_key {
                    return Err(EngineError::InvalidInput(format!(
                        "column {} cannot be added as a PRIMARY KEY: a table's primary key never changes",
                        spec.name
                    )));
                }
                if def.columns.len() >= MAX_COLUMNS {
                    return Err(too_many_columns(def.columns.len() + 1));
                }
                if def.column_index(&spec.name).is_some() {
                    return Err(EngineError::InvalidInput(format!(
                        "table {table_id} already has a column {}",
                        spec.name
                    )));
                }
                spec.fill = match &spec.default {
                    Some(DefaultValue::Literal(v)) if !v.is_null() => Some(v.clone()),
                    Some(DefaultValue::Now) => Some(match spec.ty {
                        ColumnType::Date => {
                            Value::from(Timestamp::now().0.div_euclid(86_400_000_000))
                        }
                        _ => Value::from(Timestamp::now().0),
                    }),
                    _ => None,
                };
                if !spec.nullable && spec.fill.is_none() && self.table_has_rows(def)? {
                    return Err(EngineError::InvalidInput(format!(
                        "column {} is NOT NULL but table {table_id} has rows, which would have no value: give it a constant DEFAULT (or NOW()), or make it nullable",
                        spec.name
                    )));
                }
                spec.id = def.next_column_id;
                def.next_column_id += 1;
                let text = format!("added column {} {}", spec.name, spec.ty.sql_name());
                def.columns.push(spec);
                text
            }
            TableChange::DropColumn(name) => {
                let index = column_index(def, &name)?;
                not_key(def, index, "dropped")?;
                def.columns.remove(index);
                if index < def.primary_key {
                    def.primary_key -= 1;
                }
                format!("dropped column {name}")
            }
            TableChange::RenameColumn { from, to } => {
                let index = column_index(def, &from)?;
                not_key(def, index, "renamed")?;
                check_column_name(&to)?;
                if from == to {
                    return Ok(None);
                }
                if def.column_index(&to).is_some() {
                    return Err(EngineError::InvalidInput(format!(
                        "table {table_id} already has a column {to}"
                    )));
                }
                def.columns[index].name = to.clone();
                format!("renamed column {from} to {to}")
            }
            TableChange::ModifyColumn { name, data_type } => {
                let index = column_index(def, &name)?;
                not_key(def, index, "changed")?;
                let column = &mut def.columns[index];
                let to = column_type(&data_type, &name)?;
                let from = column.ty;
                if from == to {
                    return Ok(None);
                }
                if !widens(from, to) {
                    return Err(EngineError::InvalidInput(format!(
                        "column {name} cannot change from {} to {}: only widening changes are allowed (INT → BIGINT, INT or BIGINT → DOUBLE, any type → TEXT)",
                        from.sql_name(),
                        to.sql_name()
                    )));
                }
                column.default = match column.default.take() {
                    Some(DefaultValue::Literal(v)) => {
                        Some(DefaultValue::Literal(convert_cell(v, from, to)))
                    }
                    None => None,
                    Some(other) => {
                        return Err(EngineError::InvalidInput(format!(
                            "column {name} has DEFAULT {}, which cannot fill a {} column",
                            other.sql(),
                            to.sql_name()
                        )));
                    }
                };
                column.fill = column.fill.take().map(|v| convert_cell(v, from, to));
                column.ty = to;
                format!(
                    "changed column {name} from {} to {}",
                    from.sql_name(),
                    to.sql_name()
                )
            }
            TableChange::SetFlushPolicy { rows, interval } => {
                if rows == Some(0) {
                    return Err(EngineError::InvalidInput(
                        "FLUSH POLICY ROWS must be at least 1".into(),
                    ));
                }
                def.flush_policy.rows = rows;
                def.flush_policy.interval_secs = interval.map(|d| d.as_secs());
                let mut parts = Vec::new();
                if let Some(rows) = rows {
                    parts.push(format!("ROWS {rows}"));
                }
                if let Some(interval) = interval {
                    parts.push(format!("INTERVAL {} s", interval.as_secs()));
                }
                format!("flush policy set to {}", parts.join(" "))
            }
            TableChange::SetDeletedRetention(retention) => {
                let hours = i32::try_from(retention.as_secs().div_ceil(3600)).map_err(|_| {
                    EngineError::InvalidInput(format!(
                        "DELETED RETENTION is too long: at most {} hours",
                        i32::MAX
                    ))
                })?;
                def.deleted_retention_hours = hours;
                format!("deleted retention set to {hours} hours")
            }
        }))
    }

    /// Whether any version of any row (hot or flushed) is stored.
    fn table_has_rows(&self, def: &TableDef) -> Result<bool> {
        let storage = self.tables.hot().storage();
        if !storage
            .scan_prefix_limit(&def.column_family(), &[], 1)?
            .is_empty()
        {
            return Ok(true);
        }
        Ok(!manifest::all_files(storage, &def.table_id())?.is_empty())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_widening_type_changes() {
        use ColumnType::*;
        assert!(widens(Int, BigInt));
        assert!(widens(Int, Double));
        assert!(widens(BigInt, Double));
        assert!(widens(Timestamp, Text));
        assert!(widens(Json, Text));
        assert!(!widens(BigInt, Int));
        assert!(!widens(Double, BigInt));
        assert!(!widens(Text, Int));
        assert!(!widens(Text, Json));
        assert!(!widens(Int, Boolean));
    }
}
