//! Test harness: starts the real `kalamdb-server` binary on port 0 with a
//! temporary data directory, reads the `listening on` line, and stops it
//! (SIGTERM, then kill) on drop.
//!
//! The binary is found next to the test executable (`target/<profile>/`), or
//! at `$KALAMDB_SERVER_BIN`. Build it first: `cargo build --bin kalamdb-server`
//! (the README's test command does).

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

use serde_json::{Value, json};

/// Password of `root` in servers started by [`TestServer::start`].
pub const ROOT_PASSWORD: &str = "test-root-password";

/// Server settings for tests that flush and compact only when they say so.
pub const MANUAL_ONLY: [(&str, &str); 3] = [
    ("KALAMDB_FLUSH_ROWS", "0"),
    ("KALAMDB_FLUSH_INTERVAL_SECS", "0"),
    ("KALAMDB_COMPACT_MIN_FILES", "0"),
];

pub struct TestServer {
    child: Option<Child>,
    /// `http://127.0.0.1:PORT`
    pub base_url: String,
    data_dir: tempfile::TempDir,
    env: Vec<(String, String)>,
    pub client: reqwest::Client,
    /// The `postgres listening on` address, once printed.
    pg: std::sync::Mutex<(Option<String>, Option<mpsc::Receiver<String>>)>,
}

/// Path of the server binary.
pub fn server_binary() -> PathBuf {
    if let Ok(path) = std::env::var("KALAMDB_SERVER_BIN") {
        return PathBuf::from(path);
    }
    let exe = std::env::current_exe().expect("test executable path");
    // Tests run from target/<profile>/deps/, tools from target/<profile>/.
    let name = format!("kalamdb-server{}", std::env::consts::EXE_SUFFIX);
    let bin = exe
        .ancestors()
        .skip(1)
        .take(2)
        .map(|dir| dir.join(&name))
        .find(|candidate| candidate.exists())
        .unwrap_or_else(|| exe.parent().unwrap_or(Path::new(".")).join(&name));
    assert!(
        bin.exists(),
        "{} does not exist: run `cargo build --bin kalamdb-server` first or set KALAMDB_SERVER_BIN",
        bin.display()
    );
    bin
}

impl TestServer {
    /// A fresh server with `root` / [`ROOT_PASSWORD`].
    pub fn start() -> Self {
        Self::start_with(&[])
    }

    /// A fresh server with extra environment variables.
    pub fn start_with(env: &[(&str, &str)]) -> Self {
        let mut all = vec![(
            "KALAMDB_ROOT_PASSWORD".to_string(),
            ROOT_PASSWORD.to_string(),
        )];
        all.extend(env.iter().map(|(k, v)| (k.to_string(), v.to_string())));
        let data_dir = tempfile::tempdir().expect("temp dir");
        Self::spawn(data_dir, all)
    }

    /// A server on a copy of the data directory `fixture` (one written by
    /// an earlier release, say), with root's password [`ROOT_PASSWORD`].
    pub fn start_on_copy(fixture: &Path) -> Self {
        fn copy(from: &Path, to: &Path) {
            std::fs::create_dir_all(to).expect("create dir");
            for entry in std::fs::read_dir(from).expect("read fixture") {
                let entry = entry.expect("fixture entry");
                let target = to.join(entry.file_name());
                if entry.file_type().expect("file type").is_dir() {
                    copy(&entry.path(), &target);
                } else {
                    std::fs::copy(entry.path(), &target).expect("copy fixture file");
                }
            }
        }
        let data_dir = tempfile::tempdir().expect("temp dir");
        copy(fixture, &data_dir.path().join("data"));
        let env = vec![(
            "KALAMDB_ROOT_PASSWORD".to_string(),
            ROOT_PASSWORD.to_string(),
        )];
        Self::spawn(data_dir, env)
    }

