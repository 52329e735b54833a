//! The HTTP API: one `#[OpenApi]` impl per area, thin handlers that validate,
//! call the engine and map the result.

use std::sync::Arc;
use std::time::Instant;

use kalamdb_engine::StatementResult;
use kalamdb_engine::{Caller, Engine, SqlRequest};
use poem::Request;
use poem::web::Data;
use poem_openapi::auth::Bearer;
use poem_openapi::payload::Json;
use poem_openapi::{ApiResponse, Object, OpenApi, SecurityScheme, Tags};

use crate::error::{ApiError, ErrorResponse, status_of};
use crate::row::{SqlParam, SqlRow};
use crate::token::TokenIssuer;

/// Shared by all handlers.
pub struct AppState {
    pub engine: Arc<Engine>,
    pub tokens: TokenIssuer,
}

#[derive(Tags)]
enum ApiTags {
    /// Liveness.
    Health,
    /// Logging in.
    Auth,
    /// Running SQL.
    Sql,
}

/// Bearer JWT from `POST /api/auth/login`.
#[derive(SecurityScheme)]
#[oai(ty = "bearer", bearer_format = "JWT", checker = "authenticate")]
pub struct BearerAuth(pub Caller);

/// Resolves a token to the current user; a dropped user's token stops working.
async fn authenticate(req: &Request, bearer: Bearer) -> poem::Result<Caller> {
    let state = req
        .data::<Arc<AppState>>()
        .expect("AppState is attached to every request");
    state.caller_for_token(&bearer.token).map_err(|e| e.into())
}

impl AppState {
    /// The caller a bearer token stands for.
    pub fn caller_for_token(&self, token: &str) -> Result<Caller, crate::auth_error::AuthFailure> {
        use crate::auth_error::AuthFailure;
        let claims = self.tokens.verify(token).map_err(AuthFailure)?;
        match self.engine.user(&claims.sub) {
            Ok(Some(user)) => Ok(Caller::new(user.user_id, user.role)),
            Ok(None) => Err(AuthFailure(format!("user {} no longer exists", claims.sub))),
            Err(e) => Err(AuthFailure(format!("cannot check the token: {e}"))),
        }
    }
}

// ---------------------------------------------------------------- health

/// Server liveness.
#[derive(Debug, Object)]
#[oai(example)]
pub struct HealthResponse {
    /// Always `ok` when the server answers.
    pub status: String,
    /// Server version.
    pub version: String,
}

impl poem_openapi::types::Example for HealthResponse {
    fn example() -> Self {
        HealthResponse {
            status: "ok".into(),
            version: env!("CARGO_PKG_VERSION").into(),
        }
    }
}

#[derive(ApiResponse)]
pub enum HealthOk {
    /// The server is running.
    #[oai(status = 200)]
    Ok(Json<HealthResponse>),
}

pub struct HealthApi;

#[OpenApi(tag = "ApiTags::Health")]
impl HealthApi {
    /// Liveness check
    ///
    /// Answers without authentication while the server runs.
    #[oai(path = "/health", method = "get", operation_id = "health")]
    async fn health(&self) -> HealthOk {
        HealthOk::Ok(Json(HealthResponse {
            status: "ok".into(),
            version: env!("CARGO_PKG_VERSION").into(),
        }))
    }
}

// ---------------------------------------------------------------- auth

/// Credentials.
#[derive(Debug, Object)]
#[oai(example)]
pub struct LoginRequest {
    /// Login name, e.g. `root`.
    pub username: String,
    /// The user's password.
    pub password: String,
}

impl poem_openapi::types::Example for LoginRequest {
    fn example() -> Self {
        LoginRequest {
            username: "root".into(),
            password: "your-root-password".into(),
        }
    }
}

/// An access token.
#[derive(Debug, Object)]
#[oai(example)]
pub struct LoginResponse {
    /// JWT to send as `Authorization: Bearer <access_token>`.
    pub access_token: String,
    /// Always `Bearer`.
    pub token_type: String,
    /// Seconds until the token expires.
    pub expires_in: u64,
    /// Id of the logged-in user: owns its rows, named by its tokens, returned by `CURRENT_USER()`; never given to another account.
    pub user_id: String,
    /// Role of the user: user, service, dba or system.
    pub role: String,
}

impl poem_openapi::types::Example for LoginResponse {
    fn example() -> Self {
        LoginResponse {
            access_token: "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiJyb290In0.signature".into(),
            token_type: "Bearer".into(),
            expires_in: 3600,
            user_id: "root".into(),
            role: "system".into(),
        }
    }
}

#[derive(ApiResponse)]
pub enum LoginOk {
    /// Logged in.
    #[oai(status = 200)]
    Ok(Json<LoginResponse>),
}

pub struct AuthApi;

