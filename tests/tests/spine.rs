//! The spine against the real server: health, login, /api/sql, namespaces,
//! users and roles, every documented error code, restart persistence.

use kalamdb_tests::{ROOT_PASSWORD, TestServer, read};
use serde_json::{Value, json};

fn error_code(body: &Value) -> &str {
    body["error"]["code"].as_str().unwrap_or("")
}

fn error_message(body: &Value) -> &str {
    body["error"]["message"].as_str().unwrap_or("")
}

#[tokio::test]
async fn health_needs_no_token() {
    let server = TestServer::start();
    let (status, body) = server.get("/health").await;
    assert_eq!(status, 200);
    assert_eq!(body["status"], "ok");
    assert!(body["version"].as_str().is_some_and(|v| !v.is_empty()));
}

#[tokio::test]
async fn login_gives_a_bearer_token_and_refuses_bad_credentials() {
    let server = TestServer::start();
    let (status, body) = server.login_raw("root", ROOT_PASSWORD).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["token_type"], "Bearer");
    assert_eq!(body["user_id"], "root");
    assert_eq!(body["role"], "system");
    assert!(body["expires_in"].as_u64().unwrap() > 0);
    assert_eq!(body["access_token"].as_str().unwrap().split('.').count(), 3);

    let (status, body) = server.login_raw("root", "wrong").await;
    assert_eq!(status, 401);
    assert_eq!(body["status"], "error");
    assert_eq!(error_code(&body), "UNAUTHORIZED");
    let (status, _) = server.login_raw("nobody", "wrong").await;
    assert_eq!(status, 401);

    // Malformed JSON and missing fields are 400 with a JSON error body.
    let response = server
        .client
        .post(server.url("/api/auth/login"))
        .header("content-type", "application/json")
        .body("{not json")
        .send()
        .await
        .unwrap();
    let (status, body) = read(response).await;
    assert_eq!(status, 400);
    assert_eq!(body["status"], "error");
    let response = server
        .client
        .post(server.url("/api/auth/login"))
        .json(&json!({"username": "root"}))
        .send()
        .await
        .unwrap();
    let (status, body) = read(response).await;
    assert_eq!(status, 400);
    assert!(error_message(&body).contains("password"), "{body}");
}

#[tokio::test]
async fn sql_runs_batches_with_the_documented_shapes() {
    let server = TestServer::start();
    let token = server.root_token().await;
    let (status, body) = server
        .sql(&token, "SELECT 1 AS one, CAST(9007199254740993 AS BIGINT) AS big, 1.5 AS f, true AS b, 'x' AS s, NULL AS n, CAST(7 AS INT) AS i, TIMESTAMP '2024-05-06T07:08:09.123456Z' AS t")
        .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["status"], "success");
    assert!(body["execution_time_ms"].as_f64().is_some());
    let result = &body["results"][0];
    assert_eq!(result["row_count"], 1);
    let row = &result["rows"][0];
    assert_eq!(row["big"], "9007199254740993", "BIGINT is a JSON string");
    assert_eq!(row["one"], "1");
    assert_eq!(row["i"], 7);
    assert_eq!(row["f"], 1.5);
    assert_eq!(row["b"], true);
    assert_eq!(row["s"], "x");
    assert_eq!(row["n"], Value::Null);
    assert_eq!(row["t"], "2024-05-06T07:08:09.123456Z");
    let columns: Vec<_> = result["columns"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| (c["name"].as_str().unwrap(), c["type"].as_str().unwrap()))
        .collect();
    assert_eq!(columns[1], ("big", "BIGINT"));
    assert_eq!(columns[6], ("i", "INT"));
    assert_eq!(columns[7], ("t", "TIMESTAMP"));
    let keys: Vec<_> = row.as_object().unwrap().keys().cloned().collect();
    assert_eq!(
        keys,
        ["one", "big", "f", "b", "s", "n", "i", "t"],
        "rows keep column order"
    );

    // Several statements, in order.
    let (status, body) = server
        .sql(
            &token,
            "CREATE NAMESPACE app; SELECT name FROM system.namespaces; SELECT CURRENT_USER() AS me",
        )
        .await;
    assert_eq!(status, 200, "{body}");
    let results = body["results"].as_array().unwrap();
    assert_eq!(results.len(), 3);
    assert_eq!(results[0]["row_count"], 1);
    assert!(results[0]["message"].as_str().unwrap().contains("app"));
    assert_eq!(results[1]["rows"][0]["name"], "app");
    assert_eq!(results[2]["rows"][0]["me"], "root");
}

