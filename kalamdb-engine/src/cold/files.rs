//! Parquet files: writing a partition's rows, and scanning files through
//! DataFusion's Parquet source (statistics and bloom-filter pruning,
//! predicate pushdown).

use std::collections::HashMap;
use std::sync::Arc;

use bytes::Bytes;
use datafusion::arrow::array::{
    Array, ArrayRef, AsArray, BooleanArray, RecordBatch, RecordBatchOptions,
};
use datafusion::arrow::compute::{cast as arrow_cast, filter_record_batch};
use datafusion::arrow::datatypes::{Int32Type, Int64Type, SchemaRef, TimestampMicrosecondType};
use datafusion::common::stats::Precision;
use datafusion::common::tree_node::{Transformed, TreeNode};
use datafusion::common::{DataFusionError, ScalarValue, Statistics};
use datafusion::datasource::listing::PartitionedFile;
use datafusion::datasource::physical_plan::parquet::CachedParquetFileReaderFactory;
use datafusion::datasource::physical_plan::{FileGroup, FileScanConfigBuilder, ParquetSource};
use datafusion::datasource::source::DataSourceExec;
use datafusion::execution::TaskContext;
use datafusion::logical_expr::Operator;
use datafusion::physical_expr::PhysicalExpr;
use datafusion::physical_expr::expressions::{Column, binary, cast, col, in_list, lit};
use datafusion::physical_plan::{ExecutionPlan, collect};
use kalamdb_model::StorageKey;
use parquet::arrow::ArrowWriter;
use parquet::basic::{Compression, ZstdLevel};
use parquet::file::properties::{EnabledStatistics, WriterProperties};
use parquet::schema::types::ColumnPath;

use super::location::location_url;
use super::manifest::ColdFile;
use crate::error::{EngineError, Result};
use crate::table::TableDef;
use crate::table::def::{ColumnSpec, ColumnType, DELETED_COLUMN, SEQ_COLUMN, UPDATED_COLUMN};
use crate::table::row::{StoredRow, array_to_cells, cells_to_array, rows_to_batch};

/// Rows per Parquet row group: small enough that statistics prune well.
const ROW_GROUP_ROWS: usize = 64 * 1024;
/// Rows per data page: the page index then narrows a key lookup to one
/// page of about a thousand rows per column.
const PAGE_ROWS: usize = 1024;
/// Largest dictionary page: a lookup decompresses a column's whole
/// dictionary page before its data page, so a column of mostly distinct
/// values (text, doubles) switches to plain encoding early instead of
/// building a dictionary of up to 1 MiB that every lookup reads.
const DICTIONARY_PAGE_BYTES: usize = 16 * 1024;

/// Encodes rows (sorted by key) as a Parquet file: zstd, page statistics on
/// every column (so `_seq` and `_updated` ranges prune), a bloom filter on
/// the primary key.
pub(crate) fn encode(def: &TableDef, rows: &[StoredRow]) -> Result<(Bytes, usize)> {
    let schema = def.file_schema();
    let all: Vec<usize> = (0..schema.fields().len()).collect();
    let batch = rows_to_batch(def, rows, schema.clone(), &all)?;
    let memory = batch.get_array_memory_size();
    let properties = WriterProperties::builder()
        .set_compression(Compression::ZSTD(ZstdLevel::try_new(3)?))
        .set_statistics_enabled(EnabledStatistics::Page)
        .set_max_row_group_row_count(Some(ROW_GROUP_ROWS))
        .set_data_page_row_count_limit(PAGE_ROWS)
        .set_dictionary_page_size_limit(DICTIONARY_PAGE_BYTES)
        .set_column_bloom_filter_enabled(ColumnPath::from(def.key_column().name.as_str()), true)
        // Unique per row: a dictionary page would hold every value of the
        // file and be read by every lookup, defeating the page index.
        .set_column_dictionary_enabled(ColumnPath::from(def.key_column().name.as_str()), false)
        .set_column_dictionary_enabled(ColumnPath::from(SEQ_COLUMN), false)
        .set_column_dictionary_enabled(ColumnPath::from(UPDATED_COLUMN), false)
        .set_created_by(format!("KalamDB {}", env!("CARGO_PKG_VERSION")))
        .build();
    let mut buffer = Vec::with_capacity(memory / 2);
    let mut writer = ArrowWriter::try_new(&mut buffer, schema, Some(properties))?;
    writer.write(&batch)?;
    writer.close()?;
    let memory = memory + buffer.capacity();
    Ok((Bytes::from(buffer), memory))
}

