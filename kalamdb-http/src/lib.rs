//! KalamDB's HTTP layer: poem + poem-openapi. It never touches storage; it
//! authenticates, calls [`kalamdb_engine::Engine`] and shapes responses.

pub mod api;
pub mod arrow;
pub mod auth_error;
pub mod config;
pub mod error;
pub mod metrics;
pub mod pg;
pub mod row;
pub mod token;
pub mod ws;
pub mod ws_api;

use std::sync::Arc;

use poem::endpoint::BoxEndpoint;
use poem::http::StatusCode;
use poem::middleware::Cors;
use poem::{Endpoint, EndpointExt, IntoResponse, Request, Response, Route};
use poem_openapi::OpenApiService;

pub use api::AppState;
pub use config::Config;

use api::{AuthApi, HealthApi, SqlApi};
use auth_error::AuthFailure;
use error::{ErrorResponse, code_for_status};
use metrics::MetricsApi;
use ws_api::LiveApi;

/// The OpenAPI service: every documented operation.
pub fn openapi_service() -> OpenApiService<(HealthApi, AuthApi, SqlApi, LiveApi, MetricsApi), ()> {
    OpenApiService::new(
        (HealthApi, AuthApi, SqlApi, LiveApi, MetricsApi),
        "KalamDB",
        env!("CARGO_PKG_VERSION"),
    )
    .description(
        "SQL database server for apps whose data belongs to their users: per-user tables, \
             live queries and two-tier storage. Log in with POST /api/auth/login, then send \
             `Authorization: Bearer <access_token>`.",
    )
    .license("Apache-2.0")
}

/// The OpenAPI document as served at `/api/openapi.json`.
pub fn openapi_json() -> String {
    openapi_service().spec()
}

/// Knobs of the HTTP layer that come from [`Config`].
#[derive(Debug, Clone)]
pub struct HttpOptions {
    pub cors_origins: Vec<String>,
    pub max_request_bytes: usize,
    pub ws: ws::WsLimits,
    /// Who may read `GET /metrics` without a dba/system token.
    pub metrics_access: config::MetricsAccess,
}

/// The whole application, ready to serve or to test in-process.
pub fn app(state: Arc<AppState>, options: &HttpOptions) -> BoxEndpoint<'static, Response> {
    let api = openapi_service();
    let spec = api.spec_endpoint();
    let swagger = api.swagger_ui();
    let max_bytes = options.max_request_bytes;
    let metrics = state.engine.metrics().clone();
    let routes = Arc::new(metrics::known_routes());
    Route::new()
        .at("/api/openapi.json", spec)
        .nest("/swagger", swagger)
        .nest("/", api)
        .around(arrow::arrow_sql)
        .with(cors(&options.cors_origins))
        .around(move |ep, req| limit_body(ep, req, max_bytes))
        .around(move |ep, req| metrics::observe(ep, req, metrics.clone(), routes.clone()))
        .data(state)
        .data(options.ws)
        .data(options.metrics_access)
        .catch_all_error(json_error)
        .map_to_response()
        .boxed()
}

fn cors(origins: &[String]) -> Cors {
    let cors = Cors::new()
        .allow_methods(["GET", "POST", "OPTIONS"])
        .allow_headers(["authorization", "content-type"]);
    if origins.iter().any(|o| o == "*") {
        cors
    } else {
        cors.allow_origins(origins.iter().map(String::as_str))
    }
}

