//! `information_schema.tables` and `information_schema.columns`: KalamDB's
//! own, in place of DataFusion's (turned off in the session config), so a
//! table's type is its KalamDB kind — `USER`, `SHARED`, `STREAM` or
//! `SYSTEM` — rather than DataFusion's `BASE TABLE`/`VIEW`.
//!
//! Rows are built when a query scans them, from `system.tables` (filtered
//! by the same visibility as `system.tables` itself), the registry's
//! definitions and the system tables' Arrow schemas. DataFusion applies
//! every WHERE filter on top.

use std::collections::HashMap;
use std::sync::Arc;

use async_trait::async_trait;
use datafusion::arrow::array::{ArrayRef, Int64Array, RecordBatch, StringArray};
use datafusion::arrow::datatypes::{DataType, Field, Schema, SchemaRef};
use datafusion::catalog::{Session, TableProvider};
use datafusion::datasource::TableType;
use datafusion::datasource::memory::MemorySourceConfig;
use datafusion::error::DataFusionError;
use datafusion::logical_expr::Expr;
use datafusion::physical_plan::ExecutionPlan;

use crate::error::CATALOG_NAME;
use crate::json::sql_type_name;
use crate::registry::TableRegistry;
use crate::session::Caller;
use crate::system::{SYSTEM_SCHEMA, SystemSchema, SystemStores, visible_table};
use crate::table::TableId;

/// Name of the schema.
pub(crate) const INFORMATION_SCHEMA: &str = "information_schema";
/// `table_type` of the `system.*` and `information_schema.*` tables.
const SYSTEM_KIND: &str = "SYSTEM";

/// One column as `information_schema.columns` lists it.
struct ColumnRow {
    name: String,
    data_type: String,
    nullable: bool,
    default: Option<String>,
}

/// One table as `information_schema.tables` lists it, with its columns.
struct TableRow {
    schema: String,
    name: String,
    kind: String,
    columns: Vec<ColumnRow>,
}

/// What both views read.
#[derive(Debug)]
struct Catalog {
    stores: SystemStores,
    tables: Arc<TableRegistry>,
    system: Arc<SystemSchema>,
}

impl Catalog {
    /// Every table the caller may see, sorted by schema and name.
    fn tables(&self, caller: &Caller) -> datafusion::error::Result<Vec<TableRow>> {
        let mut out = Vec::new();
        for (name, schema) in self.system.schemas() {
            out.push(system_table(SYSTEM_SCHEMA, name, &schema));
        }
        for (name, schema) in [("columns", columns_schema()), ("tables", tables_schema())] {
            out.push(system_table(INFORMATION_SCHEMA, name, &schema));
        }
        let rows = self
            .stores
            .tables
            .scan_all()
            .map_err(|e| DataFusionError::External(Box::new(e)))?;
        for row in rows.into_iter().filter_map(|r| visible_table(r, caller)) {
            let Some(def) = self.tables.by_id(&TableId::of(&row)) else {
                continue;
            };
            let mut columns: Vec<ColumnRow> = def
                .columns
                .iter()
                .map(|c| ColumnRow {
                    name: c.name.clone(),
                    data_type: c.ty.sql_name().to_string(),
                    nullable: c.nullable,
                    default: c.default.as_ref().map(|d| d.sql()),
                })
                .collect();
            // The system columns every query may read (`_seq`, …); never NULL.
            let schema = def.arrow_schema();
            columns.extend(
                schema.fields()[def.user_column_count()..]
                    .iter()
                    .map(|f| ColumnRow {
                        name: f.name().clone(),
                        data_type: sql_type_name(f.data_type()),
                        nullable: false,
                        default: None,
                    }),
            );
            out.push(TableRow {
                schema: row.namespace,
                name: row.table_name,
                kind: row.table_type.as_str().to_string(),
                columns,
            });
        }
        out.sort_by(|a, b| (&a.schema, &a.name).cmp(&(&b.schema, &b.name)));
        Ok(out)
    }
}