/// Parallel partitions a scan splits its files into.
const SCAN_PARTITIONS: usize = 4;

/// A scan of `files` of one location returning the `columns` (indices into
/// the table schema), with rows not matching `predicate` dropped as early as
/// statistics, bloom filters, the page index and decoding allow. Files are
/// spread over up to [`SCAN_PARTITIONS`] partitions read in parallel.
pub(crate) fn scan_plan(
    schema: SchemaRef,
    location: &str,
    files: &[&ColdFile],
    columns: &[usize],
    predicate: Option<Arc<dyn PhysicalExpr>>,
    task: &TaskContext,
) -> Result<Arc<dyn ExecutionPlan>> {
    // Footers and page indexes are cached by the runtime (files never
    // change once written), so a point lookup reads only the pages it needs.
    let url = location_url(location);
    let runtime = task.runtime_env();
    let reader = CachedParquetFileReaderFactory::new(
        runtime.object_store(&url)?,
        runtime.cache_manager.get_file_metadata_cache(),
    );
    let mut source = ParquetSource::new(schema.clone())
        .with_parquet_file_reader_factory(Arc::new(reader))
        .with_pushdown_filters(true)
        .with_bloom_filter_on_read(true)
        .with_enable_page_index(true);
    if let Some(predicate) = &predicate {
        source = source.with_predicate(predicate.clone());
    }
    let partitions = files.len().clamp(1, SCAN_PARTITIONS);
    let mut groups: Vec<Vec<PartitionedFile>> = vec![Vec::new(); partitions];
    for (i, file) in files.iter().enumerate() {
        groups[i % partitions].push(PartitionedFile::new(file.path.clone(), file.bytes));
    }
    // The manifest's row counts bound what the files hold (superseded
    // versions and tombstones included): planning checks rely on it.
    let mut statistics = Statistics::new_unknown(&schema);
    statistics.num_rows = Precision::Inexact(files.iter().map(|f| f.rows as usize).sum());
    let builder = FileScanConfigBuilder::new(url, Arc::new(source))
        .with_statistics(statistics)
        .with_projection_indices(Some(columns.to_vec()))?
        .with_file_groups(groups.into_iter().map(FileGroup::new).collect());
    Ok(DataSourceExec::from_data_source(builder.build()))
}

/// Runs [`scan_plan`] over files of any locations and schema versions and
/// collects the rows, each batch in `def`'s version (see [`VersionRead`]).
pub(crate) async fn scan(
    def: &TableDef,
    files: &[ColdFile],
    columns: &[usize],
    predicate: Option<Arc<dyn PhysicalExpr>>,
    task: Arc<TaskContext>,
) -> Result<Vec<RecordBatch>> {
    let mut groups: HashMap<(&str, i32), Vec<&ColdFile>> = HashMap::new();
    for file in files {
        groups
            .entry((&file.location, file.schema_version))
            .or_default()
            .push(file);
    }
    let mut out = Vec::new();
    for ((location, version), files) in groups {
        if version == def.version {
            let plan = scan_plan(
                def.arrow_schema(),
                location,
                &files,
                columns,
                predicate.clone(),
                &task,
            )?;
            out.extend(collect(plan, task.clone()).await?);
            continue;
        }
        let read = VersionRead::new(def, version, columns)?;
        let predicate = predicate
            .as_ref()
            .map(|p| read.predicate(p.clone()))
            .transpose()?;
        let plan = scan_plan(
            read.schema.clone(),
            location,
            &files,
            &read.scanned,
            predicate,
            &task,
        )?;
        for batch in collect(plan, task.clone()).await? {
            out.push(read.adapt(&batch)?);
        }
    }
    Ok(out)
}

