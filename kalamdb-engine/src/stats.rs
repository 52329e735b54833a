//! Statistics read at the moment they are asked for: one table's
//! (`SHOW STATS FOR TABLE`), the server's (`SHOW STATS`) and the gauges a
//! `/metrics` scrape sets. Nothing here is kept between calls: counts come
//! from RocksDB, the manifest, `system.jobs` and the live router as they
//! are now.

use std::collections::HashSet;

use kalamdb_model::{JobKind, JobStatus, Timestamp};

use crate::cold::manifest;
use crate::engine::Engine;
use crate::error::Result;
use crate::hot;
use crate::keyspace::Keyspace;
use crate::metrics::Sizes;
use crate::storage::Walk;
use crate::table::keys::{Scope, split_key};
use crate::table::row::StoredRow;
use crate::table::{TableDef, TableId};

/// One table's numbers (`SHOW STATS FOR TABLE`).
#[derive(Debug, Clone, Default, PartialEq)]
pub(crate) struct TableStats {
    /// Row versions in RocksDB that are not tombstones (STREAM: events kept).
    pub hot_rows: u64,
    /// Row versions in Parquet files that are not tombstones. A row updated
    /// or deleted since its flush keeps its flushed version here until a
    /// compaction rewrites the partition.
    pub cold_rows: u64,
    pub parquet_files: u64,
    pub parquet_bytes: u64,
    /// Partitions (users of a USER or STREAM table; 1 for a SHARED table)
    /// holding rows or tombstones in either tier.
    pub partitions: u64,
    /// Tombstones in either tier: deleted rows awaiting their purge after
    /// the table's deleted retention.
    pub deleted_rows: u64,
    /// End of the newest completed flush job of the table that
    /// `system.jobs` still holds.
    pub last_flush: Option<Timestamp>,
    pub live_subscriptions: u64,
}

/// The server's numbers (`SHOW STATS`).
#[derive(Debug, Clone, Default)]
pub(crate) struct ServerStats {
    pub uptime_secs: u64,
    pub ws_connections: u64,
    pub statements_total: u64,
    /// Over the last minute (over the uptime while it is shorter).
    pub statements_per_second: f64,
    pub tables: u64,
    pub sizes: Sizes,
}

impl Engine {
    /// Counts a table's rows in both tiers. Reads every hot row version of
    /// the table (the hot tier is bounded by the flush policy) and the
    /// manifest; never opens a Parquet file.
    pub(crate) fn table_stats(&self, def: &TableDef) -> Result<TableStats> {
        let mut stats = TableStats::default();
        let mut partitions: HashSet<Scope> = HashSet::new();
        let mut last_scope: Option<Scope> = None;
        let storage = self.tables.hot().storage();
        storage.walk(hot::rows(def).family(), |key, value| {
            let row = StoredRow::decode(value)?;
            if row.deleted {
                stats.deleted_rows += 1;
            } else {
                stats.hot_rows += 1;
            }
            // A partition's keys are contiguous: look its scope up once.
            let (scope, _) = split_key(def, key)?;
            if last_scope.as_ref() != Some(&scope) {
                partitions.insert(scope.clone());
                last_scope = Some(scope);
            }
            Ok(Walk::Next)
        })?;
        for (scope, files) in self.tables.cold().cold_partitions(def)? {
            partitions.insert(scope);
            for file in files {
                stats.parquet_files += 1;
                stats.parquet_bytes += file.bytes;
                stats.cold_rows += file.rows.saturating_sub(file.tombstones);
                stats.deleted_rows += file.tombstones;
            }
        }
        stats.partitions = partitions.len() as u64;
        stats.last_flush = self.last_flush(&def.table_id())?;
        stats.live_subscriptions = self.tables.live.on_table(&def.table_id()).len() as u64;
        Ok(stats)
    }

    /// End of the newest completed flush job of a table.
    fn last_flush(&self, table_id: &TableId) -> Result<Option<Timestamp>> {
        Ok(self
            .stores
            .jobs
            .scan_all()?
            .into_iter()
            .filter(|job| {
                job.job_type == JobKind::Flush
                    && job.status == JobStatus::Completed
                    && job.namespace.as_deref() == Some(table_id.namespace())
                    && job.table_name.as_deref() == Some(table_id.name())
            })
            .filter_map(|job| job.end_time)
            .max_by_key(|time| time.0))
    }