#[OpenApi(tag = "ApiTags::Auth")]
impl AuthApi {
    /// Log in
    ///
    /// Exchanges a username and password for a bearer token.
    #[oai(path = "/api/auth/login", method = "post", operation_id = "login")]
    async fn login(
        &self,
        state: Data<&Arc<AppState>>,
        body: Json<LoginRequest>,
    ) -> Result<LoginOk, ApiError> {
        let engine = state.engine.clone();
        let LoginRequest { username, password } = body.0;
        // Argon2 is deliberately slow: keep it off the async workers.
        let user = tokio::task::spawn_blocking(move || engine.login(&username, &password))
            .await
            .map_err(|e| kalamdb_engine::EngineError::Internal(e.to_string()))??;
        let token = state.tokens.issue(&user.user_id, user.role).map_err(|e| {
            kalamdb_engine::EngineError::Internal(format!("cannot sign token: {e}"))
        })?;
        Ok(LoginOk::Ok(Json(LoginResponse {
            access_token: token,
            token_type: "Bearer".into(),
            expires_in: state.tokens.ttl_secs(),
            user_id: user.user_id,
            role: user.role.to_string(),
        })))
    }
}

// ---------------------------------------------------------------- sql

/// A batch of SQL statements.
#[derive(Debug, Object)]
#[oai(example)]
pub struct SqlRequestBody {
    /// One or more statements separated by `;`. They run in order; the first failure stops the batch.
    pub sql: String,
    /// Values for `$1`, `$2`, … placeholders, in order; each is cast to the type the statement expects (a BIGINT may be a string). `null` is the same as leaving it out.
    #[oai(skip_serializing_if_is_none, nullable)]
    pub params: Option<Vec<SqlParam>>,
    /// Namespace for unqualified table names; `null` is the same as leaving it out.
    #[oai(skip_serializing_if_is_none, nullable)]
    pub namespace: Option<String>,
}

impl poem_openapi::types::Example for SqlRequestBody {
    fn example() -> Self {
        SqlRequestBody {
            sql: "SELECT name, table_count FROM system.namespaces WHERE name = $1".into(),
            params: Some(vec![SqlParam("app".into())]),
            namespace: None,
        }
    }
}

/// A result column.
#[derive(Debug, Clone, Object, serde::Serialize)]
pub struct SqlColumn {
    /// Column name; the key of this column in every row.
    pub name: String,
    /// SQL type: BIGINT, INT, DOUBLE, BOOLEAN, TEXT, TIMESTAMP, DATE, …
    #[oai(rename = "type")]
    #[serde(rename = "type")]
    pub data_type: String,
}

impl From<&kalamdb_engine::ResultColumn> for SqlColumn {
    fn from(c: &kalamdb_engine::ResultColumn) -> Self {
        SqlColumn {
            name: c.name.clone(),
            data_type: c.data_type.clone(),
        }
    }
}

/// The result of one statement.
#[derive(Debug, Clone, Object, serde::Serialize)]
pub struct SqlResult {
    /// Result columns, in order; empty for DDL/DML statements.
    pub columns: Vec<SqlColumn>,
    /// Result rows; each is a JSON object keyed by column name.
    pub rows: Vec<SqlRow>,
    /// Rows returned (queries) or affected (DDL/DML).
    pub row_count: u64,
    /// Human summary of a DDL/DML statement.
    #[oai(skip_serializing_if_is_none)]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
}

impl From<StatementResult> for SqlResult {
    fn from(r: StatementResult) -> Self {
        // Error responses only: a successful batch is written by `SqlBody`
        // straight from the results.
        let rows = r.json_rows().unwrap_or_default();
        SqlResult {
            columns: r
                .columns
                .into_iter()
                .map(|c| SqlColumn {
                    name: c.name,
                    data_type: c.data_type,
                })
                .collect(),
            rows: rows.into_iter().map(SqlRow).collect(),
            row_count: r.row_count,
            message: r.message,
        }
    }
}

/// Results of a batch that ran completely.
#[derive(Debug, Object, serde::Serialize)]
#[oai(example)]
pub struct SqlResponse {
    /// Always `success`.
    pub status: String,
    /// One result per statement, in order.
    pub results: Vec<SqlResult>,
    /// Time spent on the request, in milliseconds.
    pub execution_time_ms: f64,
}

impl poem_openapi::types::Example for SqlResponse {
    fn example() -> Self {
        let mut row = serde_json::Map::new();
        row.insert("name".into(), "app".into());
        row.insert("table_count".into(), 0.into());
        SqlResponse {
            status: "success".into(),
            results: vec![SqlResult {
                columns: vec![
                    SqlColumn {
                        name: "name".into(),
                        data_type: "TEXT".into(),
                    },
                    SqlColumn {
                        name: "table_count".into(),
                        data_type: "INT".into(),
                    },
                ],
                rows: vec![SqlRow(row)],
                row_count: 1,
                message: None,
            }],
            execution_time_ms: 0.42,
        }
    }
}

