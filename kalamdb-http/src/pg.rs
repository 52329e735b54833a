//! The Postgres wire protocol (version 3.0): `psql`, libpq and drivers such
//! as psycopg run SQL on KalamDB as they would on Postgres.
//!
//! What a connection gets:
//! - password authentication (cleartext, as the listener binds to loopback
//!   by default; put TLS in front of it to expose it) against KalamDB's own
//!   users; the `database` parameter, when it names a namespace, is the
//!   default namespace for unqualified tables;
//! - the simple query protocol (a batch of `;`-separated statements) and the
//!   extended one (Parse / Bind / Describe / Execute / Sync, with `$n`
//!   parameters in text or binary format), results in text format;
//! - every statement runs in its own implicit transaction, as over HTTP:
//!   `BEGIN` is refused rather than pretended;
//! - the same engine, limits and permissions as `/api/sql`; a dropped user's
//!   session ends at its next statement.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use kalamdb_engine::{BatchOutcome, Caller, EngineError, SqlRequest, StatementResult};
use serde_json::Value;
use tokio::io::{AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};

use crate::api::AppState;

/// Protocol version 3.0, and the special startup codes.
const PROTOCOL_3: i32 = 196_608;
const SSL_REQUEST: i32 = 80_877_103;
const GSSENC_REQUEST: i32 = 80_877_104;
const CANCEL_REQUEST: i32 = 80_877_102;
/// Largest startup packet accepted (Postgres uses the same bound).
const MAX_STARTUP_BYTES: usize = 10_000;
/// Named prepared statements, and portals, one connection may keep.
const MAX_PREPARED: usize = 1024;
/// Time a client has to finish its startup and authentication.
const STARTUP_TIMEOUT: Duration = Duration::from_secs(60);

/// Postgres type OIDs of the values KalamDB returns.
mod oid {
    pub const BOOL: u32 = 16;
    pub const BYTEA: u32 = 17;
    pub const INT8: u32 = 20;
    pub const INT2: u32 = 21;
    pub const INT4: u32 = 23;
    pub const TEXT: u32 = 25;
    pub const FLOAT4: u32 = 700;
    pub const FLOAT8: u32 = 701;
    pub const UNKNOWN: u32 = 705;
    pub const VARCHAR: u32 = 1043;
    pub const DATE: u32 = 1082;
    pub const TIMESTAMP: u32 = 1114;
    pub const TIMESTAMPTZ: u32 = 1184;
    pub const NUMERIC: u32 = 1700;
}

/// Listener settings.
#[derive(Debug, Clone)]
pub struct PgOptions {
    /// Largest protocol message accepted after startup (a Query's SQL, a
    /// Bind's parameters); a larger one ends the connection.
    pub max_message_bytes: usize,
}