/// A `system.*` or `information_schema.*` table from its Arrow schema.
fn system_table(schema_name: &str, name: &str, schema: &Schema) -> TableRow {
    TableRow {
        schema: schema_name.to_string(),
        name: name.to_string(),
        kind: SYSTEM_KIND.to_string(),
        columns: schema
            .fields()
            .iter()
            .map(|f| ColumnRow {
                name: f.name().clone(),
                data_type: sql_type_name(f.data_type()),
                nullable: f.is_nullable(),
                default: None,
            })
            .collect(),
    }
}

fn tables_schema() -> SchemaRef {
    Arc::new(Schema::new(vec![
        Field::new("table_catalog", DataType::Utf8, false),
        Field::new("table_schema", DataType::Utf8, false),
        Field::new("table_name", DataType::Utf8, false),
        Field::new("table_type", DataType::Utf8, false),
    ]))
}

fn columns_schema() -> SchemaRef {
    Arc::new(Schema::new(vec![
        Field::new("table_catalog", DataType::Utf8, false),
        Field::new("table_schema", DataType::Utf8, false),
        Field::new("table_name", DataType::Utf8, false),
        Field::new("column_name", DataType::Utf8, false),
        Field::new("ordinal_position", DataType::Int64, false),
        Field::new("column_default", DataType::Utf8, true),
        Field::new("is_nullable", DataType::Utf8, false),
        Field::new("data_type", DataType::Utf8, false),
    ]))
}

fn strings<'a>(values: impl Iterator<Item = &'a str>) -> ArrayRef {
    Arc::new(StringArray::from(values.collect::<Vec<_>>()))
}

/// Which of the two views.
#[derive(Debug, Clone, Copy)]
enum View {
    Tables,
    Columns,
}

/// One view as a DataFusion table.
#[derive(Debug)]
struct ViewProvider {
    view: View,
    catalog: Arc<Catalog>,
}

impl ViewProvider {
    fn batch(&self, rows: &[TableRow]) -> datafusion::error::Result<RecordBatch> {
        let arrays: Vec<ArrayRef> = match self.view {
            View::Tables => vec![
                strings(rows.iter().map(|_| CATALOG_NAME)),
                strings(rows.iter().map(|t| t.schema.as_str())),
                strings(rows.iter().map(|t| t.name.as_str())),
                strings(rows.iter().map(|t| t.kind.as_str())),
            ],
            View::Columns => {
                let columns = || {
                    rows.iter()
                        .flat_map(|t| t.columns.iter().enumerate().map(move |(i, c)| (t, i, c)))
                };
                vec![
                    strings(columns().map(|_| CATALOG_NAME)),
                    strings(columns().map(|(t, _, _)| t.schema.as_str())),
                    strings(columns().map(|(t, _, _)| t.name.as_str())),
                    strings(columns().map(|(_, _, c)| c.name.as_str())),
                    Arc::new(Int64Array::from(
                        columns().map(|(_, i, _)| i as i64 + 1).collect::<Vec<_>>(),
                    )),
                    Arc::new(StringArray::from(
                        columns()
                            .map(|(_, _, c)| c.default.as_deref())
                            .collect::<Vec<_>>(),
                    )),
                    strings(columns().map(|(_, _, c)| if c.nullable { "YES" } else { "NO" })),
                    strings(columns().map(|(_, _, c)| c.data_type.as_str())),
                ]
            }
        };
        Ok(RecordBatch::try_new(self.schema(), arrays)?)
    }
}

#[async_trait]
impl TableProvider for ViewProvider {
    fn schema(&self) -> SchemaRef {
        match self.view {
            View::Tables => tables_schema(),
            View::Columns => columns_schema(),
        }
    }

    fn table_type(&self) -> TableType {
        TableType::View
    }

