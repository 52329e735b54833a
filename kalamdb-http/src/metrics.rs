//! `GET /metrics` (Prometheus text exposition format) and the middleware
//! that counts every HTTP request by method, route template and status.
//! The metrics themselves live in the engine ([`kalamdb_engine::Metrics`]);
//! their names and labels are listed in docs/http-api.md.

use std::collections::HashSet;
use std::sync::Arc;
use std::time::Instant;

use kalamdb_engine::{METRICS_CONTENT_TYPE, Metrics};
use poem::http::{Method, header};
use poem::web::Data;
use poem::{Endpoint, IntoResponse, PathPattern, Request, Response};
use poem_openapi::payload::Payload;
use poem_openapi::registry::{MetaSchema, MetaSchemaRef};
use poem_openapi::{ApiResponse, OpenApi, SecurityScheme, Tags};

use crate::AppState;
use crate::api::BearerAuth;
use crate::config::MetricsAccess;
use crate::error::{ApiError, ErrorResponse};

#[derive(Tags)]
enum MetricsTags {
    /// Monitoring.
    Metrics,
}

/// Route label of requests that matched no route (unknown paths).
const UNMATCHED: &str = "unmatched";

/// The Prometheus text format, version 0.0.4.
pub struct PrometheusText(pub String);

impl Payload for PrometheusText {
    const CONTENT_TYPE: &'static str = METRICS_CONTENT_TYPE;

    fn schema_ref() -> MetaSchemaRef {
        MetaSchemaRef::Inline(Box::new(MetaSchema {
            description: Some(
                "Metrics in the Prometheus text exposition format 0.0.4; every name and label is listed in docs/http-api.md.",
            ),
            example: Some(serde_json::Value::String(
                "# HELP kalamdb_ws_connections Open WebSocket connections on /ws.\n\
                 # TYPE kalamdb_ws_connections gauge\n\
                 kalamdb_ws_connections 3\n"
                    .into(),
            )),
            ..MetaSchema::new("string")
        }))
    }
}

impl IntoResponse for PrometheusText {
    fn into_response(self) -> Response {
        Response::builder()
            .content_type(METRICS_CONTENT_TYPE)
            .body(self.0)
    }
}

#[derive(ApiResponse)]
pub enum MetricsOk {
    /// The current metrics.
    #[oai(status = 200)]
    Ok(PrometheusText),
}

/// A dba/system Bearer token, or none where `KALAMDB_METRICS_ACCESS` lets
/// requests in without one.
#[derive(SecurityScheme)]
pub enum MetricsAuth {
    Bearer(BearerAuth),
    /// No token, or one that is not valid.
    #[oai(fallback)]
    Anonymous,
}

pub struct MetricsApi;

#[OpenApi(tag = "MetricsTags::Metrics")]
impl MetricsApi {
    /// Prometheus metrics
    ///
    /// The server's metrics in the Prometheus text exposition format
    /// (`text/plain; version=0.0.4`): HTTP requests, SQL statements,
    /// WebSocket connections and live queries, jobs, storage sizes.
    /// A Bearer token of role dba or system is always accepted; a token of
    /// role user or service gets 403. Without a valid token the answer
    /// depends on `KALAMDB_METRICS_ACCESS`: `token` (default) 401,
    /// `loopback` 200 for requests from 127.0.0.0/8 or ::1, `open` 200.
    #[oai(path = "/metrics", method = "get", operation_id = "metrics")]
    async fn metrics(
        &self,
        req: &Request,
        state: Data<&Arc<AppState>>,
        access: Data<&MetricsAccess>,
        auth: MetricsAuth,
    ) -> Result<MetricsOk, ApiError> {
        if !anonymous_allowed(*access.0, req) {
            match auth {
                MetricsAuth::Bearer(BearerAuth(caller)) if caller.role.is_admin() => {}
                MetricsAuth::Bearer(BearerAuth(caller)) => {
                    return Err(ApiError::Forbidden(poem_openapi::payload::Json(
                        ErrorResponse::new(
                            "PERMISSION_DENIED",
                            format!(
                                "GET /metrics requires role dba or system; user {} has role {}",
                                caller.user_id, caller.role
                            ),
                        ),
                    )));
                }
                MetricsAuth::Anonymous => return Err(refused_token(&state, req)),
            }
        }
        let engine = state.engine.clone();
        // Reads RocksDB's counters and the manifest: off the async workers.
        let text = tokio::task::spawn_blocking(move || engine.render_metrics())
            .await
            .map_err(|e| kalamdb_engine::EngineError::Internal(e.to_string()))??;
        Ok(MetricsOk::Ok(PrometheusText(text)))
    }
}

