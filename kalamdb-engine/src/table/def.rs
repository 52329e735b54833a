//! Table definitions: columns, primary key, options, Arrow schema.

use std::sync::Arc;

use datafusion::arrow::datatypes::{DataType, Field, Schema, SchemaRef, TimeUnit};
use serde::{Deserialize, Serialize};

use crate::error::{EngineError, Result};

pub(crate) use kalamdb_model::TableKind;

/// System column: commit sequence of the row version (the resume cursor).
pub(crate) const SEQ_COLUMN: &str = "_seq";
/// System column: commit time of the row version.
pub(crate) const UPDATED_COLUMN: &str = "_updated";
/// System column: true for a deleted row (never visible to queries).
pub(crate) const DELETED_COLUMN: &str = "_deleted";

/// The most user columns a table may have (every row and every schema
/// version lists them).
pub(crate) const MAX_COLUMNS: usize = 1024;

/// Column types a table may declare.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "UPPERCASE")]
pub enum ColumnType {
    Boolean,
    Int,
    BigInt,
    Double,
    Text,
    /// Text that must hold valid JSON.
    Json,
    Timestamp,
    Date,
}

impl ColumnType {
    pub fn arrow_type(self) -> DataType {
        match self {
            ColumnType::Boolean => DataType::Boolean,
            ColumnType::Int => DataType::Int32,
            ColumnType::BigInt => DataType::Int64,
            ColumnType::Double => DataType::Float64,
            ColumnType::Text | ColumnType::Json => DataType::Utf8,
            ColumnType::Timestamp => DataType::Timestamp(TimeUnit::Microsecond, Some("UTC".into())),
            ColumnType::Date => DataType::Date32,
        }
    }

    pub fn sql_name(self) -> &'static str {
        match self {
            ColumnType::Boolean => "BOOLEAN",
            ColumnType::Int => "INT",
            ColumnType::BigInt => "BIGINT",
            ColumnType::Double => "DOUBLE",
            ColumnType::Text => "TEXT",
            ColumnType::Json => "JSON",
            ColumnType::Timestamp => "TIMESTAMP",
            ColumnType::Date => "DATE",
        }
    }

    /// Types allowed for a primary key.
    pub fn can_be_key(self) -> bool {
        matches!(
            self,
            ColumnType::Int | ColumnType::BigInt | ColumnType::Text
        )
    }
}

/// A column default.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DefaultValue {
    /// A constant, stored as the row cell it produces.
    Literal(serde_json::Value),
    /// Commit time.
    Now,
    /// The writing user's id.
    CurrentUser,
    /// A new snowflake id.
    SnowflakeId,
}

impl DefaultValue {
    pub fn sql(&self) -> String {
        match self {
            DefaultValue::Literal(serde_json::Value::String(s)) => {
                format!("'{}'", s.replace('\'', "''"))
            }
            DefaultValue::Literal(v) => v.to_string().to_uppercase(),
            DefaultValue::Now => "NOW()".into(),
            DefaultValue::CurrentUser => "CURRENT_USER()".into(),
            DefaultValue::SnowflakeId => "SNOWFLAKE_ID()".into(),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ColumnSpec {
    /// Stable id: never changes (RENAME, MODIFY keep it) and is never
    /// reused (a column dropped and added again gets a new one). Rows and
    /// Parquet files are matched to columns by it. 0 in schemas written
    /// before ids existed (see [`SchemaDoc::assign_ids`]).
    #[serde(default)]
    pub id: u32,
    pub name: String,
    pub ty: ColumnType,
    pub nullable: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub default: Option<DefaultValue>,
    /// What rows written before the column existed read (a column added
    /// by ALTER TABLE with a DEFAULT); NULL when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fill: Option<serde_json::Value>,
}

impl ColumnSpec {
    /// The Arrow field of the column.
    pub fn arrow_field(&self) -> Field {
        Field::new(&self.name, self.ty.arrow_type(), true)
    }
}

/// Arrow field metadata key the Parquet writer stores as the field id.
pub(crate) const PARQUET_FIELD_ID: &str = "PARQUET:field_id";

/// Flush policy options (used by the cold tier).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct FlushPolicy {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rows: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub interval_secs: Option<u64>,
}

/// A table's identity: its namespace and name. Written `namespace.name`
/// (its id in `system.tables` and in storage keys); never parsed back.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct TableId {
    namespace: String,
    name: String,
}

impl TableId {
    pub fn new(namespace: impl Into<String>, name: impl Into<String>) -> Self {
        TableId {
            namespace: namespace.into(),
            name: name.into(),
        }
    }