/// Accepts connections until the task is dropped.
pub async fn serve(listener: tokio::net::TcpListener, state: Arc<AppState>, options: PgOptions) {
    loop {
        let (stream, _) = match listener.accept().await {
            Ok(accepted) => accepted,
            Err(e) => {
                tracing::warn!("postgres listener: accept failed: {e}");
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        let (state, options) = (state.clone(), options.clone());
        tokio::spawn(async move {
            if let Err(e) = connection(stream, state, options).await {
                tracing::debug!("postgres connection ended: {e}");
            }
        });
    }
}

/// A protocol failure that ends the connection.
type Fatal = std::io::Error;

fn protocol_error(message: impl Into<String>) -> Fatal {
    std::io::Error::new(std::io::ErrorKind::InvalidData, message.into())
}

/// Outgoing messages, buffered in `buf` until a flush point, then written
/// in one call.
struct Out {
    writer: OwnedWriteHalf,
    buf: Vec<u8>,
}

impl Out {
    /// Starts a message of type `tag`; [`Out::end`] fills in its length.
    fn begin(&mut self, tag: u8) -> usize {
        self.buf.push(tag);
        let at = self.buf.len();
        self.buf.extend_from_slice(&[0; 4]);
        at
    }

    fn end(&mut self, at: usize) {
        let len = (self.buf.len() - at) as i32;
        self.buf[at..at + 4].copy_from_slice(&len.to_be_bytes());
    }

    fn message(&mut self, tag: u8, body: &[u8]) {
        let at = self.begin(tag);
        self.buf.extend_from_slice(body);
        self.end(at);
    }

    fn cstr(&mut self, s: &str) {
        self.buf.extend_from_slice(s.as_bytes());
        self.buf.push(0);
    }

    fn i16(&mut self, v: i16) {
        self.buf.extend_from_slice(&v.to_be_bytes());
    }

    fn i32(&mut self, v: i32) {
        self.buf.extend_from_slice(&v.to_be_bytes());
    }

    async fn flush(&mut self) -> std::io::Result<()> {
        if !self.buf.is_empty() {
            self.writer.write_all(&self.buf).await?;
            self.buf.clear();
        }
        Ok(())
    }

    fn parameter_status(&mut self, name: &str, value: &str) {
        let at = self.begin(b'S');
        self.cstr(name);
        self.cstr(value);
        self.end(at);
    }

    fn ready(&mut self) {
        self.message(b'Z', b"I");
    }

    /// An ErrorResponse (`FATAL` ends the connection, `ERROR` the command).
    fn error(&mut self, severity: &str, code: &str, message: &str) {
        let at = self.begin(b'E');
        for (field, value) in [
            (b'S', severity),
            (b'V', severity),
            (b'C', code),
            (b'M', message),
        ] {
            self.buf.push(field);
            self.cstr(value);
        }
        self.buf.push(0);
        self.end(at);
    }

    fn engine_error(&mut self, error: &EngineError) {
        self.error("ERROR", sqlstate(error), &error.to_string());
    }

    /// RowDescription for a result's columns, in the formats asked for.
    fn row_description(&mut self, result: &StatementResult, formats: &[i16]) {
        let at = self.begin(b'T');
        self.i16(result.columns.len() as i16);
        for (i, column) in result.columns.iter().enumerate() {
            let (type_oid, size) = pg_type(&column.data_type);
            self.cstr(&column.name);
            self.i32(0); // table oid
            self.i16(0); // column number
            self.i32(type_oid as i32);
            self.i16(size);
            self.i32(-1); // type modifier
            self.i16(format_of(formats, i));
        }
        self.end(at);
    }

    /// One DataRow per row, each column in the format asked for.
    fn data_rows(&mut self, result: &StatementResult, formats: &[i16]) -> Result<(), EngineError> {
        let types: Vec<u32> = result
            .columns
            .iter()
            .map(|c| pg_type(&c.data_type).0)
            .collect();
        for row in result.json_rows()? {
            let at = self.begin(b'D');
            self.i16(result.columns.len() as i16);
            for (i, (column, type_oid)) in result.columns.iter().zip(&types).enumerate() {
                let value = match row.get(&column.name) {
                    None | Some(Value::Null) => None,
                    Some(value) if format_of(formats, i) == 1 => {
                        Some(binary_value(value, *type_oid).map_err(|e| {
                            EngineError::InvalidInput(format!(
                                "column {} cannot be sent in binary format: {e}",
                                column.name
                            ))
                        })?)
                    }
                    Some(value) => Some(text_value(value, *type_oid).into_bytes()),
                };
                match value {
                    None => self.i32(-1),
                    Some(bytes) => {
                        self.i32(bytes.len() as i32);
                        self.buf.extend_from_slice(&bytes);
                    }
                }
            }
            self.end(at);
        }
        Ok(())
    }

    /// CommandComplete with the tag Postgres would send.
    fn complete(&mut self, result: &StatementResult) {
        let n = result.row_count;
        let tag = match result.command.as_str() {
            _ if !result.columns.is_empty() => format!("SELECT {n}"),
            "INSERT" => format!("INSERT 0 {n}"),
            "UPDATE" | "DELETE" => format!("{} {n}", result.command),
            "" => "OK".to_string(),
            other => other.to_string(),
        };
        let at = self.begin(b'C');
        self.cstr(&tag);
        self.end(at);
    }

    /// A whole result: description (for the simple protocol), rows and
    /// completion.
    fn result(&mut self, result: &StatementResult, describe: bool, formats: &[i16]) {
        if describe && !result.columns.is_empty() {
            self.row_description(result, formats);
        }
        if let Err(e) = self.data_rows(result, formats) {
            self.engine_error(&e);
            return;
        }
        self.complete(result);
    }
}

/// Incoming messages.
struct In {
    reader: BufReader<OwnedReadHalf>,
    max_bytes: usize,
}

impl In {
    /// The next message: its type and body.
    async fn message(&mut self) -> std::io::Result<(u8, Vec<u8>)> {
        let tag = self.reader.read_u8().await?;
        let len = self.reader.read_i32().await?;
        if len < 4 || (len as usize - 4) > self.max_bytes {
            return Err(protocol_error(format!(
                "a message of {len} bytes is over the limit of {} (KALAMDB_MAX_REQUEST_BYTES)",
                self.max_bytes
            )));
        }
        let mut body = vec![0; len as usize - 4];
        self.reader.read_exact(&mut body).await?;
        Ok((tag, body))
    }
}

/// Reads the fields of a message body.
struct Fields<'a>(&'a [u8]);

impl<'a> Fields<'a> {
    fn cstr(&mut self) -> Result<&'a str, String> {
        let end = self
            .0
            .iter()
            .position(|b| *b == 0)
            .ok_or("a string field is not terminated")?;
        let s = std::str::from_utf8(&self.0[..end]).map_err(|_| "a string is not UTF-8")?;
        self.0 = &self.0[end + 1..];
        Ok(s)
    }

    fn bytes(&mut self, n: usize) -> Result<&'a [u8], String> {
        if self.0.len() < n {
            return Err("the message is shorter than its fields".into());
        }
        let (head, rest) = self.0.split_at(n);
        self.0 = rest;
        Ok(head)
    }

    fn i16(&mut self) -> Result<i16, String> {
        Ok(i16::from_be_bytes(self.bytes(2)?.try_into().unwrap()))
    }

    fn i32(&mut self) -> Result<i32, String> {
        Ok(i32::from_be_bytes(self.bytes(4)?.try_into().unwrap()))
    }

    fn u8(&mut self) -> Result<u8, String> {
        Ok(self.bytes(1)?[0])
    }

    /// A count field, refused when negative.
    fn count(&mut self) -> Result<usize, String> {
        usize::try_from(self.i16()?).map_err(|_| "a negative count".to_string())
    }
}