#[tokio::test]
async fn the_first_failure_stops_the_batch() {
    let server = TestServer::start();
    let token = server.root_token().await;
    let (status, body) = server
        .sql(
            &token,
            "CREATE NAMESPACE a1; SELECT * FROM app.missing; CREATE NAMESPACE a2",
        )
        .await;
    assert_eq!(status, 400, "{body}");
    assert_eq!(body["status"], "error");
    assert_eq!(body["error"]["statement"], "SELECT * FROM app.missing");
    assert_eq!(
        body["results"].as_array().unwrap().len(),
        1,
        "results of statements before the failure"
    );
    assert!(body["execution_time_ms"].as_f64().is_some());
    let rows = server
        .query_ok(&token, "SELECT name FROM system.namespaces ORDER BY name")
        .await;
    assert_eq!(rows, vec![json!({"name": "a1"})], "a2 never ran");

    // A syntax error in the third statement: the first two still ran.
    let (status, body) = server
        .sql(&token, "CREATE NAMESPACE b1; SELECT 1; SELEC oops")
        .await;
    assert_eq!(status, 400);
    assert_eq!(error_code(&body), "INVALID_SQL");
    assert!(error_message(&body).contains("syntax"), "{body}");
    assert_eq!(body["results"].as_array().unwrap().len(), 2);
}

#[tokio::test]
async fn bad_sql_requests_get_named_errors() {
    let server = TestServer::start();
    let token = server.root_token().await;
    for (sql, code) in [
        ("", "INVALID_SQL"),
        ("   ;  ", "INVALID_SQL"),
        ("FROBNICATE everything", "INVALID_SQL"),
        ("SELECT 'unterminated", "INVALID_SQL"),
        ("CREATE TABLE t (id INT)", "INVALID_SQL"),
        ("SELECT * FROM nowhere.nothing", "NOT_FOUND"),
        ("SELECT * FROM system.nothing", "NOT_FOUND"),
        ("INSERT INTO system.users VALUES ('x')", "QUERY_ERROR"),
    ] {
        let (status, body) = server.sql(&token, sql).await;
        assert_eq!(status, 400, "{sql:?}: {body}");
        assert_eq!(error_code(&body), code, "{sql:?}: {body}");
        assert!(!error_message(&body).is_empty());
    }
    let (status, body) = server.sql(&token, "SELECT * FROM nowhere.nothing").await;
    assert_eq!(status, 400);
    assert!(
        error_message(&body).contains("namespace nowhere does not exist"),
        "{body}"
    );
    server.query_ok(&token, "CREATE NAMESPACE app").await;
    let (_, body) = server.sql(&token, "SELECT * FROM app.messages").await;
    assert_eq!(
        error_message(&body),
        "table app.messages does not exist",
        "{body}"
    );
    let (_, body) = server.sql(&token, "SELECT * FROM messages").await;
    assert!(
        error_message(&body).contains("table messages does not exist"),
        "{body}"
    );

    // Missing `sql`, and malformed JSON.
    let (status, body) = server.sql_body(&token, json!({"query": "SELECT 1"})).await;
    assert_eq!(status, 400);
    assert!(error_message(&body).contains("sql"), "{body}");
    let response = server
        .client
        .post(server.url("/api/sql"))
        .bearer_auth(&token)
        .header("content-type", "application/json")
        .body("{\"sql\": ")
        .send()
        .await
        .unwrap();
    let (status, body) = read(response).await;
    assert_eq!(status, 400);
    assert_eq!(body["status"], "error");

    // Unknown default namespace.
    let (status, body) = server
        .sql_body(&token, json!({"sql": "SELECT 1", "namespace": "ghost"}))
        .await;
    assert_eq!(status, 400);
    assert!(
        error_message(&body).contains("namespace ghost does not exist"),
        "{body}"
    );

    // The server keeps serving.
    assert_eq!(
        server.query_ok(&token, "SELECT 2 AS two").await[0]["two"],
        "2"
    );
}

