//! The `/ws` operation in the OpenAPI document, and the WebSocket message
//! types as named schemas (`ClientMessage`, `ServerMessage` and their
//! members) so generated SDKs get them. The server builds every message it
//! sends from these types.

use std::sync::Arc;

use poem::web::Data;
use poem::web::websocket::{BoxWebSocketUpgraded, WebSocket};
use poem::{IntoResponse, Request, Response};
use poem_openapi::registry::{
    MetaMediaType, MetaResponse, MetaResponses, MetaSchema, MetaSchemaRef, Registry,
};
use poem_openapi::types::{ToJSON, Type};
use poem_openapi::{ApiResponse, Enum, Object, OpenApi, Tags, Union};

use crate::AppState;
use crate::api::SqlColumn;
use crate::error::ApiError;
use crate::row::SqlRow;
use crate::ws::{WsLimits, upgrade};

#[derive(Tags)]
enum LiveTags {
    /// Live queries over WebSocket.
    Live,
}

// ------------------------------------------------------------ client → server

/// First message of a browser client that cannot send an Authorization header.
#[derive(Debug, Clone, Object)]
pub struct AuthenticateMessage {
    /// Access token from POST /api/auth/login.
    pub token: String,
}

/// Options of a subscription.
#[derive(Debug, Clone, Default, Object)]
pub struct SubscribeOptions {
    /// Send only the last N initial rows.
    #[oai(skip_serializing_if_is_none)]
    pub last_rows: Option<u64>,
    /// Resume: send what changed after this `_seq` instead of the snapshot.
    #[oai(skip_serializing_if_is_none)]
    pub from_seq: Option<String>,
    /// Initial rows per initial_data message (default 1000).
    #[oai(skip_serializing_if_is_none)]
    pub batch_size: Option<u64>,
}

/// Starts a live query.
#[derive(Debug, Clone, Object)]
pub struct SubscribeMessage {
    /// Client-chosen id, unique on the connection.
    pub id: String,
    /// One SELECT over one USER or SHARED table with optional WHERE and column list.
    pub sql: String,
    #[oai(skip_serializing_if_is_none)]
    pub options: Option<SubscribeOptions>,
}

/// Stops a live query.
#[derive(Debug, Clone, Object)]
pub struct UnsubscribeMessage {
    /// Id given in subscribe.
    pub id: String,
}

/// Keep-alive; answered with pong.
#[derive(Debug, Clone, Object)]
pub struct PingMessage {}

/// A message from client to server; `type` tells which.
#[derive(Debug, Clone, Union)]
#[oai(discriminator_name = "type", one_of)]
pub enum ClientMessage {
    #[oai(mapping = "authenticate")]
    Authenticate(AuthenticateMessage),
    #[oai(mapping = "subscribe")]
    Subscribe(SubscribeMessage),
    #[oai(mapping = "unsubscribe")]
    Unsubscribe(UnsubscribeMessage),
    #[oai(mapping = "ping")]
    Ping(PingMessage),
}

// ------------------------------------------------------------ server → client

/// First-message authentication succeeded.
#[derive(Debug, Clone, Object)]
pub struct AuthenticatedMessage {
    /// The authenticated user.
    pub user_id: String,
}

/// The subscription is registered: every change committed after `seq` will be delivered.
#[derive(Debug, Clone, Object)]
pub struct SubscribedMessage {
    /// The client's id of the subscription.
    pub subscription_id: String,
    /// Server-wide id, for system.live_queries and KILL LIVE QUERY.
    pub live_id: String,
    /// Columns of every row the subscription delivers.
    pub columns: Vec<SqlColumn>,
    /// `_seq` at registration, as a string.
    pub seq: String,
}

/// Initial rows (or, with from_seq, the rows changed since), in batches.
#[derive(Debug, Clone, Object)]
pub struct InitialDataMessage {
    /// The client's id of the subscription.
    pub subscription_id: String,
    /// Rows of this batch.
    pub rows: Vec<SqlRow>,
    /// Batch number, from 0.
    pub batch: u64,
    /// False on the last batch.
    pub has_more: bool,
}

/// Kind of change, as seen through the subscription's filter: a row updated
/// out of the filter is a delete, one updated into it an insert.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Enum)]
#[oai(rename_all = "lowercase")]
pub enum ChangeType {
    Insert,
    Update,
    Delete,
}

/// A committed change that matches the subscription.
#[derive(Debug, Clone, Object)]
pub struct ChangeMessage {
    /// The client's id of the subscription.
    pub subscription_id: String,
    // No doc comment: on an enum field it becomes `allOf`, which
    // openapi-python-client cannot read; `ChangeType` carries the description.
    pub change_type: ChangeType,
    /// `_seq` of the change, as a string: resume with it as from_seq.
    pub seq: String,
    /// New rows (insert, update).
    #[oai(skip_serializing_if_is_none)]
    pub rows: Option<Vec<SqlRow>>,
    /// Previous rows (update, delete).
    #[oai(skip_serializing_if_is_none)]
    pub old_values: Option<Vec<SqlRow>>,
}