/// Whether this request may read the metrics without a token.
fn anonymous_allowed(access: MetricsAccess, req: &Request) -> bool {
    match access {
        MetricsAccess::Open => true,
        MetricsAccess::Token => false,
        MetricsAccess::Loopback => req
            .remote_addr()
            .as_socket_addr()
            .is_some_and(|addr| addr.ip().to_canonical().is_loopback()),
    }
}

/// The 401 for a request without a usable token: why a token that was sent
/// was refused, or that one is needed.
fn refused_token(state: &AppState, req: &Request) -> ApiError {
    let token = req
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "));
    match token.map(|t| state.caller_for_token(t.trim())) {
        Some(Err(failure)) => ApiError::unauthorized(failure.0),
        _ => ApiError::unauthorized(
            "GET /metrics needs `Authorization: Bearer <token>` of a dba or system user (or KALAMDB_METRICS_ACCESS=loopback|open)",
        ),
    }
}

/// The route templates requests are counted under, besides those poem's
/// router reports: every path of the OpenAPI document (all are fixed
/// paths), so requests answered before routing (an Arrow `/api/sql`, a
/// body too large) keep their route.
pub(crate) fn known_routes() -> HashSet<String> {
    let spec: serde_json::Value = serde_json::from_str(&crate::openapi_json()).unwrap_or_default();
    let mut routes: HashSet<String> = spec["paths"]
        .as_object()
        .map(|paths| paths.keys().cloned().collect())
        .unwrap_or_default();
    routes.insert("/api/openapi.json".into());
    routes
}

/// Records each request in the metrics: method, route template (never the
/// raw path: unknown paths count as `unmatched`), status and time.
pub(crate) async fn observe<E: Endpoint>(
    ep: Arc<E>,
    req: Request,
    metrics: Arc<Metrics>,
    routes: Arc<HashSet<String>>,
) -> poem::Result<Response> {
    let started = Instant::now();
    let method = method_label(req.method());
    let path = req.uri().path().to_string();
    let result = ep.call(req).await.map(IntoResponse::into_response);
    let (status, pattern) = match &result {
        Ok(response) => (response.status(), response.data::<PathPattern>()),
        Err(err) => (err.status(), err.data::<PathPattern>()),
    };
    let route = route_label(pattern.map(|p| p.0.as_ref()), &path, &routes);
    metrics.record_http(method, &route, status.as_u16(), started.elapsed());
    result
}

/// The method, or `OTHER` for one outside the standard set (bounds the
/// label's values).
fn method_label(method: &Method) -> &'static str {
    match *method {
        Method::GET => "GET",
        Method::POST => "POST",
        Method::PUT => "PUT",
        Method::DELETE => "DELETE",
        Method::PATCH => "PATCH",
        Method::HEAD => "HEAD",
        Method::OPTIONS => "OPTIONS",
        Method::TRACE => "TRACE",
        Method::CONNECT => "CONNECT",
        _ => "OTHER",
    }
}

/// The route template of a request: the router's, else a known fixed path,
/// else [`UNMATCHED`].
fn route_label(pattern: Option<&str>, path: &str, routes: &HashSet<String>) -> String {
    if let Some(pattern) = pattern {
        // poem reports a nested service's catch-all as `/prefix/*rest`-like
        // patterns; keep only the fixed prefix for those.
        let fixed = pattern.split("/*").next().unwrap_or(pattern);
        let fixed = fixed.split("/:").next().unwrap_or(fixed);
        // `/swagger` and `/swagger/` are one route.
        let fixed = fixed.trim_end_matches('/');
        if !fixed.is_empty() {
            return fixed.to_string();
        }
    }
    if routes.contains(path) {
        return path.to_string();
    }
    if path == "/swagger" || path.starts_with("/swagger/") {
        return "/swagger".into();
    }
    UNMATCHED.into()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn routes_never_carry_raw_paths() {
        let routes = known_routes();
        assert!(routes.contains("/api/sql"));
        assert!(routes.contains("/metrics"));
        assert_eq!(route_label(None, "/api/sql", &routes), "/api/sql");
        assert_eq!(route_label(None, "/no/such/../path", &routes), UNMATCHED);
        assert_eq!(route_label(None, "/swagger/index.css", &routes), "/swagger");
        assert_eq!(
            route_label(Some("/api/sql"), "/api/sql", &routes),
            "/api/sql"
        );
        assert_eq!(
            route_label(Some("/swagger/*path"), "/swagger/a.js", &routes),
            "/swagger"
        );
        assert_eq!(
            route_label(Some("/swagger/"), "/swagger", &routes),
            "/swagger"
        );
        assert_eq!(method_label(&Method::from_bytes(b"BREW").unwrap()), "OTHER");
    }
}