#[tokio::test]
async fn parameters_bind_to_placeholders() {
    let server = TestServer::start();
    let token = server.root_token().await;
    server
        .query_ok(&token, "CREATE NAMESPACE app; CREATE NAMESPACE other")
        .await;
    let (status, body) = server
        .sql_body(
            &token,
            json!({"sql": "SELECT name FROM system.namespaces WHERE name = $1", "params": ["app"]}),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["results"][0]["rows"], json!([{"name": "app"}]));
    let (status, body) = server
        .sql_body(
            &token,
            json!({"sql": "SELECT $1 + 1 AS n", "params": ["41"]}),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["results"][0]["rows"][0]["n"], "42");
    let (status, body) = server
        .sql_body(
            &token,
            json!({"sql": "SELECT $1 AS a, $2 AS b", "params": [1]}),
        )
        .await;
    assert_eq!(status, 400, "{body}");
    // A batch's parameters serve every statement that uses them.
    let (status, body) = server
        .sql_body(
            &token,
            json!({"sql": "SELECT 1 AS one; SELECT $1 AS a, $2 AS b", "params": ["x", 2]}),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["results"][1]["rows"][0]["a"], "x");
    let (status, body) = server
        .sql_body(&token, json!({"sql": "SELECT $1 AS a", "params": [1, 2]}))
        .await;
    assert_eq!(status, 400, "extra parameters: {body}");
    let (status, _) = server
        .sql_body(&token, json!({"sql": "SELECT 1", "params": [1]}))
        .await;
    assert_eq!(status, 400, "parameters without placeholders");
    let (status, body) = server
        .sql_body(
            &token,
            json!({"sql": "SELECT $1 AS a", "params": [{"x": 1}]}),
        )
        .await;
    assert_eq!(status, 400);
    assert!(error_message(&body).contains("$1"), "{body}");
}

#[tokio::test]
async fn tokens_are_checked() {
    let server = TestServer::start_with(&[("KALAMDB_TOKEN_TTL_SECS", "1")]);
    // No header.
    let response = server
        .client
        .post(server.url("/api/sql"))
        .json(&json!({"sql": "SELECT 1"}))
        .send()
        .await
        .unwrap();
    let (status, body) = read(response).await;
    assert_eq!(status, 401);
    assert_eq!(error_code(&body), "UNAUTHORIZED");
    assert!(error_message(&body).contains("Authorization"), "{body}");
    // Garbage, tampered and alg:none tokens.
    let token = server.root_token().await;
    let (status, _) = server.sql(&token, "SELECT 1").await;
    assert_eq!(status, 200);
    let (status, body) = server.sql("not-a-token", "SELECT 1").await;
    assert_eq!(status, 401, "{body}");
    let mut parts: Vec<String> = token.split('.').map(String::from).collect();
    let tampered_payload = parts[1].replacen(|c: char| c.is_ascii_alphanumeric(), "A", 1);
    parts[1] = if tampered_payload == parts[1] {
        format!("A{}", &parts[1][1..])
    } else {
        tampered_payload
    };
    let (status, _) = server.sql(&parts.join("."), "SELECT 1").await;
    assert_eq!(status, 401);
    let none_header = "eyJhbGciOiJub25lIiwidHlwIjoiSldUIn0";
    let payload = token.split('.').nth(1).unwrap();
    let (status, _) = server
        .sql(&format!("{none_header}.{payload}."), "SELECT 1")
        .await;
    assert_eq!(status, 401);
    // Expired.
    tokio::time::sleep(std::time::Duration::from_millis(2100)).await;
    let (status, body) = server.sql(&token, "SELECT 1").await;
    assert_eq!(status, 401);
    assert!(error_message(&body).contains("expired"), "{body}");
}