#[derive(ApiResponse)]
pub enum SqlOk {
    /// Every statement succeeded.
    #[oai(status = 200)]
    Ok(SqlBody),
}

/// The body of a successful `/api/sql`, documented as [`SqlResponse`] and
/// written as JSON text straight from the results: a query's rows come from
/// its Arrow arrays, with no JSON value built per row or per cell.
pub struct SqlBody(Vec<u8>);

impl SqlBody {
    /// The body, or what stopped encoding it.
    fn encode(results: &[StatementResult], started: Instant) -> Result<Self, String> {
        let fault = |e: &dyn std::fmt::Display| format!("cannot encode the result: {e}");
        let mut out = Vec::with_capacity(256);
        out.extend_from_slice(br#"{"status":"success","results":["#);
        for (i, result) in results.iter().enumerate() {
            if i > 0 {
                out.push(b',');
            }
            let columns: Vec<SqlColumn> = result.columns.iter().map(SqlColumn::from).collect();
            out.extend_from_slice(br#"{"columns":"#);
            serde_json::to_writer(&mut out, &columns).map_err(|e| fault(&e))?;
            out.extend_from_slice(br#","rows":"#);
            result.write_rows(&mut out).map_err(|e| fault(&e))?;
            out.extend_from_slice(br#","row_count":"#);
            out.extend_from_slice(result.row_count.to_string().as_bytes());
            if let Some(message) = &result.message {
                out.extend_from_slice(br#","message":"#);
                serde_json::to_writer(&mut out, message).map_err(|e| fault(&e))?;
            }
            out.push(b'}');
        }
        out.extend_from_slice(br#"],"execution_time_ms":"#);
        let elapsed = started.elapsed().as_secs_f64() * 1000.0;
        serde_json::to_writer(&mut out, &elapsed).map_err(|e| fault(&e))?;
        out.push(b'}');
        Ok(SqlBody(out))
    }
}

impl poem_openapi::payload::Payload for SqlBody {
    const CONTENT_TYPE: &'static str =
        <Json<SqlResponse> as poem_openapi::payload::Payload>::CONTENT_TYPE;

    fn schema_ref() -> poem_openapi::registry::MetaSchemaRef {
        <SqlResponse as poem_openapi::types::Type>::schema_ref()
    }

    fn register(registry: &mut poem_openapi::registry::Registry) {
        <SqlResponse as poem_openapi::types::Type>::register(registry);
    }
}

impl poem::IntoResponse for SqlBody {
    fn into_response(self) -> poem::Response {
        poem::Response::builder()
            .content_type("application/json; charset=utf-8")
            .body(self.0)
    }
}
pub struct SqlApi;

#[OpenApi(tag = "ApiTags::Sql")]
impl SqlApi {
    /// Run SQL
    ///
    /// Runs one or more statements as the authenticated user. On failure the
    /// error names the failed statement and `results` holds those that ran.
    /// With `Accept: application/vnd.apache.arrow.stream` a successful batch
    /// returns the last statement's result as an Arrow IPC stream instead;
    /// errors stay JSON.
    #[oai(path = "/api/sql", method = "post", operation_id = "executeSql")]
    async fn execute(
        &self,
        state: Data<&Arc<AppState>>,
        auth: BearerAuth,
        body: Json<SqlRequestBody>,
    ) -> Result<SqlOk, ApiError> {
        let started = Instant::now();
        let results = run_sql(&state, &auth.0, body.0, started).await?;
        let body = SqlBody::encode(&results, started).map_err(|message| {
            tracing::error!("{message}");
            ApiError::with_status(
                poem::http::StatusCode::INTERNAL_SERVER_ERROR,
                ErrorResponse::new("INTERNAL_ERROR", message),
            )
        })?;
        Ok(SqlOk::Ok(body))
    }
}

/// Runs a request body as `caller`. The results of a batch that ran
/// completely, or the error response naming the failed statement (with the
/// results of those that ran).
pub(crate) async fn run_sql(
    state: &AppState,
    caller: &Caller,
    body: SqlRequestBody,
    started: Instant,
) -> Result<Vec<StatementResult>, ApiError> {
    let request = SqlRequest {
        sql: body.sql,
        params: body
            .params
            .unwrap_or_default()
            .into_iter()
            .map(|p| p.0)
            .collect(),
        namespace: body.namespace,
    };
    let outcome = state.engine.execute(caller, request).await;
    let Some(failure) = outcome.error else {
        return Ok(outcome.results);
    };
    let status = status_of(&failure.error);
    if status.is_server_error() {
        tracing::error!("server fault running SQL: {}", failure.error);
    }
    let mut body = ErrorResponse::new(failure.error.code(), failure.error.to_string());
    body.error.statement = failure.statement;
    body.results = outcome.results.into_iter().map(SqlResult::from).collect();
    body.execution_time_ms = started.elapsed().as_secs_f64() * 1000.0;
    Err(ApiError::with_status(status, body))
}
