//! `POST /api/sql` with `Accept: application/vnd.apache.arrow.stream`: the
//! last statement's result as an Arrow IPC stream; errors stay JSON.

use arrow_array::Array;
use arrow_array::cast::AsArray;
use arrow_array::types::{Int32Type, Int64Type};
use arrow_ipc::reader::StreamReader;
use kalamdb_tests::TestServer;
use serde_json::{Value, json};

const ARROW: &str = "application/vnd.apache.arrow.stream";

async fn post_arrow(server: &TestServer, token: Option<&str>, body: Value) -> reqwest::Response {
    let mut request = reqwest::Client::new()
        .post(server.url("/api/sql"))
        .header("accept", ARROW)
        .json(&body);
    if let Some(token) = token {
        request = request.bearer_auth(token);
    }
    request.send().await.unwrap()
}

fn decode(bytes: &[u8]) -> (Vec<String>, Vec<arrow_array::RecordBatch>) {
    let reader = StreamReader::try_new(std::io::Cursor::new(bytes.to_vec()), None).unwrap();
    let names = reader
        .schema()
        .fields()
        .iter()
        .map(|f| f.name().clone())
        .collect();
    (names, reader.map(|b| b.unwrap()).collect())
}

#[tokio::test]
async fn the_last_result_comes_back_as_an_arrow_stream_and_errors_stay_json() {
    let (server, root) = TestServer::prepared(
        &[],
        "CREATE NAMESPACE app;
         CREATE USER TABLE app.notes (id INT PRIMARY KEY, body TEXT);
         CREATE USER 'alice' WITH PASSWORD 'pw-a' ROLE user",
    )
    .await;
    let alice = server.token("alice", "pw-a").await;
    server
        .query_ok(
            &alice,
            "INSERT INTO app.notes (id, body) VALUES (1, 'one'), (2, NULL), (3, 'three')",
        )
        .await;
    server
        .query_ok(
            &root,
            "INSERT INTO app.notes (id, body) VALUES (9, 'root only')",
        )
        .await;

    let response = post_arrow(
        &server,
        Some(&alice),
        json!({"sql": "SELECT 1; SELECT id, body, _seq FROM app.notes WHERE id >= $1 ORDER BY id", "params": [2]}),
    )
    .await;
    assert_eq!(response.status(), 200);
    assert_eq!(response.headers()["content-type"], ARROW);
    let (names, batches) = decode(&response.bytes().await.unwrap());
    assert_eq!(names, ["id", "body", "_seq"]);
    let ids: Vec<i32> = batches
        .iter()
        .flat_map(|b| b.column(0).as_primitive::<Int32Type>().values().to_vec())
        .collect();
    assert_eq!(ids, [2, 3], "only alice's rows, typed as INT");
    let bodies: Vec<Option<String>> = batches
        .iter()
        .flat_map(|b| {
            let column = b.column(1).as_string::<i32>().clone();
            (0..column.len())
                .map(move |i| (!column.is_null(i)).then(|| column.value(i).to_string()))
        })
        .collect();
    assert_eq!(bodies, [None, Some("three".into())]);
    assert!(
        batches
            .iter()
            .all(|b| b.column(2).as_primitive::<Int64Type>().len() == b.num_rows())
    );

    // A result the engine builds (DESCRIBE): TEXT columns.
    let response = post_arrow(
        &server,
        Some(&root),
        json!({"sql": "DESCRIBE TABLE app.notes"}),
    )
    .await;
    assert_eq!(response.status(), 200);
    let (names, batches) = decode(&response.bytes().await.unwrap());
    assert_eq!(names[0], "column_name");
    assert_eq!(batches.iter().map(|b| b.num_rows()).sum::<usize>(), 5);

    // Errors are the JSON errors of the JSON API.
    let response = post_arrow(
        &server,
        Some(&alice),
        json!({"sql": "SELECT * FROM app.nope"}),
    )
    .await;
    assert_eq!(response.status(), 400);
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["error"]["code"], "NOT_FOUND", "{body}");
    let response = post_arrow(&server, None, json!({"sql": "SELECT 1"})).await;
    assert_eq!(response.status(), 401);
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["error"]["code"], "UNAUTHORIZED", "{body}");
    let response = post_arrow(&server, Some("not-a-token"), json!({"sql": "SELECT 1"})).await;
    assert_eq!(response.status(), 401);
    let response = reqwest::Client::new()
        .post(server.url("/api/sql"))
        .header("accept", ARROW)
        .bearer_auth(&alice)
        .body("{not json")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 400);
    // Without the Accept header: the JSON API as before.
    let (status, body) = server
        .sql(&alice, "SELECT count(*) AS n FROM app.notes")
        .await;
    assert_eq!(status, 200);
    assert_eq!(body["results"][0]["rows"][0]["n"], "3");
}