/// Reading files written under an older schema version `version` as rows
/// of `def`'s version: columns are matched by id, so a renamed column is
/// read under its old name, a widened one cast to its new type, a column
/// added since reads as its fill (its ADD COLUMN default, or NULL), and a
/// dropped one (even if a new column took its name) is never read.
pub(crate) struct VersionRead {
    /// The file's table schema: that version's columns and types.
    schema: SchemaRef,
    /// Columns of `schema` to scan.
    scanned: Vec<usize>,
    /// For each requested column of `def`: where it is among `scanned`,
    /// or the value it reads as.
    outputs: Vec<Result<usize, ScalarValue>>,
    /// The requested columns of `def`'s schema.
    output_schema: SchemaRef,
    /// For each column of `def`'s full schema, the same column of
    /// `schema`, or the value it reads as when the version lacks it.
    mapping: Vec<std::result::Result<usize, ScalarValue>>,
    /// `def`'s full schema.
    current: SchemaRef,
}

impl VersionRead {
    pub(crate) fn new(def: &TableDef, version: i32, columns: &[usize]) -> Result<Self> {
        let old_columns = def
            .version_columns(version)
            .ok_or_else(|| EngineError::SchemaChanged(def.table_id().to_string()))?;
        let schema = def.schema_of(old_columns);
        let current = def.arrow_schema();
        let sources = def.sources(version)?;
        let users = def.user_column_count();
        let mapping = (0..current.fields().len())
            .map(|c| match sources.get(c) {
                Some(Some((i, _))) => Ok(Ok(*i)),
                Some(None) => Ok(Err(fill_scalar(&def.columns[c])?)),
                None => Ok(Ok(c - users + old_columns.len())),
            })
            .collect::<Result<Vec<_>>>()?;
        let mut scanned = Vec::new();
        let mut outputs = Vec::with_capacity(columns.len());
        for &c in columns {
            match &mapping[c] {
                Ok(old) => {
                    let position = scanned.iter().position(|s| s == old).unwrap_or_else(|| {
                        scanned.push(*old);
                        scanned.len() - 1
                    });
                    outputs.push(Ok(position));
                }
                Err(fill) => outputs.push(Err(fill.clone())),
            }
        }
        if scanned.is_empty() {
            // Only filled columns: scan `_seq` for the row count.
            scanned.push(old_columns.len());
        }
        Ok(VersionRead {
            output_schema: Arc::new(current.project(columns).map_err(DataFusionError::from)?),
            schema,
            scanned,
            outputs,
            mapping,
            current,
        })
    }

    /// `predicate` (over `def`'s full schema) over the version's schema.
    fn predicate(&self, predicate: Arc<dyn PhysicalExpr>) -> Result<Arc<dyn PhysicalExpr>> {
        let rewritten = predicate.transform(|expr| {
            let Some(index) = expr.downcast_ref::<Column>().map(Column::index) else {
                return Ok(Transformed::no(expr));
            };
            let target = self.current.field(index).data_type();
            let replacement: Arc<dyn PhysicalExpr> = match &self.mapping[index] {
                Ok(old) => {
                    let field = self.schema.field(*old);
                    let read: Arc<dyn PhysicalExpr> = Arc::new(Column::new(field.name(), *old));
                    if field.data_type() == target {
                        read
                    } else {
                        cast(read, &self.schema, target.clone())?
                    }
                }
                Err(fill) => lit(fill.clone()),
            };
            Ok(Transformed::yes(replacement))
        })?;
        Ok(rewritten.data)
    }