/// A statement from Parse.
struct Prepared {
    sql: String,
    /// Parameter type OIDs: as Parse gave them, with the unspecified ones
    /// (0) filled in once the statement is described.
    param_types: Vec<u32>,
    /// Result columns, once described.
    described: Option<Vec<kalamdb_engine::ResultColumn>>,
}

/// A bound statement from Bind; run at its Describe or Execute, whichever
/// comes first, so Describe can say which columns it returns.
struct Portal {
    sql: String,
    params: Vec<Value>,
    /// Result column formats from Bind (0 text, 1 binary).
    formats: Vec<i16>,
    outcome: Option<BatchOutcome>,
    /// Rows already sent by an Execute.
    done: bool,
}

struct Session {
    state: Arc<AppState>,
    caller: Caller,
    /// The password hash the session logged in with: a changed password
    /// ends the session, as it closes the user's WebSockets.
    password_hash: String,
    namespace: Option<String>,
    statements: HashMap<String, Prepared>,
    portals: HashMap<String, Portal>,
    /// After an error in the extended protocol, messages are skipped until
    /// the next Sync.
    failed: bool,
}

async fn connection(
    stream: TcpStream,
    state: Arc<AppState>,
    options: PgOptions,
) -> std::io::Result<()> {
    let _ = stream.set_nodelay(true);
    let (read, write) = stream.into_split();
    let mut input = In {
        reader: BufReader::new(read),
        max_bytes: options.max_message_bytes,
    };
    let mut out = Out {
        writer: write,
        buf: Vec::with_capacity(8 * 1024),
    };
    let startup = tokio::time::timeout(STARTUP_TIMEOUT, startup(&mut input, &mut out, &state))
        .await
        .map_err(|_| protocol_error("startup took too long"))??;
    let Some((caller, password_hash, namespace)) = startup else {
        return out.flush().await;
    };
    let mut session = Session {
        state,
        caller,
        password_hash,
        namespace,
        statements: HashMap::new(),
        portals: HashMap::new(),
        failed: false,
    };
    loop {
        let (tag, body) = input.message().await?;
        if tag == b'X' {
            return Ok(());
        }
        // A dropped user's session ends, as its tokens stop working; so
        // does one whose role or password changed, as its WebSockets do.
        if !session.still_valid() {
            out.error(
                "FATAL",
                "28000",
                &format!(
                    "user {} no longer exists, or its role or password changed: connect again",
                    session.caller.user_id
                ),
            );
            return out.flush().await;
        }
        let flush = session.handle(tag, &body, &mut out).await;
        if flush || out.buf.len() > 64 * 1024 {
            out.flush().await?;
        }
    }
}

/// What a connection logged in as: the caller, its password hash and the
/// default namespace.
type LoggedIn = (Caller, String, Option<String>);

/// Startup and password authentication: who logged in, or `None` when the
/// connection ends here (the reply is in `out`).
async fn startup(
    input: &mut In,
    out: &mut Out,
    state: &Arc<AppState>,
) -> std::io::Result<Option<LoggedIn>> {
    let params = loop {
        let len = input.reader.read_i32().await?;
        if !(8..=MAX_STARTUP_BYTES as i32).contains(&len) {
            return Err(protocol_error(format!(
                "invalid startup packet length {len}"
            )));
        }
        let mut body = vec![0; len as usize - 4];
        input.reader.read_exact(&mut body).await?;
        let code = i32::from_be_bytes(body[..4].try_into().unwrap());
        match code {
            // No TLS here: the client may go on in plain text or give up.
            SSL_REQUEST | GSSENC_REQUEST => {
                out.buf.push(b'N');
                out.flush().await?;
            }
            CANCEL_REQUEST => return Ok(None),
            PROTOCOL_3 => break startup_params(&body[4..]),
            other => {
                out.error(
                    "FATAL",
                    "0A000",
                    &format!(
                        "unsupported frontend protocol {}.{}: KalamDB speaks 3.0",
                        other >> 16,
                        other & 0xffff
                    ),
                );
                return Ok(None);
            }
        }
    };
    let Some(user) = params.get("user").filter(|u| !u.is_empty()).cloned() else {
        out.error("FATAL", "28000", "no user name given in the startup packet");
        return Ok(None);
    };
    out.message(b'R', &3i32.to_be_bytes()); // cleartext password
    out.flush().await?;
    let (tag, body) = input.message().await?;
    if tag != b'p' {
        return Err(protocol_error("expected a password message"));
    }
    let password = Fields(&body).cstr().map_err(protocol_error)?.to_string();
    let engine = state.engine.clone();
    let username = user.clone();
    let login = tokio::task::spawn_blocking(move || engine.login(&username, &password)).await;
    let user_row = match login {
        Ok(Ok(u)) => u,
        Ok(Err(EngineError::Unauthenticated(_))) => {
            out.error(
                "FATAL",
                "28P01",
                &format!("password authentication failed for user \"{user}\""),
            );
            return Ok(None);
        }
        Ok(Err(e)) => {
            out.error("FATAL", sqlstate(&e), &e.to_string());
            return Ok(None);
        }
        Err(e) => {
            out.error("FATAL", "XX000", &format!("login failed: {e}"));
            return Ok(None);
        }
    };
    let namespace = params
        .get("database")
        .filter(|db| state.engine.namespace_exists(db).unwrap_or(false))
        .cloned();
    out.message(b'R', &0i32.to_be_bytes());
    for (name, value) in [
        ("server_version", "15.0 (KalamDB)"),
        ("server_encoding", "UTF8"),
        ("client_encoding", "UTF8"),
        ("DateStyle", "ISO, MDY"),
        ("TimeZone", "UTC"),
        ("integer_datetimes", "on"),
        ("standard_conforming_strings", "on"),
        (
            "application_name",
            params.get("application_name").map_or("", |s| s),
        ),
    ] {
        out.parameter_status(name, value);
    }
    let at = out.begin(b'K'); // BackendKeyData; cancelling is not supported
    out.i32(std::process::id() as i32);
    out.i32(rand::random::<i32>());
    out.end(at);
    out.ready();
    out.flush().await?;
    Ok(Some((
        Caller::new(user_row.user_id, user_row.role),
        user_row.password_hash,
        namespace,
    )))
}