    fn spawn(data_dir: tempfile::TempDir, env: Vec<(String, String)>) -> Self {
        let log_path = data_dir.path().join("server.log");
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&log_path)
            .expect("log file");
        let mut command = Command::new(server_binary());
        command
            .env("KALAMDB_LISTEN", "127.0.0.1:0")
            .env("KALAMDB_DATA_DIR", data_dir.path().join("data"))
            .env("KALAMDB_LOG", "info")
            // A port of its own: tests run many servers at once.
            .env("KALAMDB_PG_LISTEN", "127.0.0.1:0")
            .stdout(Stdio::piped())
            .stderr(Stdio::from(log))
            .stdin(Stdio::null());
        for (k, v) in &env {
            command.env(k, v);
        }
        let mut child = command.spawn().expect("start kalamdb-server");
        let stdout = child.stdout.take().expect("stdout");
        let (tx, rx) = mpsc::channel();
        let (pg_tx, pg_rx) = mpsc::channel();
        std::thread::spawn(move || {
            let mut sent = false;
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                if let (false, Some(rest)) = (sent, line.strip_prefix("listening on ")) {
                    let _ = tx.send(rest.trim().to_string());
                    sent = true;
                }
                if let Some(rest) = line.strip_prefix("postgres listening on ") {
                    let _ = pg_tx.send(rest.trim().to_string());
                }
            }
        });
        let base_url = match rx.recv_timeout(Duration::from_secs(60)) {
            Ok(url) => url,
            Err(_) => {
                let _ = child.kill();
                let log = std::fs::read_to_string(&log_path).unwrap_or_default();
                panic!("kalamdb-server did not print its address within 60 s; log:\n{log}");
            }
        };
        TestServer {
            child: Some(child),
            base_url,
            data_dir,
            env,
            client: reqwest::Client::new(),
            pg: std::sync::Mutex::new((None, Some(pg_rx))),
        }
    }

    /// `host:port` of the server's Postgres wire listener.
    pub fn pg_addr(&self) -> String {
        let mut pg = self.pg.lock().unwrap();
        if pg.0.is_none()
            && let Some(rx) = pg.1.take()
        {
            pg.0 = rx.recv_timeout(Duration::from_secs(30)).ok();
        }
        pg.0.clone()
            .expect("the server printed no `postgres listening on` line")
    }

    /// The directory given to the server as `KALAMDB_DATA_DIR`.
    /// The server's process id, while it runs.
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(|c| c.id())
    }

    pub fn data_dir(&self) -> PathBuf {
        self.data_dir.path().join("data")
    }

    /// Starts a server with `env`, runs `setup` as root, and returns the
    /// server and root's token.
    pub async fn prepared(env: &[(&str, &str)], setup: &str) -> (Self, String) {
        let server = Self::start_with(env);
        let root = server.root_token().await;
        server.query_ok(&root, setup).await;
        (server, root)
    }

    /// The server's log so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.data_dir.path().join("server.log")).unwrap_or_default()
    }

    /// Stops the server gracefully and starts it again on the same data.
    pub fn restart(mut self) -> Self {
        self.stop();
        let data_dir =
            std::mem::replace(&mut self.data_dir, tempfile::tempdir().expect("temp dir"));
        let env = std::mem::take(&mut self.env);
        Self::spawn(data_dir, env)
    }

    /// Kills the server with SIGKILL (no shutdown at all) and starts it
    /// again on the same data: what a crash and a restart look like.
    pub fn crash_and_restart(mut self) -> Self {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
        let data_dir =
            std::mem::replace(&mut self.data_dir, tempfile::tempdir().expect("temp dir"));
        let env = std::mem::take(&mut self.env);
        Self::spawn(data_dir, env)
    }

    /// SIGTERM, wait up to 20 s, then SIGKILL. Returns the exit status if it exited.
    pub fn stop(&mut self) -> Option<std::process::ExitStatus> {
        let mut child = self.child.take()?;
        let _ = Command::new("kill")
            .arg("-TERM")
            .arg(child.id().to_string())
            .status();
        for _ in 0..200 {
            if let Ok(Some(status)) = child.try_wait() {
                return Some(status);
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        let _ = child.kill();
        child.wait().ok()
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{}", self.base_url, path)
    }

    /// `GET path` without a token; returns (status, body).
    pub async fn get(&self, path: &str) -> (u16, Value) {
        read(
            self.client
                .get(self.url(path))
                .send()
                .await
                .expect("GET request"),
        )
        .await
    }

    /// Logs in; returns (status, body).
    pub async fn login_raw(&self, username: &str, password: &str) -> (u16, Value) {
        let response = self
            .client
            .post(self.url("/api/auth/login"))
            .json(&json!({"username": username, "password": password}))
            .send()
            .await
            .expect("login request");
        read(response).await
    }

    /// Logs in and returns the access token; panics on failure.
    pub async fn token(&self, username: &str, password: &str) -> String {
        let (status, body) = self.login_raw(username, password).await;
        assert_eq!(status, 200, "login as {username}: {body}");
        body["access_token"]
            .as_str()
            .expect("access_token")
            .to_string()
    }

    pub async fn root_token(&self) -> String {
        self.token("root", ROOT_PASSWORD).await
    }

    /// `POST /api/sql` with a token and a JSON body; returns (status, body).
    pub async fn sql_body(&self, token: &str, body: Value) -> (u16, Value) {
        let response = self
            .client
            .post(self.url("/api/sql"))
            .bearer_auth(token)
            .json(&body)
            .send()
            .await
            .expect("sql request");
        read(response).await
    }

    /// `POST /api/sql` with just `sql`.
    pub async fn sql(&self, token: &str, sql: &str) -> (u16, Value) {
        self.sql_body(token, json!({ "sql": sql })).await
    }

    /// Runs SQL that must fail with `status` and an error message holding
    /// `expected`.
    pub async fn refused(&self, token: &str, sql: &str, status: u16, expected: &str) {
        let (code, body) = self.sql(token, sql).await;
        assert_eq!(code, status, "{sql}: {body}");
        let message = body["error"]["message"].as_str().unwrap_or("");
        assert!(message.contains(expected), "{sql}: {message}");
    }

    /// Runs SQL that must succeed; returns the rows of the last result.
    pub async fn query_ok(&self, token: &str, sql: &str) -> Vec<Value> {
        let (status, body) = self.sql(token, sql).await;
        assert_eq!(status, 200, "{sql}: {body}");
        body["results"]
            .as_array()
            .and_then(|r| r.last())
            .and_then(|r| r["rows"].as_array())
            .cloned()
            .unwrap_or_default()
    }
}

impl TestServer {
    /// The row of a `system.jobs` job once it has finished; panics if it
    /// failed or does not finish within 60 s.
    pub async fn wait_job(&self, token: &str, job_id: &str) -> Value {
        let deadline = std::time::Instant::now() + Duration::from_secs(60);
        loop {
            let rows = self
                .query_ok(
                    token,
                    &format!("SELECT * FROM system.jobs WHERE job_id = '{job_id}'"),
                )
                .await;
            if let Some(job) = rows.first() {
                match job["status"].as_str() {
                    Some("completed") => return job.clone(),
                    Some("failed") => panic!("job {job_id} failed: {job}"),
                    _ => {}
                }
            }
            assert!(
                std::time::Instant::now() < deadline,
                "job {job_id} did not finish"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Runs `FLUSH TABLE …` or `COMPACT TABLE …` and waits for its job.
    pub async fn run_job(&self, token: &str, statement: &str) -> Value {
        let rows = self.query_ok(token, statement).await;
        let job_id = rows[0]["job_id"].as_str().expect("job_id").to_string();
        assert_eq!(rows[0]["status"], "queued");
        self.wait_job(token, &job_id).await
    }
}

/// Status and JSON body (Null if the body is not JSON).
pub async fn read(response: reqwest::Response) -> (u16, Value) {
    let status = response.status().as_u16();
    let text = response.text().await.unwrap_or_default();
    let body = serde_json::from_str(&text).unwrap_or(Value::Null);
    (status, body)
}

impl Drop for TestServer {
    fn drop(&mut self) {
        self.stop();
    }
}

impl TestServer {
    /// Runs `sql` as `token` until `check` holds for its rows; fails after
    /// `timeout`, showing the last rows.
    pub async fn eventually(
        &self,
        token: &str,
        sql: &str,
        timeout: Duration,
        check: impl Fn(&[Value]) -> bool,
    ) -> Vec<Value> {
        let deadline = std::time::Instant::now() + timeout;
        loop {
            let rows = self.query_ok(token, sql).await;
            if check(&rows) {
                return rows;
            }
            assert!(
                std::time::Instant::now() < deadline,
                "condition never held for {sql}: {rows:?}"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
}

/// Parquet files under `dir`, recursively, sorted.
pub fn parquet_files(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let Ok(entries) = std::fs::read_dir(dir) else {
        return out;
    };
    for entry in entries.flatten() {
        let path = entry.path();
        if path.is_dir() {
            out.extend(parquet_files(&path));
        } else if path.extension().is_some_and(|e| e == "parquet") {
            out.push(path);
        }
    }
    out.sort();
    out
}

/// A WebSocket client for `/ws`.
pub mod ws {
    use std::time::Duration;

    use futures::{SinkExt, StreamExt};
    use serde_json::Value;
    use tokio_tungstenite::tungstenite::Message;
    use tokio_tungstenite::tungstenite::client::IntoClientRequest;

    use super::TestServer;

    pub type Socket = tokio_tungstenite::WebSocketStream<
        tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>,
    >;

    /// Opens `/ws`, with `Authorization: Bearer` when a token is given.
    pub async fn try_connect(
        server: &TestServer,
        token: Option<&str>,
    ) -> Result<Socket, tokio_tungstenite::tungstenite::Error> {
        let url = server.base_url.replace("http://", "ws://") + "/ws";
        let mut request = url.into_client_request().expect("ws request");
        if let Some(token) = token {
            request.headers_mut().insert(
                "authorization",
                format!("Bearer {token}").parse().expect("header"),
            );
        }
        tokio_tungstenite::connect_async(request)
            .await
            .map(|(socket, _)| socket)
    }

    pub async fn connect(server: &TestServer, token: Option<&str>) -> Socket {
        try_connect(server, token).await.expect("websocket connect")
    }

    pub async fn send(socket: &mut Socket, value: Value) {
        socket
            .send(Message::Text(value.to_string().into()))
            .await
            .expect("send");
    }

    /// The next JSON message, failing after 10 s.
    pub async fn next(socket: &mut Socket) -> Value {
        loop {
            let message = tokio::time::timeout(Duration::from_secs(10), socket.next())
                .await
                .expect("a message within 10 s")
                .expect("socket open")
                .expect("no socket error");
            if let Message::Text(text) = message {
                return serde_json::from_str(&text).expect("JSON message");
            }
        }
    }

    /// Asserts nothing arrives for a short while.
    pub async fn quiet(socket: &mut Socket) {
        if let Ok(Some(Ok(Message::Text(text)))) =
            tokio::time::timeout(Duration::from_millis(400), socket.next()).await
        {
            panic!("unexpected message {text}");
        }
    }
}
