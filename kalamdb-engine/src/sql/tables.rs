//! CREATE / DROP TABLE, SHOW TABLES, DESCRIBE TABLE for USER, SHARED and
//! STREAM tables.

use datafusion::arrow::datatypes::DataType;
use datafusion::common::ScalarValue;
use datafusion::sql::sqlparser::ast::{
    ColumnDef, ColumnOption, DataType as SqlType, Expr, TableConstraint, UnaryOperator,
    Value as SqlValue,
};
use kalamdb_model::{Table, TableSchema, Timestamp};
use serde_json::{Value, json};

use super::namespaces::{namespace_not_found, require_admin};
use super::parser::{CreateTable, TableRef};
use super::result::StatementResult;
use crate::engine::{Engine, LOCAL_STORAGE};
use crate::error::{EngineError, ObjectKind, Result};
use crate::provider::scalar_to_cell;
use crate::session::Caller;
use crate::table::def::{FlushPolicy, MAX_COLUMNS, StreamOptions, parse_duration_secs};
use crate::table::{ColumnSpec, ColumnType, DefaultValue, TableDef, TableId, TableKind};
use crate::table::{SchemaDoc, schema_id};

/// Deleted rows are kept this long unless DELETED RETENTION says otherwise.
pub(super) const DEFAULT_DELETED_RETENTION_HOURS: i32 = 7 * 24;

/// Name of the primary key added to tables that declare none.
const AUTO_KEY: &str = "id";

pub(super) fn column_type(ty: &SqlType, column: &str) -> Result<ColumnType> {
    let text = ty.to_string().to_ascii_uppercase();
    let base = text.split('(').next().unwrap_or_default().trim();
    Ok(match base {
        "BOOLEAN" | "BOOL" => ColumnType::Boolean,
        "INT" | "INTEGER" | "INT4" | "SMALLINT" | "TINYINT" => ColumnType::Int,
        "BIGINT" | "INT8" | "INT64" => ColumnType::BigInt,
        "DOUBLE" | "DOUBLE PRECISION" | "FLOAT" | "FLOAT8" | "FLOAT64" | "REAL" => {
            ColumnType::Double
        }
        "TEXT" | "VARCHAR" | "STRING" | "CHAR" | "CHARACTER VARYING" | "CHARACTER" => {
            ColumnType::Text
        }
        "JSON" | "JSONB" => ColumnType::Json,
        "TIMESTAMP" | "DATETIME" => ColumnType::Timestamp,
        "DATE" => ColumnType::Date,
        _ => {
            return Err(EngineError::InvalidInput(format!(
                "column {column} has unsupported type {ty}; use BOOLEAN, INT, BIGINT, DOUBLE, TEXT, VARCHAR, JSON, TIMESTAMP or DATE"
            )));
        }
    })
}

fn function_name(expr: &Expr) -> Option<String> {
    match expr {
        Expr::Function(f) => Some(
            f.name
                .to_string()
                .to_ascii_lowercase()
                .trim_matches('"')
                .to_string(),
        ),
        _ => None,
    }
}