#[tokio::test]
async fn namespaces_lifecycle() {
    let server = TestServer::start();
    let token = server.root_token().await;
    server.query_ok(&token, "CREATE NAMESPACE app").await;
    let (status, body) = server.sql(&token, "CREATE NAMESPACE app").await;
    assert_eq!(status, 400);
    assert_eq!(error_code(&body), "ALREADY_EXISTS");
    assert!(error_message(&body).contains("namespace app already exists"));
    server
        .query_ok(&token, "CREATE NAMESPACE IF NOT EXISTS app")
        .await;

    for reserved in ["system", "information_schema"] {
        let (status, body) = server
            .sql(&token, &format!("CREATE NAMESPACE {reserved}"))
            .await;
        assert_eq!(status, 400, "{reserved}");
        assert!(error_message(&body).contains("reserved"), "{body}");
    }
    let (status, _) = server.sql(&token, "CREATE NAMESPACE \"bad-name\"").await;
    assert_eq!(status, 400);

    server
        .query_ok(
            &token,
            "ALTER NAMESPACE app SET OPTIONS (owner = 'team-a', quota = 10)",
        )
        .await;
    server
        .query_ok(&token, "ALTER NAMESPACE app SET OPTIONS (quota = 20)")
        .await;
    let rows = server.query_ok(&token, "SHOW NAMESPACES").await;
    assert_eq!(rows.len(), 1);
    assert_eq!(rows[0]["name"], "app");
    assert_eq!(rows[0]["table_count"], 0);
    let options: Value = serde_json::from_str(rows[0]["options"].as_str().unwrap()).unwrap();
    assert_eq!(options, json!({"owner": "team-a", "quota": 20}));
    let rows = server
        .query_ok(
            &token,
            "SELECT namespace_id, created_at FROM system.namespaces",
        )
        .await;
    assert!(rows[0]["created_at"].as_str().unwrap().ends_with('Z'));

    let (status, body) = server
        .sql(&token, "ALTER NAMESPACE ghost SET OPTIONS (a = 1)")
        .await;
    assert_eq!(status, 400);
    assert!(
        error_message(&body).contains("namespace ghost does not exist"),
        "{body}"
    );

    server.query_ok(&token, "DROP NAMESPACE app").await;
    let (status, body) = server.sql(&token, "DROP NAMESPACE app").await;
    assert_eq!(status, 400);
    assert_eq!(error_code(&body), "NOT_FOUND");
    server
        .query_ok(&token, "DROP NAMESPACE IF EXISTS app")
        .await;
    assert!(server.query_ok(&token, "SHOW NAMESPACES").await.is_empty());
}

#[tokio::test]
async fn roles_limit_ddl_users_and_system_users() {
    let server = TestServer::start();
    let root = server.root_token().await;
    server
        .query_ok(&root, "CREATE USER 'alice' WITH PASSWORD 'alice-pw' ROLE user EMAIL 'alice@example.com'; CREATE USER 'dan' WITH PASSWORD 'dan-pw' ROLE dba")
        .await;
    let (status, body) = server
        .sql(&root, "CREATE USER 'alice' WITH PASSWORD 'x' ROLE user")
        .await;
    assert_eq!(status, 400);
    assert_eq!(error_code(&body), "ALREADY_EXISTS");

    let alice = server.token("alice", "alice-pw").await;
    let (status, body) = server.sql(&alice, "CREATE NAMESPACE nope").await;
    assert_eq!(status, 403, "{body}");
    assert_eq!(error_code(&body), "PERMISSION_DENIED");
    assert!(error_message(&body).contains("dba"), "{body}");
    let (status, _) = server
        .sql(&alice, "CREATE USER 'eve' WITH PASSWORD 'x' ROLE user")
        .await;
    assert_eq!(status, 403);

    // A user sees only their own row of system.users; no password hashes anywhere.
    let rows = server.query_ok(&alice, "SELECT * FROM system.users").await;
    assert_eq!(rows.len(), 1);
    assert_eq!(rows[0]["user_id"], "alice");
    assert_eq!(rows[0]["email"], "alice@example.com");
    assert!(rows[0].get("password_hash").is_none());
    let rows = server
        .query_ok(
            &alice,
            "SELECT user_id FROM system.users WHERE user_id = 'root'",
        )
        .await;
    assert!(rows.is_empty());
    let (status, _) = server
        .sql(&root, "SELECT password_hash FROM system.users")
        .await;
    assert_eq!(status, 400);
    let rows = server
        .query_ok(
            &root,
            "SELECT user_id, role FROM system.users ORDER BY user_id",
        )
        .await;
    assert_eq!(rows.len(), 3);
    assert_eq!(
        server.query_ok(&alice, "SELECT CURRENT_USER() AS me").await[0]["me"],
        "alice"
    );

    // dba manages namespaces and users but cannot grant or touch `system`.
    let dan = server.token("dan", "dan-pw").await;
    server.query_ok(&dan, "CREATE NAMESPACE dans").await;
    let (status, _) = server
        .sql(&dan, "CREATE USER 'evil' WITH PASSWORD 'x' ROLE system")
        .await;
    assert_eq!(status, 403);
    let (status, _) = server
        .sql(&dan, "ALTER USER root SET PASSWORD 'owned'")
        .await;
    assert_eq!(status, 403);

    // A user may change their own password, not their role.
    server
        .query_ok(&alice, "ALTER USER alice SET PASSWORD 'alice-pw-2'")
        .await;
    let (status, _) = server.sql(&alice, "ALTER USER alice SET ROLE dba").await;
    assert_eq!(status, 403);
    let (status, _) = server.login_raw("alice", "alice-pw").await;
    assert_eq!(status, 401);
    let alice = server.token("alice", "alice-pw-2").await;

    // Dropping a user ends their tokens and logins.
    server.query_ok(&root, "DROP USER alice").await;
    let (status, body) = server.sql(&alice, "SELECT 1").await;
    assert_eq!(status, 401, "{body}");
    let (status, _) = server.login_raw("alice", "alice-pw-2").await;
    assert_eq!(status, 401);
    let (status, body) = server.sql(&root, "DROP USER root").await;
    assert_eq!(status, 400, "{body}");
    let (status, _) = server.sql(&root, "DROP USER ghost").await;
    assert_eq!(status, 400);
}

