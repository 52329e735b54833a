// @kalamdb/client: login, POST /api/sql and live queries for browsers and Node.js 20+.
export { KalamClient, type SqlOptions } from './client.js';
export { LiveRows, type LiveRowsEvent, type LiveRowsListener, type LiveRowsOptions } from './live-rows.js';
export { KalamError, isKalamError, type KalamErrorCode } from './errors.js';
export { backoffDelay, type BackoffOptions } from './backoff.js';
export type {
  ConnectionState,
  EndInfo,
  EndReason,
  InitialDataInfo,
  KalamClientOptions,
  LiveChange,
  LiveState,
  Row,
  SqlParam,
  SubscribeOptions,
  Subscription,
  SubscriptionHandlers,
  TokenReason,
  WebSocketConstructor,
  WebSocketLike,
} from './types.js';
// The wire format, generated from openapi/openapi.json.
export type {
  ChangeType,
  ClientMessage,
  ErrorDetail,
  ErrorResponse,
  HealthResponse,
  LoginResponse,
  ServerMessage,
  SqlColumn,
  SqlRequestBody,
  SqlResponse,
  SqlResult,
  UnsubscribeReason,
} from './generated/openapi.js';
export { ChangeTypeValues, ServerMessageTypes, UnsubscribeReasonValues } from './generated/openapi.js';