fn default_value(expr: &Expr, spec: &ColumnSpec) -> Result<DefaultValue> {
    let bad = |why: &str| {
        EngineError::InvalidInput(format!("invalid DEFAULT for column {}: {why}", spec.name))
    };
    if let Some(name) = function_name(expr) {
        let (value, allowed): (DefaultValue, &[ColumnType]) = match name.as_str() {
            "now" | "current_timestamp" => (
                DefaultValue::Now,
                &[ColumnType::Timestamp, ColumnType::Date],
            ),
            "current_user" => (DefaultValue::CurrentUser, &[ColumnType::Text]),
            "snowflake_id" => (DefaultValue::SnowflakeId, &[ColumnType::BigInt]),
            other => {
                return Err(bad(&format!(
                    "{other}() is not allowed; use a constant, NOW(), CURRENT_USER() or SNOWFLAKE_ID()"
                )));
            }
        };
        if !allowed.contains(&spec.ty) {
            return Err(bad(&format!(
                "{} cannot fill a {} column",
                value.sql(),
                spec.ty.sql_name()
            )));
        }
        return Ok(value);
    }
    let scalar = match expr {
        Expr::Value(v) => match &v.value {
            SqlValue::Number(n, _) => match n.parse::<i64>() {
                Ok(i) => ScalarValue::Int64(Some(i)),
                Err(_) => ScalarValue::Float64(Some(n.parse().map_err(|_| bad("not a number"))?)),
            },
            SqlValue::SingleQuotedString(s) => ScalarValue::Utf8(Some(s.clone())),
            SqlValue::Boolean(b) => ScalarValue::Boolean(Some(*b)),
            SqlValue::Null => ScalarValue::Null,
            _ => return Err(bad("use a number, string, boolean or NULL")),
        },
        Expr::UnaryOp {
            op: UnaryOperator::Minus,
            expr,
        } => match expr.as_ref() {
            Expr::Value(v) => match &v.value {
                SqlValue::Number(n, _) => match format!("-{n}").parse::<i64>() {
                    Ok(i) => ScalarValue::Int64(Some(i)),
                    Err(_) => ScalarValue::Float64(Some(
                        format!("-{n}").parse().map_err(|_| bad("not a number"))?,
                    )),
                },
                _ => return Err(bad("use a number after -")),
            },
            _ => return Err(bad("use a constant")),
        },
        _ => {
            return Err(bad(
                "use a constant, NOW(), CURRENT_USER() or SNOWFLAKE_ID()",
            ));
        }
    };
    let cell = if scalar.is_null() {
        Value::Null
    } else {
        scalar_to_cell(&scalar, spec.ty, &spec.name).map_err(|e| bad(&e.to_string()))?
    };
    Ok(DefaultValue::Literal(cell))
}

/// A declared column, checked (its id is not yet set), and whether it is
/// declared PRIMARY KEY.
pub(super) fn column_spec(def: &ColumnDef) -> Result<(ColumnSpec, bool)> {
    let name = if def.name.quote_style.is_some() {
        def.name.value.clone()
    } else {
        def.name.value.to_ascii_lowercase()
    };
    check_column_name(&name)?;
    let mut spec = ColumnSpec {
        id: 0,
        ty: column_type(&def.data_type, &name)?,
        name,
        nullable: true,
        default: None,
        fill: None,
    };
    let mut is_key = false;
    for option in &def.options {
        match &option.option {
            ColumnOption::NotNull => spec.nullable = false,
            ColumnOption::Null => spec.nullable = true,
            ColumnOption::Default(expr) => spec.default = Some(default_value(expr, &spec)?),
            ColumnOption::PrimaryKey(_) => is_key = true,
            other => {
                return Err(EngineError::InvalidInput(format!(
                    "column option {other} on {} is not supported",
                    spec.name
                )));
            }
        }
    }
    Ok((spec, is_key))
}

pub(super) fn too_many_columns(count: usize) -> EngineError {
    EngineError::InvalidInput(format!(
        "a table has at most {MAX_COLUMNS} columns ({count} asked for)"
    ))
}

/// A user column's name: valid, and not one reserved for system columns.
pub(super) fn check_column_name(name: &str) -> Result<()> {
    if name.starts_with('_') {
        return Err(EngineError::InvalidInput(format!(
            "column {name}: names starting with _ are reserved for system columns"
        )));
    }
    super::parser::validate_name(name, "column").map_err(EngineError::InvalidInput)
}

