//! Tables as pure data, the bottom layer: `def` describes a table
//! (columns, key, options) and its Arrow schema; `keys` addresses its
//! partitions and rows; `row` is how one row version is stored. Nothing
//! here reads or writes storage.

pub(crate) mod def;
pub(crate) mod keys;
pub(crate) mod kind;
pub(crate) mod row;

pub(crate) use def::{
    ColumnSpec, ColumnType, DefaultValue, SchemaDoc, TableDef, TableId, TableKind, schema_id,
    table_def,
};