    pub(crate) fn server_stats(&self) -> Result<ServerStats> {
        Ok(ServerStats {
            uptime_secs: self.metrics.uptime().as_secs(),
            ws_connections: self.metrics.ws_connections().max(0) as u64,
            statements_total: self.metrics.statements_total(),
            statements_per_second: self.metrics.statements_per_second(),
            tables: self.tables.all().len() as u64,
            sizes: self.sizes()?,
        })
    }

    /// What a scrape measures: RocksDB's own size counters, the manifest's
    /// file sizes and the live router; no file is opened.
    fn sizes(&self) -> Result<Sizes> {
        let storage = self.tables.hot().storage();
        let files = manifest::every_file(storage)?;
        Ok(Sizes {
            rocksdb_bytes: storage.approximate_size()?,
            parquet_bytes: files.iter().map(|f| f.bytes).sum(),
            parquet_files: files.len() as u64,
            live_subscriptions: self.tables.live.count() as u64,
        })
    }

    /// The metrics in Prometheus text exposition format
    /// ([`crate::METRICS_CONTENT_TYPE`]), with the size gauges measured now.
    pub fn render_metrics(&self) -> Result<String> {
        self.metrics.set_sizes(&self.sizes()?);
        self.metrics.encode()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::run;
    use crate::{EngineConfig, session::Caller};
    use kalamdb_model::Role;

    #[tokio::test]
    async fn table_stats_count_both_tiers_and_tombstones() {
        let dir = tempfile::tempdir().unwrap();
        let (engine, _) = Engine::open(EngineConfig::new(dir.path())).unwrap();
        run(
            &engine,
            "CREATE NAMESPACE app; CREATE USER TABLE app.t (id BIGINT PRIMARY KEY, v TEXT);
             CREATE USER 'a' WITH PASSWORD 'pw'; CREATE USER 'b' WITH PASSWORD 'pw'",
        )
        .await;
        let def = engine.tables.get("app", "t").unwrap();
        assert_eq!(engine.table_stats(&def).unwrap(), TableStats::default());
        let as_user = |id: &str| Caller::new(id, Role::User);
        for (user, sql) in [
            ("a", "INSERT INTO app.t VALUES (1, 'x'), (2, 'y'), (3, 'z')"),
            ("b", "INSERT INTO app.t VALUES (1, 'x')"),
            ("a", "DELETE FROM app.t WHERE id = 3"),
        ] {
            let outcome = engine
                .execute(
                    &as_user(user),
                    crate::SqlRequest {
                        sql: sql.into(),
                        ..Default::default()
                    },
                )
                .await;
            assert!(outcome.error.is_none(), "{sql}: {:?}", outcome.error);
        }
        let stats = engine.table_stats(&def).unwrap();
        assert_eq!(
            (stats.hot_rows, stats.deleted_rows, stats.partitions),
            (3, 1, 2)
        );
        assert_eq!((stats.cold_rows, stats.parquet_files), (0, 0));
        assert_eq!(stats.last_flush, None);

        // Flushing user a moves its rows and its tombstone to Parquet.
        engine
            .tables
            .tiers
            .flush_partition(&def, &Scope::User("a".into()))
            .await
            .unwrap();
        let stats = engine.table_stats(&def).unwrap();
        assert_eq!((stats.hot_rows, stats.cold_rows), (1, 2));
        assert_eq!((stats.deleted_rows, stats.partitions), (1, 2));
        assert_eq!(stats.parquet_files, 1);
        assert!(stats.parquet_bytes > 0);

        let sizes = engine.sizes().unwrap();
        assert_eq!(sizes.parquet_files, 1);
        assert_eq!(sizes.parquet_bytes, stats.parquet_bytes);
        assert!(sizes.rocksdb_bytes > 0);
        let text = engine.render_metrics().unwrap();
        assert!(text.contains("kalamdb_parquet_files 1"), "{text}");
    }
}
