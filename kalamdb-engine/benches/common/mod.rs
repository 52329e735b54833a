//! What the engine benchmarks share.

use kalamdb_engine::{Caller, Engine, SqlRequest, StatementResult};

/// Runs a batch as `caller` and returns its results; panics, naming the
/// statement, on any error (a benchmark must not time failures).
pub async fn exec(engine: &Engine, caller: &Caller, sql: String) -> Vec<StatementResult> {
    let outcome = engine
        .execute(
            caller,
            SqlRequest {
                sql,
                ..Default::default()
            },
        )
        .await;
    if let Some(e) = outcome.error {
        let mut statement = e.statement.unwrap_or_default();
        if statement.len() > 300 {
            statement.truncate(300);
            statement.push('…');
        }
        panic!("{statement}: {}", e.error);
    }
    outcome.results
}