/// Why a subscription ended: client (unsubscribe), killed (KILL LIVE QUERY),
/// table_dropped or schema_changed (ALTER TABLE).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Enum)]
#[oai(rename_all = "snake_case")]
pub enum UnsubscribeReason {
    Client,
    Killed,
    TableDropped,
    /// An ALTER TABLE dropped, renamed or retyped a column the
    /// subscription's WHERE or column list uses.
    SchemaChanged,
}

/// The subscription ended.
#[derive(Debug, Clone, Object)]
pub struct UnsubscribedMessage {
    /// The client's id of the subscription.
    pub subscription_id: String,
    // See `change_type`: `UnsubscribeReason` carries the description.
    pub reason: UnsubscribeReason,
}

/// Answer to ping.
#[derive(Debug, Clone, Object)]
pub struct PongMessage {}

/// Something went wrong; see docs/websocket-protocol.md for the codes.
#[derive(Debug, Clone, Object)]
pub struct WsErrorMessage {
    /// The subscription the error belongs to, if any.
    #[oai(skip_serializing_if_is_none)]
    pub subscription_id: Option<String>,
    /// Machine-readable code, e.g. INVALID_SQL, DUPLICATE_SUBSCRIPTION, SLOW_CONSUMER.
    pub code: String,
    /// Human-readable message naming the problem.
    pub message: String,
}

/// A message from server to client; `type` tells which.
#[derive(Debug, Clone, Union)]
#[oai(discriminator_name = "type", one_of)]
pub enum ServerMessage {
    #[oai(mapping = "authenticated")]
    Authenticated(AuthenticatedMessage),
    #[oai(mapping = "subscribed")]
    Subscribed(SubscribedMessage),
    #[oai(mapping = "initial_data")]
    InitialData(InitialDataMessage),
    #[oai(mapping = "change")]
    Change(ChangeMessage),
    #[oai(mapping = "unsubscribed")]
    Unsubscribed(UnsubscribedMessage),
    #[oai(mapping = "pong")]
    Pong(PongMessage),
    #[oai(mapping = "error")]
    Error(WsErrorMessage),
}

impl ServerMessage {
    /// The text of the frame.
    pub fn to_text(&self) -> String {
        self.to_json().map(|v| v.to_string()).unwrap_or_default()
    }

    pub fn error(subscription_id: Option<&str>, code: &str, message: &str) -> Self {
        ServerMessage::Error(WsErrorMessage {
            subscription_id: subscription_id.map(str::to_string),
            code: code.to_string(),
            message: message.to_string(),
        })
    }
}

/// The upgraded connection; documents `101` and registers the message schemas.
pub struct LiveSocket(pub BoxWebSocketUpgraded);

impl IntoResponse for LiveSocket {
    fn into_response(self) -> Response {
        self.0.into_response()
    }
}

impl ApiResponse for LiveSocket {
    fn meta() -> MetaResponses {
        MetaResponses {
            responses: vec![MetaResponse {
                description: "Switching to the live-query protocol: JSON text frames, ClientMessage from the client, ServerMessage from the server",
                status: Some(101),
                status_range: None,
                content: vec![MetaMediaType {
                    content_type: "application/json",
                    schema: MetaSchemaRef::Inline(Box::new(MetaSchema {
                        description: Some(
                            "A text frame on the socket: a ServerMessage from the server or a ClientMessage from the client.",
                        ),
                        one_of: vec![ServerMessage::schema_ref(), ClientMessage::schema_ref()],
                        ..MetaSchema::ANY
                    })),
                }],
                headers: vec![],
            }],
        }
    }

    fn register(registry: &mut Registry) {
        ClientMessage::register(registry);
        ServerMessage::register(registry);
    }
}

pub struct LiveApi;

#[OpenApi(tag = "LiveTags::Live")]
impl LiveApi {
    /// Live queries (WebSocket)
    ///
    /// Upgrades to a WebSocket. Authenticate with `Authorization: Bearer
    /// <token>` on this request, or send an `authenticate` message within 5
    /// seconds. Then `subscribe` to a SELECT and receive `subscribed`,
    /// `initial_data` and `change` messages. Protocol:
    /// docs/websocket-protocol.md.
    #[oai(path = "/ws", method = "get", operation_id = "liveQueries")]
    async fn live(
        &self,
        ws: WebSocket,
        req: &Request,
        state: Data<&Arc<AppState>>,
        limits: Data<&WsLimits>,
    ) -> Result<LiveSocket, ApiError> {
        upgrade(ws, req, state.0.clone(), *limits.0)
            .map(LiveSocket)
            .map_err(ApiError::unauthorized)
    }
}