    /// A scanned batch as the requested columns of `def`'s version.
    fn adapt(&self, batch: &RecordBatch) -> Result<RecordBatch> {
        let rows = batch.num_rows();
        let columns = self
            .outputs
            .iter()
            .zip(self.output_schema.fields())
            .map(|(output, field)| -> Result<ArrayRef> {
                Ok(match output {
                    Ok(position) => {
                        let array = batch.column(*position);
                        if array.data_type() == field.data_type() {
                            array.clone()
                        } else {
                            arrow_cast(array, field.data_type()).map_err(DataFusionError::from)?
                        }
                    }
                    Err(value) => value.to_array_of_size(rows)?,
                })
            })
            .collect::<Result<Vec<_>>>()?;
        let options = RecordBatchOptions::new().with_row_count(Some(rows));
        Ok(
            RecordBatch::try_new_with_options(self.output_schema.clone(), columns, &options)
                .map_err(DataFusionError::from)?,
        )
    }
}

/// The value rows written before `column` existed read as.
fn fill_scalar(column: &ColumnSpec) -> Result<ScalarValue> {
    let cell = column.fill.clone().unwrap_or(serde_json::Value::Null);
    let array = cells_to_array(column.ty, std::iter::once(&cell));
    Ok(ScalarValue::try_from_array(&array, 0)?)
}

/// The literal of an encoded primary key.
fn pk_literal(ty: ColumnType, pk: &[u8]) -> Result<ScalarValue> {
    let int = || -> Result<i64> {
        let bytes: [u8; 8] = pk
            .try_into()
            .map_err(|_| EngineError::Internal("corrupt integer key".into()))?;
        Ok((u64::from_be_bytes(bytes) ^ (1 << 63)) as i64)
    };
    Ok(match ty {
        ColumnType::Int => ScalarValue::Int32(Some(int()? as i32)),
        ColumnType::BigInt => ScalarValue::Int64(Some(int()?)),
        _ => ScalarValue::Utf8(Some(
            String::from_utf8(pk.to_vec())
                .map_err(|_| EngineError::Internal("corrupt text key".into()))?,
        )),
    })
}

/// `pk IN (…)` over the table schema.
pub(crate) fn key_predicate(def: &TableDef, pks: &[Vec<u8>]) -> Result<Arc<dyn PhysicalExpr>> {
    let schema = def.arrow_schema();
    let key = def.key_column();
    let list = pks
        .iter()
        .map(|pk| pk_literal(key.ty, pk).map(lit))
        .collect::<Result<Vec<_>>>()?;
    Ok(in_list(col(&key.name, &schema)?, list, &false, &schema)?)
}

/// A predicate that keeps every row (for file selection by key range only).
pub(crate) fn always_true() -> Arc<dyn PhysicalExpr> {
    lit(true)
}

/// `_seq > from` over the table schema.
pub(crate) fn seq_after(def: &TableDef, from: i64) -> Result<Arc<dyn PhysicalExpr>> {
    let schema = def.arrow_schema();
    Ok(binary(
        col(SEQ_COLUMN, &schema)?,
        Operator::Gt,
        lit(from),
        &schema,
    )?)
}

/// Encoded primary keys of a key column, as `encode_pk` encodes them.
pub(crate) fn encoded_keys(array: &ArrayRef) -> Result<Vec<Vec<u8>>> {
    let keys = (0..array.len()).map(|i| -> Result<Vec<u8>> {
        if array.is_null(i) {
            return Err(EngineError::Internal("a stored primary key is NULL".into()));
        }
        Ok(match array.data_type() {
            datafusion::arrow::datatypes::DataType::Int32 => {
                (array.as_primitive::<Int32Type>().value(i) as i64).storage_key()
            }
            datafusion::arrow::datatypes::DataType::Int64 => {
                array.as_primitive::<Int64Type>().value(i).storage_key()
            }
            _ => array.as_string::<i32>().value(i).as_bytes().to_vec(),
        })
    });
    keys.collect()
}