fn startup_params(mut body: &[u8]) -> HashMap<String, String> {
    let mut params = HashMap::new();
    let mut next = || -> Option<String> {
        let end = body.iter().position(|b| *b == 0)?;
        let s = String::from_utf8_lossy(&body[..end]).into_owned();
        body = &body[end + 1..];
        (!s.is_empty()).then_some(s)
    };
    while let (Some(name), Some(value)) = (next(), next()) {
        params.insert(name, value);
    }
    params
}

impl Session {
    fn still_valid(&self) -> bool {
        matches!(self.state.engine.user(&self.caller.user_id),
            Ok(Some(user)) if user.role == self.caller.role && user.password_hash == self.password_hash)
    }

    async fn run(&self, sql: String, params: Vec<Value>) -> BatchOutcome {
        if let Some(refusal) = transaction_statement(&sql) {
            return BatchOutcome {
                results: Vec::new(),
                error: Some(kalamdb_engine::StatementError {
                    error: EngineError::InvalidSql(refusal),
                    statement: None,
                }),
            };
        }
        let request = SqlRequest {
            sql,
            params,
            namespace: self.namespace.clone(),
        };
        self.state.engine.execute(&self.caller, request).await
    }

    /// Handles one message; true when the output should be flushed now.
    async fn handle(&mut self, tag: u8, body: &[u8], out: &mut Out) -> bool {
        match tag {
            b'Q' => {
                self.failed = false;
                match Fields(body).cstr() {
                    Ok(sql) => self.simple_query(sql.to_string(), out).await,
                    Err(e) => out.error("ERROR", "08P01", &e),
                }
                out.ready();
                true
            }
            b'S' => {
                self.failed = false;
                self.portals.remove("");
                out.ready();
                true
            }
            b'H' => true,
            _ if self.failed => false,
            b'P' | b'B' | b'D' | b'E' | b'C' => {
                if let Err(message) = self.extended(tag, body, out).await {
                    out.error("ERROR", "08P01", &message);
                    self.failed = true;
                }
                false
            }
            other => {
                out.error(
                    "ERROR",
                    "08P01",
                    &format!("unsupported message type '{}'", other as char),
                );
                self.failed = true;
                false
            }
        }
    }

    async fn simple_query(&mut self, sql: String, out: &mut Out) {
        if sql.trim().trim_matches(';').trim().is_empty() {
            out.message(b'I', &[]);
            return;
        }
        let outcome = self.run(sql, Vec::new()).await;
        for result in &outcome.results {
            out.result(result, true, &[]);
        }
        if let Some(failure) = outcome.error {
            out.engine_error(&failure.error);
        }
    }