    /// The id of a `system.tables` row.
    pub fn of(table: &kalamdb_model::Table) -> Self {
        TableId::new(&table.namespace, &table.table_name)
    }

    pub fn namespace(&self) -> &str {
        &self.namespace
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    /// Appends `namespace.name` to a storage key.
    pub fn append_to(&self, key: &mut Vec<u8>) {
        key.extend_from_slice(self.namespace.as_bytes());
        key.push(b'.');
        key.extend_from_slice(self.name.as_bytes());
    }
}

impl std::fmt::Display for TableId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}.{}", self.namespace, self.name)
    }
}

/// Everything KalamDB knows about one table's current schema version.
#[derive(Debug, Clone, PartialEq)]
pub struct TableDef {
    pub namespace: String,
    pub name: String,
    pub kind: TableKind,
    /// User columns, in declaration order.
    pub columns: Vec<ColumnSpec>,
    /// Index of the primary key in `columns`.
    pub primary_key: usize,
    pub version: i32,
    /// The id the next added column gets.
    pub next_column_id: u32,
    /// Every version's user columns, oldest first (`history[v - 1]`): how
    /// rows and files written under an older version are read.
    pub history: Arc<Vec<Arc<[ColumnSpec]>>>,
    pub storage_location: String,
    pub flush_policy: FlushPolicy,
    pub deleted_retention_hours: i32,
    /// A STREAM table's options.
    pub stream: Option<StreamOptions>,
}

/// `WITH (retention = '10s', ephemeral = true, max_buffer = 10000)` of a
/// STREAM table.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct StreamOptions {
    /// Events older than this are gone from every read.
    pub retention_secs: u64,
    /// Events written while the user has no subscription are not kept.
    pub ephemeral: bool,
    /// Events one partition (user) holds at most; the oldest go first.
    pub max_buffer: u64,
}

impl StreamOptions {
    /// Default of `max_buffer`.
    pub(crate) const DEFAULT_MAX_BUFFER: u64 = 10_000;
    /// Largest `max_buffer` accepted.
    pub(crate) const MAX_MAX_BUFFER: u64 = 1_000_000;

    /// Commit time (µs) below which an event is past retention at `now`.
    pub(crate) fn cutoff(&self, now_micros: i64) -> i64 {
        now_micros.saturating_sub((self.retention_secs as i64).saturating_mul(1_000_000))
    }
}

impl TableDef {
    pub fn table_id(&self) -> TableId {
        TableId::new(&self.namespace, &self.name)
    }

