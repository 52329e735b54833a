//! Primary-key lookups in Parquet files without a DataFusion plan.
//!
//! A lookup through a DataFusion scan builds a plan, a pruning predicate
//! and a file opener for every statement. Here a file's metadata (footer
//! and page index) is read once and cached (files never change once
//! written), the page index of the key column narrows each row group to the
//! pages whose min/max can hold a key (files are sorted by key, so that is
//! usually one page of about a thousand rows), and only those pages of each
//! column are read and decoded.

use std::collections::HashMap;
use std::ops::Range;
use std::sync::Arc;

use bytes::Bytes;
use futures::FutureExt;
use futures::future::BoxFuture;
use object_store::path::Path;
use object_store::{ObjectStore, ObjectStoreExt};

use datafusion::arrow::array::{BooleanArray, RecordBatch};
use datafusion::arrow::compute::filter_record_batch;
use futures::TryStreamExt;
use parquet::arrow::ParquetRecordBatchStreamBuilder;
use parquet::arrow::arrow_reader::{
    ArrowReaderMetadata, ArrowReaderOptions, RowSelection, RowSelector,
};
use parquet::arrow::async_reader::AsyncFileReader;
use parquet::errors::ParquetError;
use parquet::file::metadata::{PageIndexPolicy, ParquetMetaData, ParquetMetaDataReader};
use parquet::file::page_index::column_index::ColumnIndexMetaData;

use super::ColdTier;
use super::files::encoded_keys;
use super::location::location_url;
use super::manifest::ColdFile;
use crate::error::{EngineError, Result};
use crate::table::TableDef;
use crate::table::def::ColumnType;

/// Metadata of files already opened, by location and path. Bounded: when
/// full it starts over (a lookup then reads the footer again).
#[derive(Default)]
pub(crate) struct Footers {
    entries: parking_lot::Mutex<HashMap<(String, String), ArrowReaderMetadata>>,
}

/// Files whose metadata stays cached.
const CACHED_FOOTERS: usize = 4096;

impl Footers {
    fn get(&self, key: &(String, String)) -> Option<ArrowReaderMetadata> {
        self.entries.lock().get(key).cloned()
    }

    fn put(&self, key: (String, String), metadata: ArrowReaderMetadata) {
        let mut entries = self.entries.lock();
        if entries.len() >= CACHED_FOOTERS {
            entries.clear();
        }
        entries.insert(key, metadata);
    }
}

/// A key's value as the Parquet page index compares it.
enum KeyValue<'a> {
    Int(i64),
    Bytes(&'a [u8]),
}

impl<'a> KeyValue<'a> {
    fn of(ty: ColumnType, key: &'a [u8]) -> Option<Self> {
        match ty {
            // Inverse of `StorageKey for i64`: big-endian, sign bit flipped.
            ColumnType::Int | ColumnType::BigInt => {
                let bytes: [u8; 8] = key.try_into().ok()?;
                Some(KeyValue::Int(
                    (u64::from_be_bytes(bytes) ^ (1 << 63)) as i64,
                ))
            }
            ColumnType::Text => Some(KeyValue::Bytes(key)),
            _ => None,
        }
    }

    /// Whether a page with these statistics may hold the key; `None` when
    /// the index cannot say (the caller then keeps the page).
    fn in_page(&self, index: &ColumnIndexMetaData, page: usize) -> Option<bool> {
        match (self, index) {
            (KeyValue::Int(k), ColumnIndexMetaData::INT64(i)) => {
                Some(i.min_value(page)? <= k && k <= i.max_value(page)?)
            }
            (KeyValue::Int(k), ColumnIndexMetaData::INT32(i)) => {
                let (min, max) = (*i.min_value(page)? as i64, *i.max_value(page)? as i64);
                Some(min <= *k && *k <= max)
            }
            (KeyValue::Bytes(k), ColumnIndexMetaData::BYTE_ARRAY(i)) => {
                Some(i.min_value(page)? <= *k && *k <= i.max_value(page)?)
            }
            _ => None,
        }
    }
}