/// Columns and primary key of a CREATE TABLE, validated.
fn table_columns(create: &CreateTable) -> Result<(Vec<ColumnSpec>, usize)> {
    let mut columns: Vec<ColumnSpec> = Vec::with_capacity(create.columns.len() + 1);
    let mut primary_key: Option<usize> = None;
    let set_key = |index: usize, name: &str, key: &mut Option<usize>| -> Result<()> {
        if key.is_some_and(|k| k != index) {
            return Err(EngineError::InvalidInput(format!(
                "only one primary key column is supported (found another on {name})"
            )));
        }
        *key = Some(index);
        Ok(())
    };
    if create.columns.len() > MAX_COLUMNS {
        return Err(too_many_columns(create.columns.len()));
    }
    for def in &create.columns {
        let (spec, is_key) = column_spec(def)?;
        if columns.iter().any(|c| c.name == spec.name) {
            return Err(EngineError::InvalidInput(format!(
                "column {} is declared twice",
                spec.name
            )));
        }
        if is_key {
            set_key(columns.len(), &spec.name, &mut primary_key)?;
        }
        columns.push(spec);
    }
    for constraint in &create.constraints {
        match constraint {
            TableConstraint::PrimaryKey(pk) if pk.columns.len() == 1 => {
                let name = pk.columns[0].column.expr.to_string().to_ascii_lowercase();
                let index = columns.iter().position(|c| c.name == name).ok_or_else(|| {
                    EngineError::InvalidInput(format!("PRIMARY KEY names unknown column {name}"))
                })?;
                set_key(index, &name, &mut primary_key)?;
            }
            TableConstraint::PrimaryKey(_) => {
                return Err(EngineError::InvalidInput(
                    "composite primary keys are not supported; use one column".into(),
                ));
            }
            other => {
                return Err(EngineError::InvalidInput(format!(
                    "constraint {other} is not supported"
                )));
            }
        }
    }
    let primary_key = match primary_key {
        Some(index) => index,
        None => {
            if columns.iter().any(|c| c.name == AUTO_KEY) {
                return Err(EngineError::InvalidInput(format!(
                    "declare a PRIMARY KEY: without one KalamDB adds {AUTO_KEY} BIGINT, but a column {AUTO_KEY} already exists"
                )));
            }
            columns.insert(
                0,
                ColumnSpec {
                    id: 0,
                    name: AUTO_KEY.into(),
                    ty: ColumnType::BigInt,
                    nullable: false,
                    default: Some(DefaultValue::SnowflakeId),
                    fill: None,
                },
            );
            0
        }
    };
    let key = &mut columns[primary_key];
    if !key.ty.can_be_key() {
        return Err(EngineError::InvalidInput(format!(
            "primary key {} must be INT, BIGINT or TEXT, not {}",
            key.name,
            key.ty.sql_name()
        )));
    }
    key.nullable = false;
    for (i, column) in columns.iter_mut().enumerate() {
        column.id = i as u32 + 1;
    }
    Ok((columns, primary_key))
}

impl Engine {
    /// The namespace of a table reference: its own, or the request's.
    pub(crate) fn resolve_namespace(
        &self,
        name: &TableRef,
        default: Option<&str>,
    ) -> Result<String> {
        match (&name.namespace, default) {
            (Some(ns), _) => Ok(ns.clone()),
            (None, Some(ns)) => Ok(ns.to_string()),
            (None, None) => Err(EngineError::InvalidInput(format!(
                "table {} needs a namespace: write namespace.{} or set \"namespace\" in the request",
                name.name, name.name
            ))),
        }
    }