    /// Parse, Bind, Describe, Execute and Close.
    async fn extended(&mut self, tag: u8, body: &[u8], out: &mut Out) -> Result<(), String> {
        let mut fields = Fields(body);
        match tag {
            b'P' => {
                let name = fields.cstr()?.to_string();
                let sql = fields.cstr()?.to_string();
                let count = fields.count()?;
                let param_types = (0..count)
                    .map(|_| fields.i32().map(|t| t as u32))
                    .collect::<Result<Vec<_>, _>>()?;
                if self.statements.len() >= MAX_PREPARED && !self.statements.contains_key(&name) {
                    return Err(format!(
                        "this connection holds {MAX_PREPARED} prepared statements, the limit: close some first"
                    ));
                }
                self.statements.insert(
                    name,
                    Prepared {
                        sql,
                        param_types,
                        described: None,
                    },
                );
                out.message(b'1', &[]);
            }
            b'B' => {
                let portal = fields.cstr()?.to_string();
                let name = fields.cstr()?.to_string();
                let formats = (0..fields.count()?)
                    .map(|_| fields.i16())
                    .collect::<Result<Vec<_>, _>>()?;
                // A binary value needs its type: infer the ones Parse left open.
                // (A statement that cannot be planned fails at Execute.)
                if formats.contains(&1) {
                    let _ = self.describe_statement(&name).await;
                }
                let name = name.as_str();
                let statement = self
                    .statements
                    .get(name)
                    .ok_or_else(|| format!("prepared statement \"{name}\" does not exist"))?;
                let count = fields.count()?;
                let mut params = Vec::with_capacity(count);
                for i in 0..count {
                    let len = fields.i32()?;
                    let format = match formats.len() {
                        0 => 0,
                        1 => formats[0],
                        _ => *formats
                            .get(i)
                            .ok_or("fewer parameter formats than values")?,
                    };
                    let type_oid = statement.param_types.get(i).copied().unwrap_or(0);
                    params.push(match len {
                        -1 => Value::Null,
                        len if len < 0 => return Err("a negative parameter length".into()),
                        len => param_value(fields.bytes(len as usize)?, format, type_oid)
                            .map_err(|e| format!("parameter ${}: {e}", i + 1))?,
                    });
                }
                let formats = (0..fields.count()?)
                    .map(|_| fields.i16())
                    .collect::<Result<Vec<_>, _>>()?;
                if let Some(bad) = formats.iter().find(|f| !matches!(f, 0 | 1)) {
                    return Err(format!("unknown result format code {bad}"));
                }
                let sql = statement.sql.clone();
                if self.portals.len() >= MAX_PREPARED && !self.portals.contains_key(&portal) {
                    return Err(format!(
                        "this connection holds {MAX_PREPARED} portals, the limit: close some first"
                    ));
                }
                self.portals.insert(
                    portal,
                    Portal {
                        sql,
                        params,
                        formats,
                        outcome: None,
                        done: false,
                    },
                );
                out.message(b'2', &[]);
            }
            b'D' => {
                let kind = fields.u8()?;
                let name = fields.cstr()?;
                if kind == b'S' {
                    let name = name.to_string();
                    if let Err(e) = self.describe_statement(&name).await {
                        out.error("ERROR", e.0, &e.1);
                        self.failed = true;
                        return Ok(());
                    }
                    let statement = &self.statements[&name];
                    let at = out.begin(b't');
                    out.i16(statement.param_types.len() as i16);
                    for declared in &statement.param_types {
                        // Left open by the statement: sent as text.
                        out.i32(if *declared == 0 { oid::TEXT } else { *declared } as i32);
                    }
                    out.end(at);
                    match statement.described.as_deref() {
                        Some(columns) if !columns.is_empty() => {
                            let result = StatementResult {
                                columns: columns.to_vec(),
                                ..Default::default()
                            };
                            out.row_description(&result, &[]);
                        }
                        _ => out.message(b'n', &[]),
                    }
                    return Ok(());
                }
                self.run_portal(name).await?;
                let portal = &self.portals[name];
                let outcome = portal.outcome.as_ref().expect("just run");
                match outcome.results.last() {
                    Some(result) if !result.columns.is_empty() && outcome.error.is_none() => {
                        out.row_description(result, &portal.formats)
                    }
                    _ => out.message(b'n', &[]),
                }
            }
            b'E' => {
                let name = fields.cstr()?.to_string();
                self.run_portal(&name).await?;
                let portal = self.portals.get_mut(&name).expect("just run");
                if portal.done {
                    return Err(format!("portal \"{name}\" has already been executed"));
                }
                portal.done = true;
                let outcome = portal.outcome.as_ref().expect("just run");
                for result in &outcome.results {
                    out.result(result, false, &portal.formats);
                }
                if let Some(failure) = &outcome.error {
                    out.engine_error(&failure.error);
                    self.failed = true;
                }
            }
            b'C' => {
                let kind = fields.u8()?;
                let name = fields.cstr()?;
                if kind == b'S' {
                    self.statements.remove(name);
                } else {
                    self.portals.remove(name);
                }
                out.message(b'3', &[]);
            }
            _ => unreachable!("dispatched above"),
        }
        Ok(())
    }

    /// Plans a prepared statement (once) for its parameter types and result
    /// columns. An error is its SQLSTATE and message.
    async fn describe_statement(&mut self, name: &str) -> Result<(), (&'static str, String)> {
        let statement = self.statements.get(name).ok_or_else(|| {
            (
                "26000",
                format!("prepared statement \"{name}\" does not exist"),
            )
        })?;
        if statement.described.is_some() {
            return Ok(());
        }
        let described = self
            .state
            .engine
            .describe(&self.caller, &statement.sql, self.namespace.as_deref())
            .await
            .map_err(|e| (sqlstate(&e), e.to_string()))?;
        let statement = self.statements.get_mut(name).expect("looked up above");
        let count = statement.param_types.len().max(described.params.len());
        statement.param_types.resize(count, 0);
        for (declared, inferred) in statement.param_types.iter_mut().zip(&described.params) {
            if *declared == 0
                && let Some(ty) = inferred
            {
                *declared = pg_type(ty).0;
            }
        }
        statement.described = Some(described.columns);
        Ok(())
    }