#[tokio::test]
async fn oversized_bodies_get_413() {
    let server = TestServer::start_with(&[("KALAMDB_MAX_REQUEST_BYTES", "2048")]);
    let token = server.root_token().await;
    let big = format!("SELECT '{}'", "x".repeat(4096));
    let (status, body) = server.sql(&token, &big).await;
    assert_eq!(status, 413, "{body}");
    assert_eq!(error_code(&body), "PAYLOAD_TOO_LARGE");
    let (status, _) = server.sql(&token, "SELECT 1").await;
    assert_eq!(status, 200, "still serving");
}

#[tokio::test]
async fn everything_survives_a_restart() {
    let server = TestServer::start();
    let root = server.root_token().await;
    server
        .query_ok(&root, "CREATE NAMESPACE app; ALTER NAMESPACE app SET OPTIONS (k = 'v'); CREATE USER 'bob' WITH PASSWORD 'bob-pw' ROLE service")
        .await;
    let server = server.restart();
    let rows = server
        .query_ok(&root, "SELECT name, options FROM system.namespaces")
        .await;
    assert_eq!(
        rows,
        vec![json!({"name": "app", "options": "{\"k\":\"v\"}"})],
        "old token still valid: secret kept"
    );
    let bob = server.token("bob", "bob-pw").await;
    let rows = server.query_ok(&bob, "SELECT role FROM system.users").await;
    assert_eq!(rows, vec![json!({"role": "service"})]);
    let rows = server
        .query_ok(
            &root,
            "SELECT location_name, location_type FROM system.storage_locations",
        )
        .await;
    assert_eq!(
        rows,
        vec![json!({"location_name": "local", "location_type": "filesystem"})]
    );
}

#[tokio::test]
async fn first_start_generates_and_keeps_the_root_password() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let output = std::process::Command::new(kalamdb_tests::server_binary())
        .env("KALAMDB_LISTEN", "not-an-address")
        .env("KALAMDB_DATA_DIR", &data)
        .output()
        .unwrap();
    assert!(!output.status.success(), "a bad config exits non-zero");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("listen"), "{stderr}");

    let server = TestServer::start_with(&[("KALAMDB_ROOT_PASSWORD", "")]);
    let file = server.data_dir().join("root.password");
    let password = std::fs::read_to_string(&file).expect("root.password written");
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        assert_eq!(
            std::fs::metadata(&file).unwrap().permissions().mode() & 0o777,
            0o600
        );
    }
    assert!(server.log().contains(password.trim()), "logged once");
    server.token("root", password.trim()).await;
}

#[tokio::test]
async fn openapi_document_and_swagger_ui_are_served() {
    let server = TestServer::start();
    let (status, served) = server.get("/api/openapi.json").await;
    assert_eq!(status, 200);
    assert!(served["openapi"].as_str().unwrap().starts_with("3."));
    let committed: Value =
        serde_json::from_str(include_str!("../../openapi/openapi.json")).unwrap();
    assert_eq!(
        served, committed,
        "openapi/openapi.json is what the server serves"
    );
    let response = server
        .client
        .get(server.url("/swagger"))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status().as_u16(), 200);
    let html = response.text().await.unwrap();
    assert!(html.contains("swagger"), "Swagger UI page");
    for external in ["src=\"http", "href=\"http", "src='http", "href='http"] {
        assert!(
            !html.contains(external),
            "Swagger UI must not load assets from the network ({external})"
        );
    }
    assert!(html.contains("SwaggerUIBundle"), "the bundle is inline");

    // CORS preflight.
    let response = server
        .client
        .request(reqwest::Method::OPTIONS, server.url("/api/sql"))
        .header("origin", "http://example.test")
        .header("access-control-request-method", "POST")
        .header(
            "access-control-request-headers",
            "authorization,content-type",
        )
        .send()
        .await
        .unwrap();
    assert!(
        response
            .headers()
            .contains_key("access-control-allow-origin")
    );
}
