//! Rust field types → Arrow columns, one trait implementation per type.

use std::collections::HashMap;
use std::sync::Arc;

use arrow_array::builder::{
    BooleanBuilder, Float64Builder, Int32Builder, Int64Builder, StringBuilder,
    TimestampMicrosecondBuilder,
};
use arrow_schema::{DataType, Field, Schema, SchemaRef, TimeUnit};

use crate::{JobKind, JobStatus, Role, StorageKind, TableKind, Timestamp};

/// A Rust type that can be a system-table column.
///
/// Implement it for a new field type to make that type usable in a
/// `#[system_table]` struct; there is no other list of supported types.
pub trait ArrowColumn {
    type Builder: arrow_array::builder::ArrayBuilder;
    /// Whether the column may hold NULL (true only for `Option<T>`).
    const NULLABLE: bool = false;

    fn data_type() -> DataType;
    fn builder(capacity: usize) -> Self::Builder;
    fn append(&self, builder: &mut Self::Builder);
    fn append_null(builder: &mut Self::Builder);
}

macro_rules! primitive_column {
    ($rust:ty, $builder:ty, $arrow:expr, |$v:ident| $conv:expr) => {
        impl ArrowColumn for $rust {
            type Builder = $builder;
            fn data_type() -> DataType {
                $arrow
            }
            fn builder(capacity: usize) -> Self::Builder {
                <$builder>::with_capacity(capacity)
            }
            fn append(&self, builder: &mut Self::Builder) {
                let $v = self;
                builder.append_value($conv);
            }
            fn append_null(builder: &mut Self::Builder) {
                builder.append_null();
            }
        }
    };
}

primitive_column!(i32, Int32Builder, DataType::Int32, |v| *v);
primitive_column!(i64, Int64Builder, DataType::Int64, |v| *v);
primitive_column!(f64, Float64Builder, DataType::Float64, |v| *v);
primitive_column!(bool, BooleanBuilder, DataType::Boolean, |v| *v);

impl ArrowColumn for String {
    type Builder = StringBuilder;
    fn data_type() -> DataType {
        DataType::Utf8
    }
    fn builder(capacity: usize) -> Self::Builder {
        StringBuilder::with_capacity(capacity, capacity * 16)
    }
    fn append(&self, builder: &mut Self::Builder) {
        builder.append_value(self);
    }
    fn append_null(builder: &mut Self::Builder) {
        builder.append_null();
    }
}

/// Enums shown as one word per variant are TEXT columns.
macro_rules! word_column {
    ($($ty:ty),+) => {$(
        impl ArrowColumn for $ty {
            type Builder = StringBuilder;
            fn data_type() -> DataType {
                DataType::Utf8
            }
            fn builder(capacity: usize) -> Self::Builder {
                StringBuilder::with_capacity(capacity, capacity * 8)
            }
            fn append(&self, builder: &mut Self::Builder) {
                builder.append_value(self.as_str());
            }
            fn append_null(builder: &mut Self::Builder) {
                builder.append_null();
            }
        }
    )+};
}

word_column!(Role, JobKind, JobStatus, TableKind, StorageKind);

impl ArrowColumn for Timestamp {
    type Builder = TimestampMicrosecondBuilder;
    fn data_type() -> DataType {
        DataType::Timestamp(TimeUnit::Microsecond, Some("UTC".into()))
    }
    fn builder(capacity: usize) -> Self::Builder {
        TimestampMicrosecondBuilder::with_capacity(capacity).with_timezone("UTC")
    }
    fn append(&self, builder: &mut Self::Builder) {
        builder.append_value(self.0);
    }
    fn append_null(builder: &mut Self::Builder) {
        builder.append_null();
    }
}

impl<T: ArrowColumn> ArrowColumn for Option<T> {
    type Builder = T::Builder;
    const NULLABLE: bool = true;
    fn data_type() -> DataType {
        T::data_type()
    }
    fn builder(capacity: usize) -> Self::Builder {
        T::builder(capacity)
    }
    fn append(&self, builder: &mut Self::Builder) {
        match self {
            Some(value) => value.append(builder),
            None => T::append_null(builder),
        }
    }
    fn append_null(builder: &mut Self::Builder) {
        T::append_null(builder);
    }
}

/// The Arrow field for a column of type `T`; a non-empty doc becomes its `comment`.
pub fn column_field<T: ArrowColumn + ?Sized>(name: &str, doc: &str) -> Field {
    let field = Field::new(name, T::data_type(), T::NULLABLE);
    if doc.is_empty() {
        field
    } else {
        field.with_metadata(HashMap::from([("comment".to_string(), doc.to_string())]))
    }
}

/// A schema from fields; a non-empty table doc becomes its `comment`.
pub fn table_schema(doc: &str, fields: Vec<Field>) -> SchemaRef {
    let schema = Schema::new(fields);
    let schema = if doc.is_empty() {
        schema
    } else {
        schema.with_metadata(HashMap::from([("comment".to_string(), doc.to_string())]))
    };
    Arc::new(schema)
}
