//! `/ws`: live queries over WebSocket (protocol in docs/websocket-protocol.md).
//!
//! One task per connection reads client messages, forwards events from the
//! connection's bounded queue, and notices when the engine had to drop an
//! event for it (queue full): such a client gets `SLOW_CONSUMER` and is
//! disconnected rather than slowing writers or growing memory.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use futures::{SinkExt, StreamExt};
use kalamdb_engine::SubscribeRequest;
use kalamdb_engine::{Caller, Metrics};
use kalamdb_engine::{ChangeEvent, ChangeKind, LiveEvent};
use poem::Request;
use poem::web::websocket::{BoxWebSocketUpgraded, Message, WebSocket, WebSocketStream};
use serde_json::Value;
use tokio::sync::mpsc;

use crate::AppState;
use crate::api::SqlColumn;
use crate::error::ErrorResponse;
use crate::row::SqlRow;
use crate::ws_api::{
    AuthenticatedMessage, ChangeMessage, ChangeType, InitialDataMessage, PongMessage,
    ServerMessage, SubscribedMessage, UnsubscribeReason, UnsubscribedMessage,
};

/// How long an unauthenticated socket may wait before its `authenticate` message.
const AUTH_TIMEOUT: Duration = Duration::from_secs(5);
/// How long a send may wait for a client that stopped reading. Writers are
/// never blocked meanwhile: events queue (bounded) and overflow marks the
/// connection as a slow consumer.
const SEND_TIMEOUT: Duration = Duration::from_secs(30);
/// Bytes read from a WebSocket at a time.
const READ_BUFFER_BYTES: usize = 4 * 1024;
/// Queued changes written to a socket with one flush, at most.
const WRITE_BATCH: usize = 256;

/// Per-connection limits (configuration `ws_max_subscriptions`, `ws_queue_capacity`).
#[derive(Debug, Clone, Copy)]
pub struct WsLimits {
    pub max_subscriptions: usize,
    pub queue_capacity: usize,
    /// Largest client message; a bigger one closes the connection.
    pub max_message_bytes: usize,
}
/// Initial rows per `initial_data` message unless the client asks otherwise.
const DEFAULT_BATCH_SIZE: usize = 1000;