    pub(crate) fn create_table(
        &self,
        caller: &Caller,
        create: &CreateTable,
        default_namespace: Option<&str>,
    ) -> Result<StatementResult> {
        require_admin(caller, "CREATE TABLE")?;
        let namespace = self.resolve_namespace(&create.name, default_namespace)?;
        let table_name = &create.name.name;
        let stream = stream_options(create)?;
        let (columns, primary_key) = table_columns(create)?;
        let columns_len = columns.len() as u32;
        let flush_interval = create.flush_interval.map(|d| d.as_secs());
        if create.flush_rows == Some(0) {
            return Err(EngineError::InvalidInput(
                "FLUSH POLICY ROWS must be at least 1".into(),
            ));
        }
        let retention_hours = match create.deleted_retention {
            Some(retention) => i32::try_from(retention.as_secs().div_ceil(3600)).map_err(|_| {
                EngineError::InvalidInput(format!(
                    "DELETED RETENTION is too long: at most {} hours",
                    i32::MAX
                ))
            })?,
            None => DEFAULT_DELETED_RETENTION_HOURS,
        };
        let location_name = create
            .location
            .clone()
            .unwrap_or_else(|| LOCAL_STORAGE.to_string());

        let _guard = self.ddl_lock.lock();
        let mut ns = self
            .stores
            .namespaces
            .get(&namespace)?
            .ok_or_else(|| namespace_not_found(&namespace))?;
        let table_id = TableId::new(&namespace, table_name).to_string();
        if self.tables.get(&namespace, table_name).is_some() {
            if create.if_not_exists {
                return Ok(StatementResult::message(
                    0,
                    EngineError::already_exists(ObjectKind::Table, table_id).to_string(),
                ));
            }
            return Err(EngineError::already_exists(ObjectKind::Table, table_id));
        }
        let mut location = self
            .stores
            .storage_locations
            .get(&location_name)?
            .ok_or_else(|| EngineError::not_found(ObjectKind::StorageLocation, &location_name))?;

        let def = TableDef {
            namespace: namespace.clone(),
            name: table_name.clone(),
            kind: create.kind,
            columns,
            primary_key,
            version: 1,
            next_column_id: columns_len + 1,
            history: Default::default(),
            storage_location: location_name.clone(),
            flush_policy: FlushPolicy {
                rows: create.flush_rows,
                interval_secs: flush_interval,
            },
            deleted_retention_hours: retention_hours,
            stream,
        };
        let now = Timestamp::now();
        let doc = SchemaDoc {
            columns: def.columns.clone(),
            primary_key: def.key_column().name.clone(),
            next_column_id: def.next_column_id,
        };
        let table = Table {
            table_id: table_id.clone(),
            table_name: table_name.clone(),
            namespace: namespace.clone(),
            table_type: create.kind,
            created_at: now,
            storage_location: location_name,
            flush_policy: (def.flush_policy != FlushPolicy::default())
                .then(|| serde_json::to_string(&def.flush_policy).unwrap_or_default()),
            schema_version: 1,
            deleted_retention_hours: retention_hours,
            options: match &stream {
                Some(options) => Some(
                    serde_json::to_string(options)
                        .map_err(|e| EngineError::Internal(e.to_string()))?,
                ),
                None => None,
            },
        };
        let schema = TableSchema {
            schema_id: schema_id(&table_id, 1),
            table_id: table_id.clone(),
            version: 1,
            arrow_schema: serde_json::to_string(&doc)
                .map_err(|e| EngineError::Internal(e.to_string()))?,
            created_at: now,
            changes: Some("created".into()),
        };
        ns.table_count += 1;
        location.usage_count += 1;
        location.updated_at = now;

        self.stores.storage.create_cf(&def.column_family())?;
        self.stores.storage.write(vec![
            self.stores.tables.put_op(&table)?,
            self.stores.table_schemas.put_op(&schema)?,
            self.stores.namespaces.put_op(&ns)?,
            self.stores.storage_locations.put_op(&location)?,
        ])?;
        self.tables.register(def);
        Ok(StatementResult::message(
            1,
            format!("{} table {table_id} created", create.kind.as_str()),
        ))
    }

    pub(crate) fn drop_table(
        &self,
        caller: &Caller,
        name: &TableRef,
        if_exists: bool,
        default_namespace: Option<&str>,
    ) -> Result<StatementResult> {
        require_admin(caller, "DROP TABLE")?;
        let namespace = self.resolve_namespace(name, default_namespace)?;
        let table_id = TableId::new(&namespace, &name.name).to_string();
        let _guard = self.ddl_lock.lock();
        let Some(table) = self.stores.tables.get(&table_id)? else {
            if if_exists {
                return Ok(StatementResult::message(
                    0,
                    EngineError::not_found(ObjectKind::Table, &table_id).to_string(),
                ));
            }
            return Err(table_not_found(&TableId::new(&namespace, &name.name)));
        };
        self.drop_table_storage(&table)?;
        Ok(StatementResult::message(
            1,
            format!("table {table_id} dropped"),
        ))
    }

    /// `DESCRIBE TABLE`: one row per column, system columns last.
    pub(crate) fn describe_table(
        &self,
        name: &TableRef,
        default_namespace: Option<&str>,
    ) -> Result<StatementResult> {
        let namespace = self.resolve_namespace(name, default_namespace)?;
        let def = self
            .tables
            .get(&namespace, &name.name)
            .ok_or_else(|| table_not_found(&TableId::new(&namespace, &name.name)))?;
        let mut rows = Vec::new();
        for (i, c) in def.columns.iter().enumerate() {
            rows.push(json!({
                "column_name": c.name,
                "data_type": c.ty.sql_name(),
                "is_nullable": c.nullable,
                "column_default": c.default.as_ref().map(DefaultValue::sql),
                "is_primary_key": i == def.primary_key,
                "column_id": c.id,
                "schema_version": def.version,
            }));
        }
        let schema = def.arrow_schema();
        for column in def.rules().system_columns() {
            let ty = match schema.field_with_name(column).map(|f| f.data_type()) {
                Ok(DataType::Int64) => "BIGINT",
                Ok(DataType::Boolean) => "BOOLEAN",
                _ => "TIMESTAMP",
            };
            rows.push(json!({
                "column_name": column, "data_type": ty, "is_nullable": false,
                "column_default": null, "is_primary_key": false,
                "column_id": null, "schema_version": def.version,
            }));
        }
        let columns = [
            ("column_name", "TEXT"),
            ("data_type", "TEXT"),
            ("is_nullable", "BOOLEAN"),
            ("column_default", "TEXT"),
            ("is_primary_key", "BOOLEAN"),
            ("column_id", "INT"),
            ("schema_version", "INT"),
        ];
        Ok(StatementResult {
            message: def.stream.map(|s| {
                format!(
                    "STREAM table {}: retention {} s, ephemeral {}, max_buffer {}",
                    def.table_id(),
                    s.retention_secs,
                    s.ephemeral,
                    s.max_buffer
                )
            }),
            ..StatementResult::rows(&columns, rows)
        })
    }
}

