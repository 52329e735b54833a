//! `POST /api/sql` with `Accept: application/vnd.apache.arrow.stream`: the
//! last statement's result as an Arrow IPC stream (DESIGN 4.2). Errors stay
//! JSON, with the same codes and statuses as the JSON response.
//!
//! It sits in front of the OpenAPI service (which describes the JSON
//! response) and takes only requests that ask for Arrow. A query's batches
//! are written as DataFusion produced them; a result the engine builds
//! itself (DDL, `DESCRIBE`, `SHOW`) becomes one batch of TEXT columns.

use std::sync::Arc;
use std::time::Instant;

use datafusion::arrow::array::{ArrayRef, RecordBatch, StringArray};
use datafusion::arrow::datatypes::{DataType, Field, Schema, SchemaRef};
use datafusion::arrow::ipc::writer::StreamWriter;
use kalamdb_engine::StatementResult;
use poem::http::{Method, StatusCode, header};
use poem::{Endpoint, IntoResponse, Request, Response};
use poem_openapi::types::ParseFromJSON;

use crate::AppState;
use crate::api::{SqlRequestBody, run_sql};
use crate::auth_error::AuthFailure;

/// The media type of an Arrow IPC stream.
pub const ARROW_STREAM: &str = "application/vnd.apache.arrow.stream";

/// Answers `POST /api/sql` asking for Arrow; passes every other request on.
pub(crate) async fn arrow_sql<E: Endpoint>(ep: Arc<E>, req: Request) -> poem::Result<Response> {
    let wants_arrow = req.method() == Method::POST
        && req.uri().path() == "/api/sql"
        && req
            .headers()
            .get(header::ACCEPT)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|accept| accept.contains(ARROW_STREAM));
    if !wants_arrow {
        return ep.call(req).await.map(IntoResponse::into_response);
    }
    let state = req
        .data::<Arc<AppState>>()
        .expect("AppState is attached to every request")
        .clone();
    let token = req
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .ok_or_else(|| AuthFailure("a Bearer token is required".into()))?
        .to_string();
    let caller = state.caller_for_token(&token)?;
    let bytes = req.into_body().into_bytes().await?;
    let body = serde_json::from_slice::<serde_json::Value>(&bytes)
        .ok()
        .and_then(|value| SqlRequestBody::parse_from_json(Some(value)).ok())
        .ok_or_else(|| {
            poem::Error::from_string(
                "the request body must be JSON: {\"sql\": \"…\", \"params\": […], \"namespace\": \"…\"}",
                StatusCode::BAD_REQUEST,
            )
        })?;
    let results = match run_sql(&state, &caller, body, Instant::now()).await {
        Ok(results) => results,
        Err(error) => return Ok(error.into_response()),
    };
    let stream = results
        .into_iter()
        .last()
        .map(ipc_stream)
        .unwrap_or_else(|| ipc_stream(StatementResult::default()))
        .map_err(|e| {
            poem::Error::from_string(
                format!("cannot encode the result as Arrow: {e}"),
                StatusCode::INTERNAL_SERVER_ERROR,
            )
        })?;
    Ok(Response::builder().content_type(ARROW_STREAM).body(stream))
}

/// One statement's result as an Arrow IPC stream.
fn ipc_stream(result: StatementResult) -> Result<Vec<u8>, datafusion::arrow::error::ArrowError> {
    let (schema, batches) = match result.arrow {
        Some(arrow) => arrow,
        None => text_batches(&result)?,
    };
    let mut writer = StreamWriter::try_new(Vec::new(), &schema)?;
    for batch in &batches {
        writer.write(batch)?;
    }
    writer.finish()?;
    writer.into_inner()
}

/// A result built as JSON rows, as one batch of nullable TEXT columns.
fn text_batches(
    result: &StatementResult,
) -> Result<(SchemaRef, Vec<RecordBatch>), datafusion::arrow::error::ArrowError> {
    let schema = Arc::new(Schema::new(
        result
            .columns
            .iter()
            .map(|c| Field::new(&c.name, DataType::Utf8, true))
            .collect::<Vec<_>>(),
    ));
    if result.columns.is_empty() {
        return Ok((schema, Vec::new()));
    }
    let columns: Vec<ArrayRef> = result
        .columns
        .iter()
        .map(|c| {
            let cells = result.rows.iter().map(|row| match row.get(&c.name) {
                None | Some(serde_json::Value::Null) => None,
                Some(serde_json::Value::String(s)) => Some(s.clone()),
                Some(other) => Some(other.to_string()),
            });
            Arc::new(StringArray::from_iter(cells)) as ArrayRef
        })
        .collect();
    Ok((schema.clone(), vec![RecordBatch::try_new(schema, columns)?]))
}