/// Checks an Authorization header, if any, and upgrades the connection.
/// The error is the reason a token was refused.
pub fn upgrade(
    ws: WebSocket,
    req: &Request,
    state: Arc<AppState>,
    limits: WsLimits,
) -> Result<BoxWebSocketUpgraded, String> {
    let header = req
        .headers()
        .get(poem::http::header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .map(|v| v.strip_prefix("Bearer ").unwrap_or(v).trim().to_string());
    let caller = match header {
        Some(token) => Some(state.caller_for_token(&token).map_err(|e| e.0)?),
        None => None,
    };
    // Client messages are small (subscribe, unsubscribe, pong): a read
    // buffer of 128 KiB, the default, was most of what an idle connection
    // cost (1.2 GiB for 10,000 connections). Larger frames still arrive,
    // in more reads.
    let config = poem::web::websocket::WebSocketConfig::default()
        .read_buffer_size(READ_BUFFER_BYTES)
        .max_message_size(Some(limits.max_message_bytes))
        .max_frame_size(Some(limits.max_message_bytes));
    Ok(ws
        .config(config)
        .on_upgrade(move |socket| connection(state, socket, caller, limits))
        .boxed())
}

fn error_message(subscription_id: Option<&str>, code: &str, message: &str) -> ServerMessage {
    ServerMessage::error(subscription_id, code, message)
}

struct Connection {
    id: String,
    state: Arc<AppState>,
    caller: Caller,
    /// Client subscription id → live id.
    subscriptions: HashMap<String, String>,
    events: mpsc::Sender<LiveEvent>,
    overflowed: Arc<AtomicBool>,
    max_subscriptions: usize,
}

/// Writes one message and flushes it.
async fn send(
    sink: &mut futures::stream::SplitSink<WebSocketStream, Message>,
    message: ServerMessage,
) -> bool {
    feed(sink, message.to_text()).await && flush(sink).await
}

/// Queues a message on the socket without flushing it.
async fn feed(
    sink: &mut futures::stream::SplitSink<WebSocketStream, Message>,
    text: String,
) -> bool {
    matches!(
        tokio::time::timeout(SEND_TIMEOUT, sink.feed(Message::Text(text))).await,
        Ok(Ok(()))
    )
}

async fn flush(sink: &mut futures::stream::SplitSink<WebSocketStream, Message>) -> bool {
    matches!(
        tokio::time::timeout(SEND_TIMEOUT, sink.flush()).await,
        Ok(Ok(()))
    )
}

/// [`send`], counting a change message the client was given.
async fn deliver(
    sink: &mut futures::stream::SplitSink<WebSocketStream, Message>,
    message: ServerMessage,
    metrics: &Metrics,
) -> bool {
    let is_change = matches!(message, ServerMessage::Change(_));
    let sent = send(sink, message).await;
    if sent && is_change {
        metrics.change_delivered();
    }
    sent
}

async fn authenticate(
    state: &AppState,
    stream: &mut futures::stream::SplitStream<WebSocketStream>,
) -> Result<Caller, (&'static str, String)> {
    let first = tokio::time::timeout(AUTH_TIMEOUT, stream.next())
        .await
        .map_err(|_| {
            (
                "AUTH_TIMEOUT",
                "send {\"type\":\"authenticate\",\"token\":\"…\"} within 5 seconds".to_string(),
            )
        })?;
    let Some(Ok(Message::Text(text))) = first else {
        return Err((
            "UNAUTHORIZED",
            "the first message must be an authenticate message".into(),
        ));
    };
    let message: Value = serde_json::from_str(&text)
        .map_err(|e| ("INVALID_MESSAGE", format!("not valid JSON: {e}")))?;
    if message["type"] != "authenticate" {
        return Err((
            "UNAUTHORIZED",
            "authenticate first: {\"type\":\"authenticate\",\"token\":\"…\"}".into(),
        ));
    }
    let token = message["token"].as_str().unwrap_or_default();
    state
        .caller_for_token(token)
        .map_err(|e| ("UNAUTHORIZED", e.0))
}

async fn connection(
    state: Arc<AppState>,
    socket: WebSocketStream,
    caller: Option<Caller>,
    limits: WsLimits,
) {
    let metrics = state.engine.metrics().clone();
    let _open = metrics.ws_connection();
    let (mut sink, mut stream) = socket.split();
    // Listening before the caller is checked: a user dropped after the
    // check is then always noticed.
    let mut revocations = state.engine.revocations();
    let caller = match caller {
        Some(caller) => caller,
        None => match authenticate(&state, &mut stream).await {
            Ok(caller) => {
                let message = ServerMessage::Authenticated(AuthenticatedMessage {
                    user_id: caller.user_id.clone(),
                });
                send(&mut sink, message).await;
                caller
            }
            Err((code, message)) => {
                send(&mut sink, error_message(None, code, &message)).await;
                let _ = sink.close().await;
                return;
            }
        },
    };
    if !still_valid(&state, &caller) {
        send(&mut sink, revoked_message(&caller)).await;
        let _ = sink.close().await;
        return;
    }
    let (events, mut receiver) = mpsc::channel(limits.queue_capacity);
    let mut connection = Connection {
        id: format!("conn-{:016x}", rand::random::<u64>()),
        state,
        caller,
        subscriptions: HashMap::new(),
        events,
        overflowed: Arc::new(AtomicBool::new(false)),
        max_subscriptions: limits.max_subscriptions,
    };
    // A safety net only: a queue overflows when it is full, so the loop
    // has events to take and sees the flag at its next turn. (At 100 ms,
    // 10,000 idle connections woke 100,000 times a second.)
    let mut tick = tokio::time::interval(Duration::from_secs(5));
    loop {
        // A connection whose queue overflowed gets SLOW_CONSUMER as soon as
        // its socket takes another frame, then is closed.
        if connection.overflowed.load(Ordering::Relaxed) {
            metrics.slow_consumer();
            send(
                &mut sink,
                error_message(
                    None,
                    "SLOW_CONSUMER",
                    "the client did not keep up with its changes; reconnect and resume with from_seq",
                ),
            )
            .await;
            break;
        }
        tokio::select! {
            incoming = stream.next() => match incoming {
                Some(Ok(Message::Text(text))) => {
                    let replies = connection.handle(&text).await;
                    let mut ok = true;
                    for reply in replies {
                        ok &= deliver(&mut sink, reply, &metrics).await;
                    }
                    if !ok {
                        break;
                    }
                }
                Some(Ok(Message::Binary(_))) => {
                    if !send(&mut sink, error_message(None, "INVALID_MESSAGE", "send JSON text frames")).await {
                        break;
                    }
                }
                Some(Ok(Message::Close(_))) | None | Some(Err(_)) => break,
                Some(Ok(_)) => {}
            },
            Some(event) = receiver.recv() => {
                // The changes already queued go out in one write: with a
                // hundred subscriptions on a connection, one commit is a
                // hundred messages but one system call.
                let mut next = Some(event);
                let mut queued = 0;
                let mut sent = true;
                while let Some(event) = next.take() {
                    let (message, is_change) = match event {
                        LiveEvent::Change(change) => (change_text(&change), true),
                        LiveEvent::Ended { subscription_id, reason } => {
                            connection.subscriptions.remove(&subscription_id);
                            (unsubscribed(subscription_id, reason).to_text(), false)
                        }
                    };
                    sent = feed(&mut sink, message).await;
                    if sent && is_change {
                        metrics.change_delivered();
                    }
                    queued += 1;
                    if !sent || queued == WRITE_BATCH {
                        break;
                    }
                    next = receiver.try_recv().ok();
                }
                if !(sent && flush(&mut sink).await) {
                    break;
                }
            }
            revoked = revocations.recv() => {
                let ended = match revoked {
                    Ok(user_id) => user_id == connection.caller.user_id,
                    // Missed some: check this user directly.
                    Err(tokio::sync::broadcast::error::RecvError::Lagged(_)) => {
                        !still_valid(&connection.state, &connection.caller)
                    }
                    // The engine is shutting down.
                    Err(tokio::sync::broadcast::error::RecvError::Closed) => true,
                };
                if ended {
                    send(&mut sink, revoked_message(&connection.caller)).await;
                    break;
                }
            }
            // Wakes an idle loop to look at the overflow flag again.
            _ = tick.tick() => {}
        }
    }
    // A client that stopped reading may never take the close frame.
    let _ = tokio::time::timeout(Duration::from_secs(1), sink.close()).await;
    for live_id in connection.subscriptions.values() {
        connection.state.engine.unsubscribe(live_id);
    }
}

/// True while the caller's account exists with the role it connected with.
fn still_valid(state: &AppState, caller: &Caller) -> bool {
    matches!(state.engine.user(&caller.user_id), Ok(Some(user)) if user.role == caller.role)
}

/// Sent before closing the connection of a dropped or changed user.
fn revoked_message(caller: &Caller) -> ServerMessage {
    error_message(
        None,
        "UNAUTHORIZED",
        &format!(
            "user {} was dropped, or its role or password changed: this connection is closed; log in again",
            caller.user_id
        ),
    )
}

/// The text of a `change` message (the same fields as [`ChangeMessage`]):
/// its rows are encoded once for every subscription that receives them.
fn change_text(event: &ChangeEvent) -> String {
    let kind = match event.kind {
        ChangeKind::Insert => "insert",
        ChangeKind::Update => "update",
        ChangeKind::Delete => "delete",
    };
    format!(
        "{{\"type\":\"change\",\"subscription_id\":{},\"change_type\":\"{kind}\",\"seq\":\"{}\"{}}}",
        Value::String(event.subscription_id.clone()),
        event.seq,
        event.rows.json_fields()
    )
}

fn change_message(event: ChangeEvent) -> ServerMessage {
    let rows = |rows: Vec<serde_json::Map<String, Value>>| {
        (!rows.is_empty()).then(|| rows.into_iter().map(SqlRow).collect())
    };
    ServerMessage::Change(ChangeMessage {
        subscription_id: event.subscription_id,
        change_type: match event.kind {
            ChangeKind::Insert => ChangeType::Insert,
            ChangeKind::Update => ChangeType::Update,
            ChangeKind::Delete => ChangeType::Delete,
        },
        seq: event.seq.to_string(),
        rows: rows(event.rows.rows.clone()),
        old_values: rows(event.rows.old_values.clone()),
    })
}

fn unsubscribed(subscription_id: String, reason: &str) -> ServerMessage {
    let reason = match reason {
        "killed" => UnsubscribeReason::Killed,
        "table_dropped" => UnsubscribeReason::TableDropped,
        "schema_changed" => UnsubscribeReason::SchemaChanged,
        _ => UnsubscribeReason::Client,
    };
    ServerMessage::Unsubscribed(UnsubscribedMessage {
        subscription_id,
        reason,
    })
}

impl Connection {
    async fn handle(&mut self, text: &str) -> Vec<ServerMessage> {
        let message: Value = match serde_json::from_str(text) {
            Ok(v) => v,
            Err(e) => {
                return vec![error_message(
                    None,
                    "INVALID_MESSAGE",
                    &format!("not valid JSON: {e}"),
                )];
            }
        };
        match message["type"].as_str() {
            Some("ping") => vec![ServerMessage::Pong(PongMessage {})],
            Some("subscribe") => self.subscribe(&message).await,
            Some("unsubscribe") => {
                let id = message["id"].as_str().unwrap_or_default();
                match self.subscriptions.remove(id) {
                    Some(live_id) => {
                        self.state.engine.unsubscribe(&live_id);
                        vec![unsubscribed(id.to_string(), "client")]
                    }
                    None => vec![error_message(
                        Some(id),
                        "UNKNOWN_SUBSCRIPTION",
                        &format!("no subscription with id {id}"),
                    )],
                }
            }
            Some("authenticate") => vec![error_message(
                None,
                "INVALID_MESSAGE",
                "this connection is already authenticated",
            )],
            Some(other) => vec![error_message(
                None,
                "UNKNOWN_TYPE",
                &format!("unknown message type {other}; expected subscribe, unsubscribe or ping"),
            )],
            None => vec![error_message(
                None,
                "INVALID_MESSAGE",
                "the message needs a \"type\"",
            )],
        }
    }

    async fn subscribe(&mut self, message: &Value) -> Vec<ServerMessage> {
        let Some(id) = message["id"].as_str().filter(|s| !s.is_empty()) else {
            return vec![error_message(
                None,
                "INVALID_MESSAGE",
                "subscribe needs a non-empty \"id\"",
            )];
        };
        let Some(sql) = message["sql"].as_str() else {
            return vec![error_message(
                Some(id),
                "INVALID_MESSAGE",
                "subscribe needs \"sql\"",
            )];
        };
        if self.subscriptions.contains_key(id) {
            return vec![error_message(
                Some(id),
                "DUPLICATE_SUBSCRIPTION",
                &format!("subscription {id} already exists on this connection"),
            )];
        }
        if self.subscriptions.len() >= self.max_subscriptions {
            return vec![error_message(
                Some(id),
                "TOO_MANY_SUBSCRIPTIONS",
                &format!(
                    "a connection may hold {} subscriptions",
                    self.max_subscriptions
                ),
            )];
        }
        let options = &message["options"];
        let bad_from_seq = || {
            vec![error_message(
                Some(id),
                "INVALID_MESSAGE",
                "from_seq must be a _seq value such as \"123\"",
            )]
        };
        let from_seq = match &options["from_seq"] {
            Value::Null => None,
            Value::String(s) => match s.parse::<i64>() {
                Ok(n) => Some(n),
                Err(_) => return bad_from_seq(),
            },
            Value::Number(n) if n.is_i64() => n.as_i64(),
            _ => return bad_from_seq(),
        };
        let last_rows = options["last_rows"].as_u64().map(|n| n as usize);
        let batch_size = options["batch_size"]
            .as_u64()
            .map(|n| n as usize)
            .filter(|n| *n > 0)
            .unwrap_or(DEFAULT_BATCH_SIZE);
        let request = SubscribeRequest {
            subscription_id: id.to_string(),
            sql: sql.to_string(),
            last_rows,
            from_seq,
            connection_id: self.id.clone(),
            options: (!options.is_null()).then(|| options.to_string()),
        };
        let subscribed = match self
            .state
            .engine
            .subscribe(
                &self.caller,
                request,
                self.events.clone(),
                self.overflowed.clone(),
            )
            .await
        {
            Ok(s) => s,
            Err(e) => {
                let body = ErrorResponse::new(e.code(), e.to_string());
                return vec![error_message(
                    Some(id),
                    &body.error.code,
                    &body.error.message,
                )];
            }
        };
        self.subscriptions
            .insert(id.to_string(), subscribed.live_id.clone());
        let columns = subscribed.columns.iter().map(SqlColumn::from).collect();
        let mut replies = vec![ServerMessage::Subscribed(SubscribedMessage {
            subscription_id: id.to_string(),
            live_id: subscribed.live_id,
            columns,
            seq: subscribed.seq.to_string(),
        })];
        let rows: Vec<SqlRow> = subscribed.initial_rows.into_iter().map(SqlRow).collect();
        let chunks: Vec<&[SqlRow]> = if rows.is_empty() {
            vec![&[]]
        } else {
            rows.chunks(batch_size).collect()
        };
        let last = chunks.len() - 1;
        for (batch, chunk) in chunks.into_iter().enumerate() {
            replies.push(ServerMessage::InitialData(InitialDataMessage {
                subscription_id: id.to_string(),
                rows: chunk.to_vec(),
                batch: batch as u64,
                has_more: batch < last,
            }));
        }
        replies.extend(subscribed.resume_deletes.into_iter().map(change_message));
        replies
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use kalamdb_engine::ChangeRows;
    use serde_json::json;

    use super::*;

    /// The hand-built text of a change says what the typed message says.
    #[test]
    fn change_text_is_the_change_message() {
        let row = |v: Value| v.as_object().cloned().unwrap();
        for (kind, rows, old) in [
            (
                ChangeKind::Insert,
                vec![row(json!({"id": "1", "body": "a \"quoted\" é"}))],
                vec![],
            ),
            (
                ChangeKind::Update,
                vec![row(json!({"id": "1", "n": 2}))],
                vec![row(json!({"id": "1", "n": null}))],
            ),
            (ChangeKind::Delete, vec![], vec![row(json!({"id": "1"}))]),
        ] {
            let event = ChangeEvent {
                subscription_id: "s\"1".into(),
                kind,
                seq: 42,
                rows: Arc::new(ChangeRows::new(rows, old)),
            };
            let fast: Value = serde_json::from_str(&change_text(&event)).unwrap();
            let typed: Value = serde_json::from_str(&change_message(event).to_text()).unwrap();
            assert_eq!(fast, typed);
        }
    }
}