/// Refuses bodies over `max_bytes` with 413, whether or not the client sent
/// a Content-Length.
async fn limit_body<E: Endpoint>(
    ep: Arc<E>,
    mut req: Request,
    max_bytes: usize,
) -> poem::Result<Response> {
    let too_large = || {
        poem::Error::from_string(
            format!("the request body is larger than the limit of {max_bytes} bytes"),
            StatusCode::PAYLOAD_TOO_LARGE,
        )
    };
    let declared = req
        .headers()
        .get(poem::http::header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|len| len > max_bytes as u64) {
        return Err(too_large());
    }
    let body = req.take_body();
    let bytes = body
        .into_bytes_limit(max_bytes)
        .await
        .map_err(|e| match e {
            poem::error::ReadBodyError::PayloadTooLarge => too_large(),
            other => other.into(),
        })?;
    let path = req.uri().path().to_string();
    req.set_body(bytes.clone());
    match ep.call(req).await {
        Ok(response) => Ok(response.into_response()),
        Err(err) if err.is::<poem_openapi::error::ParseRequestPayloadError>() => {
            Err(poem::Error::from_string(
                describe_bad_payload(&path, &bytes, &err),
                StatusCode::BAD_REQUEST,
            ))
        }
        Err(err) => Err(err),
    }
}

/// Required fields of each JSON request body, to name the one missing.
const REQUIRED_FIELDS: [(&str, &[&str]); 2] = [
    ("/api/sql", &["sql"]),
    ("/api/auth/login", &["username", "password"]),
];

/// A message for an unparsable request body that names the problem: not
/// JSON (with the position), a missing or mistyped field, or poem's own text.
fn describe_bad_payload(path: &str, body: &[u8], err: &poem::Error) -> String {
    let value: serde_json::Value = match serde_json::from_slice(body) {
        Ok(v) => v,
        Err(e) => return format!("the request body is not valid JSON: {e}"),
    };
    let Some(object) = value.as_object() else {
        return "the request body must be a JSON object".into();
    };
    let required = REQUIRED_FIELDS
        .iter()
        .find(|(p, _)| *p == path)
        .map(|(_, fields)| *fields)
        .unwrap_or_default();
    for field in required {
        match object.get(*field) {
            None | Some(serde_json::Value::Null) => {
                return format!("the request body is missing the required field `{field}`");
            }
            Some(v) if !v.is_string() => {
                return format!("the field `{field}` must be a string");
            }
            _ => {}
        }
    }
    format!("invalid request body: {err}")
}

/// Every error the framework raises (bad JSON, missing token, unknown path,
/// body too large) gets the same JSON body as the API's own errors.
async fn json_error(err: poem::Error) -> Response {
    // The API's own error responses already have the JSON body.
    if err.is_from_response() {
        return err.into_response();
    }
    let status = err.status();
    let message = match err.downcast_ref::<AuthFailure>() {
        Some(failure) => failure.0.clone(),
        None if status == StatusCode::UNAUTHORIZED => {
            "missing or malformed Authorization header: send `Authorization: Bearer <token>` from POST /api/auth/login".into()
        }
        None => err.to_string(),
    };
    let body = ErrorResponse::new(code_for_status(status), message);
    let api_error = error::ApiError::with_status(status, body);
    let mut response = api_error.into_response();
    // Keep statuses the shared enum does not list (404, 405, 415…).
    if response.status() != status {
        response.set_status(status);
    }
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The committed document must be what the code generates:
    /// run `./scripts/gen-openapi.sh` after changing the API.
    #[test]
    fn committed_openapi_matches_the_code() {
        let generated: serde_json::Value = serde_json::from_str(&openapi_json()).unwrap();
        let committed: serde_json::Value =
            serde_json::from_str(include_str!("../../openapi/openapi.json")).unwrap();
        assert!(
            generated == committed,
            "openapi/openapi.json is stale: run ./scripts/gen-openapi.sh"
        );
    }

    #[test]
    fn every_operation_has_an_id_and_documents_errors() {
        let spec: serde_json::Value = serde_json::from_str(&openapi_json()).unwrap();
        for (path, item) in spec["paths"].as_object().unwrap() {
            for (method, op) in item.as_object().unwrap() {
                assert!(op["operationId"].is_string(), "{method} {path}");
                assert!(op["summary"].is_string(), "{method} {path}");
                if path != "/health" {
                    for code in ["400", "401", "403", "413", "500"] {
                        assert!(op["responses"][code].is_object(), "{method} {path} {code}");
                    }
                }
            }
        }
        assert!(spec["components"]["securitySchemes"]["BearerAuth"].is_object());
    }
}
