//! Helpers for the engine's unit tests.

use crate::{Caller, Engine, SqlRequest};

/// Runs `sql` as the engine itself and fails the test on any error.
pub(crate) async fn run(engine: &Engine, sql: &str) {
    rows(engine, sql).await;
}

/// Runs `sql` as the engine itself, fails the test on any error, and
/// returns the rows of the last result.
pub(crate) async fn rows(engine: &Engine, sql: &str) -> Vec<serde_json::Value> {
    let mut outcome = engine
        .execute(
            &Caller::internal(),
            SqlRequest {
                sql: sql.into(),
                ..Default::default()
            },
        )
        .await;
    assert!(outcome.error.is_none(), "{sql}: {:?}", outcome.error);
    outcome
        .results
        .pop()
        .map(|r| {
            r.json_rows()
                .unwrap()
                .into_iter()
                .map(serde_json::Value::Object)
                .collect()
        })
        .unwrap_or_default()
}