impl ColdTier {
    /// The stored versions (tombstones included) of `keys` in `candidates`
    /// (a partition's files whose key range holds one of them, from
    /// [`ColdTier::files_for`]), as batches of the table's columns; `None`
    /// when this path does not apply (a file of an older schema version, a
    /// key type or a file without a page index) and the caller should scan
    /// instead.
    pub(crate) async fn lookup(
        &self,
        def: &TableDef,
        candidates: &[ColdFile],
        keys: &[Vec<u8>],
    ) -> Result<Option<Vec<RecordBatch>>> {
        if candidates.iter().any(|f| f.schema_version != def.version) {
            return Ok(None);
        }
        let key_type = def.key_column().ty;
        let mut out = Vec::new();
        for file in candidates {
            let wanted: Vec<&[u8]> = keys
                .iter()
                .filter(|k| {
                    file.min_pk.as_slice() <= k.as_slice() && k.as_slice() <= file.max_pk.as_slice()
                })
                .map(Vec::as_slice)
                .collect();
            let values = wanted
                .iter()
                .map(|k| KeyValue::of(key_type, k))
                .collect::<Option<Vec<_>>>();
            let Some(values) = values else {
                return Ok(None);
            };
            let store = self.runtime.object_store(location_url(&file.location))?;
            let mut reader = StoreReader {
                store,
                path: Path::from(file.path.as_str()),
                size: file.bytes,
            };
            let cache_key = (file.location.clone(), file.path.clone());
            let metadata = match self.footers.get(&cache_key) {
                Some(m) => m,
                None => {
                    let options =
                        ArrowReaderOptions::new().with_page_index_policy(PageIndexPolicy::Optional);
                    let m = ArrowReaderMetadata::load_async(&mut reader, options).await?;
                    self.footers.put(cache_key, m.clone());
                    m
                }
            };
            let Some((row_groups, selection)) = pages_for(&metadata, def.primary_key, &values)
            else {
                return Ok(None);
            };
            if row_groups.is_empty() {
                continue;
            }
            let batches: Vec<RecordBatch> =
                ParquetRecordBatchStreamBuilder::new_with_metadata(reader, metadata)
                    .with_row_groups(row_groups)
                    .with_row_selection(selection)
                    .build()?
                    .try_collect()
                    .await?;
            for batch in batches {
                let found = encoded_keys(batch.column(def.primary_key))?;
                let keep: BooleanArray = found
                    .iter()
                    .map(|k| Some(wanted.contains(&k.as_slice())))
                    .collect();
                let batch = filter_record_batch(&batch, &keep)
                    .map_err(|e| EngineError::Internal(format!("cannot filter a lookup: {e}")))?;
                if batch.num_rows() > 0 {
                    out.push(batch);
                }
            }
        }
        Ok(Some(out))
    }
}

/// A file of an object store, read by range.
struct StoreReader {
    store: Arc<dyn ObjectStore>,
    path: Path,
    size: u64,
}

fn store_error(e: object_store::Error) -> ParquetError {
    ParquetError::External(Box::new(e))
}

impl AsyncFileReader for StoreReader {
    fn get_bytes(&mut self, range: Range<u64>) -> BoxFuture<'_, parquet::errors::Result<Bytes>> {
        async move {
            self.store
                .get_range(&self.path, range)
                .await
                .map_err(store_error)
        }
        .boxed()
    }

    fn get_byte_ranges(
        &mut self,
        ranges: Vec<Range<u64>>,
    ) -> BoxFuture<'_, parquet::errors::Result<Vec<Bytes>>> {
        async move {
            self.store
                .get_ranges(&self.path, &ranges)
                .await
                .map_err(store_error)
        }
        .boxed()
    }

    fn get_metadata<'a>(
        &'a mut self,
        options: Option<&'a ArrowReaderOptions>,
    ) -> BoxFuture<'a, parquet::errors::Result<Arc<ParquetMetaData>>> {
        async move {
            let size = self.size;
            let metadata = ParquetMetaDataReader::new()
                .with_arrow_reader_options(options)
                .load_and_finish(&mut *self, size)
                .await?;
            Ok(Arc::new(metadata))
        }
        .boxed()
    }
}

/// The row groups with a page that may hold one of the keys, and the rows
/// of those pages; `None` when the file has no page index for the key.
fn pages_for(
    metadata: &ArrowReaderMetadata,
    key_column: usize,
    keys: &[KeyValue<'_>],
) -> Option<(Vec<usize>, RowSelection)> {
    let parquet = metadata.metadata();
    let column_index = parquet.column_index()?;
    let offset_index = parquet.offset_index()?;
    let mut row_groups = Vec::new();
    let mut selectors = Vec::new();
    for (rg, group) in parquet.row_groups().iter().enumerate() {
        let index = column_index.get(rg)?.get(key_column)?;
        let pages = offset_index.get(rg)?.get(key_column)?.page_locations();
        let rows = group.num_rows() as usize;
        let mut group_selectors = Vec::new();
        let mut any = false;
        for (page, location) in pages.iter().enumerate() {
            let first = location.first_row_index as usize;
            let end = pages
                .get(page + 1)
                .map_or(rows, |next| next.first_row_index as usize);
            let hit = keys.iter().any(|k| k.in_page(index, page).unwrap_or(true));
            any |= hit;
            group_selectors.push(if hit {
                RowSelector::select(end - first)
            } else {
                RowSelector::skip(end - first)
            });
        }
        if any {
            row_groups.push(rg);
            selectors.extend(group_selectors);
        }
    }
    Some((row_groups, RowSelection::from(selectors)))
}