    /// What this table's kind decides: partitions, system columns,
    /// flushing, writers.
    pub fn rules(&self) -> &'static dyn super::kind::KindRules {
        super::kind::rules(self.kind)
    }

    /// RocksDB column family of the rows.
    pub fn column_family(&self) -> String {
        column_family(self.kind, &self.namespace, &self.name)
    }

    pub fn key_column(&self) -> &ColumnSpec {
        &self.columns[self.primary_key]
    }

    pub fn column_index(&self, name: &str) -> Option<usize> {
        self.columns.iter().position(|c| c.name == name)
    }

    /// Arrow schema seen by queries: user columns, then `_seq`, `_updated`,
    /// `_deleted`. Every field is nullable at the Arrow level so that INSERT
    /// planning leaves NOT NULL and defaults to KalamDB, which checks them
    /// after filling defaults.
    pub fn arrow_schema(&self) -> SchemaRef {
        self.schema_of(&self.columns)
    }

    /// The schema Parquet files are written with: [`TableDef::arrow_schema`]
    /// with each user column's id as its Parquet field id.
    pub(crate) fn file_schema(&self) -> SchemaRef {
        let schema = self.arrow_schema();
        let fields: Vec<Field> = schema
            .fields()
            .iter()
            .enumerate()
            .map(|(i, field)| match self.columns.get(i) {
                Some(column) => field.as_ref().clone().with_metadata(
                    [(PARQUET_FIELD_ID.to_string(), column.id.to_string())]
                        .into_iter()
                        .collect(),
                ),
                None => field.as_ref().clone(),
            })
            .collect();
        Arc::new(Schema::new(fields))
    }

    /// [`TableDef::arrow_schema`] of `columns` (the user columns of some
    /// version of this table).
    pub(crate) fn schema_of(&self, columns: &[ColumnSpec]) -> SchemaRef {
        let mut fields: Vec<Field> = columns.iter().map(ColumnSpec::arrow_field).collect();
        fields.extend(
            self.rules()
                .system_columns()
                .iter()
                .map(|name| Field::new(*name, system_column_type(name), true)),
        );
        Arc::new(Schema::new(fields))
    }

    /// The user columns of schema version `version`, if this definition
    /// knows it (it knows its own and every older one).
    pub(crate) fn version_columns(&self, version: i32) -> Option<&[ColumnSpec]> {
        if version == self.version {
            return Some(&self.columns);
        }
        let index = usize::try_from(version).ok()?.checked_sub(1)?;
        self.history.get(index).map(|c| &c[..])
    }

    /// Where each current user column comes from in a row or file written
    /// under `version`: the position of the same column id there (and its
    /// type then), or `None` when the column did not exist (it reads as its
    /// fill). Errors for a version newer than this definition.
    pub(crate) fn sources(&self, version: i32) -> Result<Vec<Option<(usize, ColumnType)>>> {
        let old = self
            .version_columns(version)
            .ok_or_else(|| EngineError::SchemaChanged(self.table_id().to_string()))?;
        Ok(self
            .columns
            .iter()
            .map(|c| {
                old.iter()
                    .position(|o| o.id == c.id)
                    .map(|i| (i, old[i].ty))
            })
            .collect())
    }

    /// Rewrites a row written under an older schema version into this
    /// version's shape: columns matched by id, widened types converted,
    /// added columns filled, dropped ones gone.
    pub(crate) fn upgrade(&self, row: &mut super::row::StoredRow) -> Result<()> {
        if row.version == self.version {
            return Ok(());
        }
        let sources = self.sources(row.version)?;
        let mut old = std::mem::take(&mut row.values);
        row.values = sources
            .iter()
            .zip(&self.columns)
            .map(|(source, column)| match source {
                Some((i, ty)) => {
                    super::row::convert_cell(std::mem::take(&mut old[*i]), *ty, column.ty)
                }
                None => column.fill.clone().unwrap_or(serde_json::Value::Null),
            })
            .collect();
        row.version = self.version;
        Ok(())
    }

    /// Number of user columns.
    pub fn user_column_count(&self) -> usize {
        self.columns.len()
    }
}

/// What `system.table_schemas.arrow_schema` holds for USER/SHARED/STREAM tables.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct SchemaDoc {
    pub columns: Vec<ColumnSpec>,
    pub primary_key: String,
    /// The id the next added column gets (absent before column ids).
    #[serde(default, skip_serializing_if = "is_zero")]
    pub next_column_id: u32,
}

fn is_zero(n: &u32) -> bool {
    *n == 0
}

impl SchemaDoc {
    /// Schemas written before column ids existed (every table then was at
    /// version 1, and rows and files matched columns by position) get the
    /// ids 1, 2, … in column order: the same ids on every start, so nothing
    /// needs rewriting.
    pub(crate) fn assign_ids(&mut self) {
        if self.columns.iter().any(|c| c.id == 0) {
            for (i, column) in self.columns.iter_mut().enumerate() {
                column.id = i as u32 + 1;
            }
        }
        let max = self.columns.iter().map(|c| c.id).max().unwrap_or(0);
        self.next_column_id = self.next_column_id.max(max + 1);
    }
}

/// `schema_id` of a table's schema version.
pub(crate) fn schema_id(table_id: &str, version: i32) -> String {
    format!("{table_id}#v{version:06}")
}