    async fn scan(
        &self,
        state: &dyn Session,
        projection: Option<&Vec<usize>>,
        _filters: &[Expr],
        _limit: Option<usize>,
    ) -> datafusion::error::Result<Arc<dyn ExecutionPlan>> {
        let rows = self.catalog.tables(&Caller::of_session(state))?;
        let batch = self.batch(&rows)?;
        Ok(MemorySourceConfig::try_new_exec(
            &[vec![batch]],
            self.schema(),
            projection.cloned(),
        )?)
    }
}

/// The `information_schema` schema: its two views over the catalog.
pub(crate) fn information_schema(
    stores: SystemStores,
    tables: Arc<TableRegistry>,
    system: Arc<SystemSchema>,
) -> SystemSchema {
    let catalog = Arc::new(Catalog {
        stores,
        tables,
        system,
    });
    let view = |view| {
        Arc::new(ViewProvider {
            view,
            catalog: catalog.clone(),
        }) as Arc<dyn TableProvider>
    };
    SystemSchema::fixed(HashMap::from([
        ("tables", view(View::Tables)),
        ("columns", view(View::Columns)),
    ]))
}

#[cfg(test)]
mod tests {
    use crate::testing::{rows, run};
    use crate::{Engine, EngineConfig};

    #[tokio::test]
    async fn kinds_and_columns() {
        let dir = tempfile::tempdir().unwrap();
        let (engine, _) = Engine::open(EngineConfig::new(dir.path())).unwrap();
        run(
            &engine,
            "CREATE NAMESPACE app;
             CREATE USER TABLE app.m (id BIGINT PRIMARY KEY, body TEXT NOT NULL DEFAULT 'x');
             CREATE SHARED TABLE app.r (name TEXT PRIMARY KEY);
             CREATE STREAM TABLE app.s (state TEXT) WITH (retention = '10s')",
        )
        .await;
        let tables = rows(
            &engine,
            "SELECT table_schema, table_name, table_type FROM information_schema.tables \
             WHERE table_schema IN ('app', 'system', 'information_schema') \
             ORDER BY table_schema, table_name",
        )
        .await;
        let kinds: Vec<String> = tables
            .iter()
            .map(|t| {
                format!(
                    "{}.{}={}",
                    t["table_schema"].as_str().unwrap(),
                    t["table_name"].as_str().unwrap(),
                    t["table_type"].as_str().unwrap()
                )
            })
            .collect();
        assert_eq!(
            kinds,
            [
                "app.m=USER",
                "app.r=SHARED",
                "app.s=STREAM",
                "information_schema.columns=SYSTEM",
                "information_schema.tables=SYSTEM",
                "system.jobs=SYSTEM",
                "system.live_queries=SYSTEM",
                "system.namespaces=SYSTEM",
                "system.storage_locations=SYSTEM",
                "system.table_schemas=SYSTEM",
                "system.tables=SYSTEM",
                "system.users=SYSTEM",
            ]
        );
        let columns = rows(
            &engine,
            "SELECT column_name, ordinal_position, data_type, is_nullable, column_default \
             FROM information_schema.columns WHERE table_schema = 'app' AND table_name = 'm' \
             ORDER BY ordinal_position",
        )
        .await;
        assert_eq!(
            columns,
            [
                serde_json::json!({"column_name": "id", "ordinal_position": "1", "data_type": "BIGINT", "is_nullable": "NO", "column_default": null}),
                serde_json::json!({"column_name": "body", "ordinal_position": "2", "data_type": "TEXT", "is_nullable": "NO", "column_default": "'x'"}),
                serde_json::json!({"column_name": "_seq", "ordinal_position": "3", "data_type": "BIGINT", "is_nullable": "NO", "column_default": null}),
                serde_json::json!({"column_name": "_updated", "ordinal_position": "4", "data_type": "TIMESTAMP", "is_nullable": "NO", "column_default": null}),
                serde_json::json!({"column_name": "_deleted", "ordinal_position": "5", "data_type": "BOOLEAN", "is_nullable": "NO", "column_default": null}),
            ]
        );
    }
}