    /// Runs a portal once and keeps its outcome.
    async fn run_portal(&mut self, name: &str) -> Result<(), String> {
        let portal = self
            .portals
            .get(name)
            .ok_or_else(|| format!("portal \"{name}\" does not exist"))?;
        if portal.outcome.is_none() {
            let outcome = self.run(portal.sql.clone(), portal.params.clone()).await;
            if let Some(portal) = self.portals.get_mut(name) {
                portal.outcome = Some(outcome);
            }
        }
        Ok(())
    }
}

/// Transaction control is refused: each statement commits on its own.
fn transaction_statement(sql: &str) -> Option<String> {
    let first = sql
        .trim_start()
        .split(|c: char| !c.is_ascii_alphabetic())
        .next()?
        .to_ascii_uppercase();
    matches!(
        first.as_str(),
        "BEGIN" | "START" | "COMMIT" | "END" | "ROLLBACK" | "SAVEPOINT" | "RELEASE"
    )
    .then(|| {
        format!(
            "{first}: KalamDB has no multi-statement transactions; each statement commits on its own (use autocommit)"
        )
    })
}

/// A Bind parameter as the JSON value `/api/sql` takes for `$n`.
fn param_value(bytes: &[u8], format: i16, type_oid: u32) -> Result<Value, String> {
    if format == 0 {
        let text = std::str::from_utf8(bytes).map_err(|_| "the text is not UTF-8")?;
        return Ok(match type_oid {
            oid::INT2 | oid::INT4 | oid::INT8 => text
                .trim()
                .parse::<i64>()
                .map(Value::from)
                .map_err(|_| format!("'{text}' is not an integer"))?,
            oid::FLOAT4 | oid::FLOAT8 | oid::NUMERIC => match text.trim().parse::<i64>() {
                Ok(i) => Value::from(i),
                Err(_) => text
                    .trim()
                    .parse::<f64>()
                    .ok()
                    .and_then(serde_json::Number::from_f64)
                    .map(Value::Number)
                    .ok_or_else(|| format!("'{text}' is not a number"))?,
            },
            oid::BOOL => Value::Bool(matches!(
                text.trim().to_ascii_lowercase().as_str(),
                "t" | "true" | "on" | "yes" | "1"
            )),
            _ => Value::String(text.to_string()),
        });
    }
    let fixed = |n: usize| -> Result<&[u8], String> {
        (bytes.len() == n)
            .then_some(bytes)
            .ok_or_else(|| format!("a binary value of type {type_oid} must be {n} bytes"))
    };
    Ok(match type_oid {
        oid::BOOL => Value::Bool(fixed(1)?[0] != 0),
        oid::INT2 => Value::from(i16::from_be_bytes(fixed(2)?.try_into().unwrap())),
        oid::INT4 => Value::from(i32::from_be_bytes(fixed(4)?.try_into().unwrap())),
        oid::INT8 => Value::from(i64::from_be_bytes(fixed(8)?.try_into().unwrap())),
        oid::FLOAT4 => float(f32::from_be_bytes(fixed(4)?.try_into().unwrap()) as f64)?,
        oid::FLOAT8 => float(f64::from_be_bytes(fixed(8)?.try_into().unwrap()))?,
        oid::TEXT | oid::VARCHAR | oid::UNKNOWN | 0 => {
            Value::String(String::from_utf8(bytes.to_vec()).map_err(|_| "the text is not UTF-8")?)
        }
        oid::NUMERIC => numeric(bytes)?,
        oid::DATE => {
            let days = i32::from_be_bytes(fixed(4)?.try_into().unwrap()) as i64;
            let date = chrono::DateTime::from_timestamp((days + POSTGRES_EPOCH_DAYS) * 86_400, 0)
                .ok_or("the date is out of range")?;
            Value::String(date.format("%Y-%m-%d").to_string())
        }
        oid::TIMESTAMP | oid::TIMESTAMPTZ => {
            let micros = i64::from_be_bytes(fixed(8)?.try_into().unwrap());
            let t = chrono::DateTime::from_timestamp_micros(
                micros + POSTGRES_EPOCH_DAYS * 86_400_000_000,
            )
            .ok_or("the timestamp is out of range")?;
            Value::String(t.format("%Y-%m-%dT%H:%M:%S%.6fZ").to_string())
        }
        other => {
            return Err(format!(
                "binary parameters of type oid {other} are not supported; send it as text"
            ));
        }
    })
}

fn float(v: f64) -> Result<Value, String> {
    serde_json::Number::from_f64(v)
        .map(Value::Number)
        .ok_or_else(|| "NaN and infinities are not accepted as parameters".into())
}

