//! Helpers for the engine's unit tests.

use crate::{Caller, Engine, SqlRequest};

/// Runs `sql` as the engine itself and fails the test on any error.
pub(crate) async fn run(engine: &Engine, sql: &str) {
    let outcome = engine
        .execute(
            &Caller::internal(),
            SqlRequest {
                sql: sql.into(),
                ..Default::default()
            },
        )
        .await;
    assert!(outcome.error.is_none(), "{sql}: {:?}", outcome.error);
}