/// Rows of a batch holding every column of the table schema.
pub(crate) fn batch_to_rows(def: &TableDef, batch: &RecordBatch) -> Result<Vec<StoredRow>> {
    let n = def.user_column_count();
    let cells: Vec<Vec<serde_json::Value>> = def
        .columns
        .iter()
        .enumerate()
        .map(|(i, spec)| array_to_cells(batch.column(i), spec.ty, &spec.name))
        .collect::<Result<_>>()?;
    let seq = batch.column(n).as_primitive::<Int64Type>();
    let updated = batch
        .column(n + 1)
        .as_primitive::<TimestampMicrosecondType>();
    let deleted = batch.column(n + 2).as_boolean();
    Ok((0..batch.num_rows())
        .map(|row| StoredRow {
            seq: seq.value(row),
            updated: updated.value(row),
            deleted: deleted.value(row),
            version: def.version,
            values: cells.iter().map(|c| c[row].clone()).collect(),
        })
        .collect())
}

/// Where the key, `_seq` and `_deleted` are among scanned `columns`.
pub(crate) struct SystemPositions {
    pub key: usize,
    pub seq: usize,
    pub deleted: usize,
}

impl SystemPositions {
    /// `columns` extended (if needed) with the key, `_seq` and `_deleted`.
    pub(crate) fn extend(def: &TableDef, columns: &mut Vec<usize>) -> SystemPositions {
        let schema = def.arrow_schema();
        let mut position = |index: usize| match columns.iter().position(|&c| c == index) {
            Some(p) => p,
            None => {
                columns.push(index);
                columns.len() - 1
            }
        };
        let key = position(def.primary_key);
        let seq = position(
            schema
                .index_of(SEQ_COLUMN)
                .unwrap_or(def.user_column_count()),
        );
        let deleted = position(
            schema
                .index_of(DELETED_COLUMN)
                .unwrap_or(def.user_column_count() + 2),
        );
        SystemPositions { key, seq, deleted }
    }
}

/// Keeps the rows of `batch` where `keep` is true.
pub(crate) fn retain(batch: &RecordBatch, keep: Vec<bool>) -> Result<RecordBatch> {
    filter_record_batch(batch, &BooleanArray::from(keep))
        .map_err(|e| EngineError::Internal(format!("cannot filter rows: {e}")))
}

/// Builds the manifest entry of a file written from `rows` (sorted by key).
pub(crate) fn describe(
    name: String,
    location: &str,
    path: String,
    rows: &[StoredRow],
    pks: (&[u8], &[u8]),
    bytes: u64,
    schema_version: i32,
) -> ColdFile {
    ColdFile {
        name,
        location: location.to_string(),
        path,
        rows: rows.len() as u64,
        tombstones: rows.iter().filter(|r| r.deleted).count() as u64,
        bytes,
        min_seq: rows.iter().map(|r| r.seq).min().unwrap_or_default(),
        max_seq: rows.iter().map(|r| r.seq).max().unwrap_or_default(),
        min_pk: pks.0.to_vec(),
        max_pk: pks.1.to_vec(),
        oldest_tombstone: rows.iter().filter(|r| r.deleted).map(|r| r.updated).min(),
        created_at: kalamdb_model::Timestamp::now().0,
        schema_version,
    }
}

/// True when no two files can hold the same key (their key ranges do not
/// overlap), so a filter may be pushed into the scan without exposing an
/// older version of a row whose newer version does not match.
pub(crate) fn disjoint(files: &[ColdFile]) -> bool {
    let mut ranges: Vec<(&[u8], &[u8])> = files
        .iter()
        .map(|f| (f.min_pk.as_slice(), f.max_pk.as_slice()))
        .collect();
    ranges.sort();
    ranges.windows(2).all(|w| w[0].1 < w[1].0)
}