/// A binary NUMERIC (base-10000 digits) as a JSON number.
fn numeric(bytes: &[u8]) -> Result<Value, String> {
    let mut f = Fields(bytes);
    let ndigits = f.count()?;
    let weight = f.i16()? as i32;
    let sign = f.i16()? as u16;
    let dscale = f.count()?;
    if sign == 0xC000 {
        return Err("NaN is not accepted as a parameter".into());
    }
    let digits = (0..ndigits)
        .map(|_| f.i16().map(|d| d as i32))
        .collect::<Result<Vec<_>, _>>()?;
    let mut integer = String::new();
    for w in 0..=weight.max(0) {
        let d = if w <= weight {
            digits.get(w as usize).copied().unwrap_or(0)
        } else {
            0
        };
        if integer.is_empty() {
            if d != 0 || w == weight.max(0) {
                integer = d.to_string();
            }
        } else {
            integer.push_str(&format!("{d:04}"));
        }
    }
    if weight < 0 {
        integer = "0".into();
    }
    let mut fraction = String::new();
    let mut w = weight + 1;
    while (fraction.len()) < dscale {
        let d = if w < 0 {
            0
        } else {
            digits.get(w as usize).copied().unwrap_or(0)
        };
        fraction.push_str(&format!("{d:04}"));
        w += 1;
    }
    fraction.truncate(dscale);
    let text = format!(
        "{}{integer}{}{fraction}",
        if sign == 0x4000 { "-" } else { "" },
        if dscale > 0 { "." } else { "" }
    );
    serde_json::from_str::<serde_json::Number>(&text)
        .map(Value::Number)
        .map_err(|_| format!("'{text}' is not a number"))
}

/// The Postgres type of a KalamDB SQL type name, and its size.
fn pg_type(data_type: &str) -> (u32, i16) {
    match data_type {
        "BIGINT" | "BIGINT UNSIGNED" | "INT UNSIGNED" => (oid::INT8, 8),
        "INT" | "SMALLINT UNSIGNED" => (oid::INT4, 4),
        "SMALLINT" | "TINYINT" | "TINYINT UNSIGNED" => (oid::INT2, 2),
        "DOUBLE" => (oid::FLOAT8, 8),
        "FLOAT" => (oid::FLOAT4, 4),
        "BOOLEAN" => (oid::BOOL, 1),
        "TIMESTAMP" => (oid::TIMESTAMPTZ, 8),
        "DATE" => (oid::DATE, 4),
        "BYTES" => (oid::BYTEA, -1),
        t if t.starts_with("DECIMAL") => (oid::NUMERIC, -1),
        _ => (oid::TEXT, -1),
    }
}

/// A JSON result value in Postgres text format.
fn text_value(value: &Value, type_oid: u32) -> String {
    match (value, type_oid) {
        (Value::Bool(b), _) => if *b { "t" } else { "f" }.to_string(),
        // `2024-01-02T03:04:05.000006Z` as timestamptz prints it.
        (Value::String(s), oid::TIMESTAMPTZ) => {
            match (s.get(..10), s.get(11..s.len().saturating_sub(1))) {
                (Some(date), Some(time)) if s.ends_with('Z') => format!("{date} {time}+00"),
                _ => s.clone(),
            }
        }
        (Value::String(s), oid::BYTEA) => format!("\\x{}", hex(s.as_bytes())),
        (Value::String(s), _) => s.clone(),
        (other, _) => other.to_string(),
    }
}

/// A column's format code from Bind's list: none means text, one applies
/// to every column.
fn format_of(formats: &[i16], column: usize) -> i16 {
    match formats {
        [] => 0,
        [one] => *one,
        many => many.get(column).copied().unwrap_or(0),
    }
}

/// Microseconds and days between 1970-01-01 and Postgres's 2000-01-01.
const POSTGRES_EPOCH_DAYS: i64 = 10_957;

/// A JSON result value in Postgres binary format.
fn binary_value(value: &Value, type_oid: u32) -> Result<Vec<u8>, String> {
    let integer = || -> Result<i64, String> {
        match value {
            Value::Number(n) => n.as_i64().ok_or_else(|| format!("{n} is not an integer")),
            Value::String(s) => s.parse().map_err(|_| format!("'{s}' is not an integer")),
            other => Err(format!("{other} is not an integer")),
        }
    };
    let number = || -> Result<f64, String> {
        match value {
            Value::Number(n) => n.as_f64().ok_or_else(|| format!("{n} is not a number")),
            Value::String(s) => s.parse().map_err(|_| format!("'{s}' is not a number")),
            other => Err(format!("{other} is not a number")),
        }
    };
    let text = || match value {
        Value::String(s) => s.clone(),
        other => other.to_string(),
    };
    Ok(match type_oid {
        oid::BOOL => vec![u8::from(value.as_bool().ok_or("not a boolean")?)],
        oid::INT2 => (integer()? as i16).to_be_bytes().to_vec(),
        oid::INT4 => (integer()? as i32).to_be_bytes().to_vec(),
        oid::INT8 => integer()?.to_be_bytes().to_vec(),
        oid::FLOAT4 => (number()? as f32).to_be_bytes().to_vec(),
        oid::FLOAT8 => number()?.to_be_bytes().to_vec(),
        oid::TIMESTAMPTZ => {
            let t = chrono::DateTime::parse_from_rfc3339(&text())
                .map_err(|e| format!("'{}' is not a timestamp: {e}", text()))?;
            (t.timestamp_micros() - POSTGRES_EPOCH_DAYS * 86_400_000_000)
                .to_be_bytes()
                .to_vec()
        }
        oid::DATE => {
            let d = chrono::NaiveDate::parse_from_str(&text(), "%Y-%m-%d")
                .map_err(|e| format!("'{}' is not a date: {e}", text()))?;
            let days = d
                .signed_duration_since(chrono::NaiveDate::default())
                .num_days();
            ((days - POSTGRES_EPOCH_DAYS) as i32).to_be_bytes().to_vec()
        }
        oid::NUMERIC => numeric_binary(&text())?,
        // TEXT and BYTEA (sent as its text) in binary are their bytes.
        _ => text().into_bytes(),
    })
}