/// Builds the in-memory definition from a `system.tables` row and every
/// version of its schema, oldest first (the last is the current one).
pub(crate) fn table_def(
    table: &kalamdb_model::Table,
    mut docs: Vec<SchemaDoc>,
) -> Result<TableDef> {
    for doc in &mut docs {
        doc.assign_ids();
    }
    let doc = docs
        .pop()
        .ok_or_else(|| EngineError::Internal(format!("{} has no schema", table.table_id)))?;
    let history: Vec<Arc<[ColumnSpec]>> = docs.into_iter().map(|d| d.columns.into()).collect();
    let kind = table.table_type;
    let primary_key = doc
        .columns
        .iter()
        .position(|c| c.name == doc.primary_key)
        .ok_or_else(|| {
            EngineError::Internal(format!("primary key of {} is missing", table.table_id))
        })?;
    let flush_policy: FlushPolicy = table
        .flush_policy
        .as_deref()
        .and_then(|p| serde_json::from_str(p).ok())
        .unwrap_or_default();
    Ok(TableDef {
        namespace: table.namespace.clone(),
        name: table.table_name.clone(),
        kind,
        columns: doc.columns,
        primary_key,
        version: table.schema_version,
        next_column_id: doc.next_column_id,
        history: Arc::new(history),
        storage_location: table.storage_location.clone(),
        flush_policy,
        deleted_retention_hours: table.deleted_retention_hours,
        stream: match &table.options {
            Some(options) => Some(serde_json::from_str(options).map_err(|e| {
                EngineError::Internal(format!("corrupt options of {}: {e}", table.table_id))
            })?),
            None => None,
        },
    })
}

/// RocksDB column family of a table's rows: `user_table:{ns}:{table}`,
/// `shared_table:…` or `stream_table:…`.
pub(crate) fn column_family(kind: TableKind, namespace: &str, table: &str) -> String {
    format!(
        "{}_table:{namespace}:{table}",
        kind.as_str().to_ascii_lowercase()
    )
}

/// Arrow type of a system column.
fn system_column_type(name: &str) -> DataType {
    match name {
        UPDATED_COLUMN => ColumnType::Timestamp.arrow_type(),
        DELETED_COLUMN => DataType::Boolean,
        _ => DataType::Int64,
    }
}

/// The longest namespace, table, column or user name.
pub(crate) const MAX_NAME_LEN: usize = 64;

/// Checks a namespace or table name: a letter or `_`, then letters, digits, `_`.
pub(crate) fn validate_name(name: &str, what: &str) -> std::result::Result<(), String> {
    let mut chars = name.chars();
    let starts_well = chars
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_');
    let rest_ok = name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_');
    if !starts_well || !rest_ok || name.len() > MAX_NAME_LEN {
        return Err(format!(
            "invalid {what} name '{name}': use up to {MAX_NAME_LEN} letters, digits and _, starting with a letter or _"
        ));
    }
    Ok(())
}

/// Parses durations like `7 days`, `12 hours`, `5 minutes`, `30s`, `1 day`.
pub(crate) fn parse_duration_secs(text: &str) -> Option<u64> {
    let text = text.trim().to_ascii_lowercase();
    let split = text.find(|c: char| !c.is_ascii_digit())?;
    let (number, unit) = text.split_at(split);
    let number: u64 = number.parse().ok()?;
    let unit = unit.trim();
    let factor = match unit {
        "s" | "sec" | "secs" | "second" | "seconds" => 1,
        "m" | "min" | "mins" | "minute" | "minutes" => 60,
        "h" | "hour" | "hours" => 3600,
        "d" | "day" | "days" => 86_400,
        "w" | "week" | "weeks" => 7 * 86_400,
        _ => return None,
    };
    number.checked_mul(factor)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations() {
        assert_eq!(parse_duration_secs("7 days"), Some(7 * 86_400));
        assert_eq!(parse_duration_secs("5 minutes"), Some(300));
        assert_eq!(parse_duration_secs("10s"), Some(10));
        assert_eq!(parse_duration_secs("1 HOUR"), Some(3600));
        assert_eq!(parse_duration_secs("soon"), None);
        assert_eq!(parse_duration_secs("5 fortnights"), None);
    }
}