/// A STREAM table's `WITH` options, checked; `None` for other kinds, which
/// take no `WITH` options. Clauses about flushing or soft deletes are
/// refused on a STREAM table: its events are never flushed or deleted.
fn stream_options(create: &CreateTable) -> Result<Option<StreamOptions>> {
    if create.kind != TableKind::Stream {
        if let Some((key, _)) = create.with_options.first() {
            return Err(EngineError::InvalidInput(format!(
                "WITH ({key} = …) applies to STREAM tables only (retention, ephemeral, max_buffer)"
            )));
        }
        return Ok(None);
    }
    let refuse = |clause: &str, why: &str| {
        Err(EngineError::InvalidInput(format!(
            "{clause} does not apply to a STREAM table: {why}"
        )))
    };
    if create.flush_rows.is_some() || create.flush_interval.is_some() {
        return refuse("FLUSH POLICY", "its events are never flushed to Parquet");
    }
    if create.deleted_retention.is_some() {
        return refuse(
            "DELETED RETENTION",
            "its events are never deleted; they expire after the table's retention",
        );
    }
    if create.location.is_some() {
        return refuse(
            "LOCATION REFERENCE",
            "its events are never written to a storage location",
        );
    }
    let (mut retention, mut ephemeral, mut max_buffer) =
        (None, false, StreamOptions::DEFAULT_MAX_BUFFER);
    for (key, value) in &create.with_options {
        match key.to_ascii_lowercase().as_str() {
            "retention" => {
                let text = value.as_str().ok_or_else(|| {
                    EngineError::InvalidInput(format!(
                        "retention must be a quoted duration such as '10s', not {value}"
                    ))
                })?;
                let secs = parse_duration_secs(text)
                    .filter(|s| *s > 0)
                    .ok_or_else(|| {
                        EngineError::InvalidInput(format!(
                            "invalid retention '{text}': use e.g. '10s', '5 minutes' or '1 hour'"
                        ))
                    })?;
                if secs > MAX_STREAM_RETENTION_SECS {
                    return Err(EngineError::InvalidInput(format!(
                        "retention '{text}' is too long: a STREAM table keeps events for at most 7 days"
                    )));
                }
                retention = Some(secs);
            }
            "ephemeral" => {
                ephemeral = value.as_bool().ok_or_else(|| {
                    EngineError::InvalidInput(format!(
                        "ephemeral must be true or false, not {value}"
                    ))
                })?;
            }
            "max_buffer" => {
                max_buffer = value
                    .as_u64()
                    .filter(|n| (1..=StreamOptions::MAX_MAX_BUFFER).contains(n))
                    .ok_or_else(|| {
                        EngineError::InvalidInput(format!(
                            "max_buffer must be a whole number from 1 to {}, not {value}",
                            StreamOptions::MAX_MAX_BUFFER
                        ))
                    })?;
            }
            other => {
                return Err(EngineError::InvalidInput(format!(
                    "unknown STREAM table option {other}: use retention, ephemeral or max_buffer"
                )));
            }
        }
    }
    let retention_secs = retention.ok_or_else(|| {
        EngineError::InvalidInput(
            "a STREAM table needs WITH (retention = '…'), e.g. retention = '10s'".into(),
        )
    })?;
    Ok(Some(StreamOptions {
        retention_secs,
        ephemeral,
        max_buffer,
    }))
}

/// The longest retention a STREAM table may have.
const MAX_STREAM_RETENTION_SECS: u64 = 7 * 86_400;

pub(crate) fn table_not_found(table_id: &TableId) -> EngineError {
    EngineError::not_found(ObjectKind::Table, table_id.to_string())
}