/// A decimal string as a binary NUMERIC: base-10000 digit groups aligned
/// on the decimal point.
fn numeric_binary(text: &str) -> Result<Vec<u8>, String> {
    let (negative, digits) = match text.strip_prefix('-') {
        Some(rest) => (true, rest),
        None => (false, text),
    };
    let (int_part, frac_part) = digits.split_once('.').unwrap_or((digits, ""));
    if int_part.is_empty() && frac_part.is_empty()
        || !int_part
            .bytes()
            .chain(frac_part.bytes())
            .all(|b| b.is_ascii_digit())
    {
        return Err(format!("'{text}' is not a decimal number"));
    }
    // Pad the integer part on the left and the fraction on the right to
    // whole groups of four digits.
    let int_pad = (4 - int_part.len() % 4) % 4;
    let frac_pad = (4 - frac_part.len() % 4) % 4;
    let all = format!(
        "{}{int_part}{frac_part}{}",
        "0".repeat(int_pad),
        "0".repeat(frac_pad)
    );
    let mut groups: Vec<i16> = all
        .as_bytes()
        .chunks(4)
        .map(|c| std::str::from_utf8(c).unwrap().parse().unwrap())
        .collect();
    let mut weight = ((int_part.len() + int_pad) / 4) as i16 - 1;
    while groups.first() == Some(&0) {
        groups.remove(0);
        weight -= 1;
    }
    while groups.last() == Some(&0) {
        groups.pop();
    }
    if groups.is_empty() {
        weight = 0;
    }
    let mut out = Vec::with_capacity(8 + groups.len() * 2);
    out.extend_from_slice(&(groups.len() as i16).to_be_bytes());
    out.extend_from_slice(&weight.to_be_bytes());
    out.extend_from_slice(&(if negative { 0x4000u16 } else { 0 }).to_be_bytes());
    out.extend_from_slice(&(frac_part.len() as i16).to_be_bytes());
    for g in groups {
        out.extend_from_slice(&g.to_be_bytes());
    }
    Ok(out)
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// The SQLSTATE Postgres clients expect for an engine error.
fn sqlstate(error: &EngineError) -> &'static str {
    match error.code() {
        "INVALID_SQL" => "42601",
        "NOT_FOUND" => "42P01",
        "ALREADY_EXISTS" => "42P07",
        "PERMISSION_DENIED" | "FORBIDDEN" => "42501",
        "UNAUTHORIZED" => "28000",
        "CONSTRAINT_VIOLATION" => "23505",
        "LIMIT_EXCEEDED" => "54000",
        "STATEMENT_TIMEOUT" => "57014",
        "UNSUPPORTED" => "0A000",
        "INVALID_INPUT" => "22023",
        "QUERY_ERROR" => "42000",
        _ => "XX000",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn binary_numeric_parameters() {
        // 12345.678: ndigits 3, weight 1, +, dscale 3: [1, 2345, 6780]
        let mut b = Vec::new();
        for v in [3i16, 1, 0, 3, 1, 2345, 6780] {
            b.extend_from_slice(&v.to_be_bytes());
        }
        assert_eq!(numeric(&b).unwrap().to_string(), "12345.678");
        // -0.05: ndigits 1, weight -1, -, dscale 2: [500]
        let mut b = Vec::new();
        for v in [1i16, -1, 0x4000u16 as i16, 2, 500] {
            b.extend_from_slice(&v.to_be_bytes());
        }
        assert_eq!(numeric(&b).unwrap().to_string(), "-0.05");
        // 10000: ndigits 1, weight 1, +, dscale 0: [1]
        let mut b = Vec::new();
        for v in [1i16, 1, 0, 0, 1] {
            b.extend_from_slice(&v.to_be_bytes());
        }
        assert_eq!(numeric(&b).unwrap().to_string(), "10000");
        // And back: what is written reads as the same number.
        for text in ["12345.678", "-0.05", "10000", "0", "0.0001", "123456789.5"] {
            let bytes = numeric_binary(text).unwrap();
            assert_eq!(
                numeric(&bytes).unwrap().to_string().parse::<f64>().unwrap(),
                text.parse::<f64>().unwrap(),
                "{text}"
            );
        }
    }

    #[test]
    fn text_values_follow_postgres() {
        assert_eq!(
            text_value(
                &Value::String("2024-01-02T03:04:05.000006Z".into()),
                oid::TIMESTAMPTZ
            ),
            "2024-01-02 03:04:05.000006+00"
        );
        assert_eq!(text_value(&Value::Bool(true), oid::BOOL), "t");
        assert_eq!(text_value(&Value::String("9".into()), oid::INT8), "9");
        assert!(transaction_statement("  begin;").is_some());
        assert!(transaction_statement("SELECT 1").is_none());
    }
}
