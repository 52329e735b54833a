import type { BackoffOptions } from './backoff.js';
import type { KalamError } from './errors.js';
import type { ChangeType, SqlColumn, UnsubscribeReason } from './generated/openapi.js';

/**
 * A row: a JSON object keyed by column name, values encoded as in
 * `POST /api/sql`: BIGINT (and `_seq`) as **strings** (lossless; convert
 * with `BigInt(value)` if you need arithmetic), other integers and floats as
 * numbers, timestamps as RFC 3339 UTC strings, NULL as `null`.
 */
export type Row = Record<string, unknown>;

/** A value bound to `$1`, `$2`, … of `POST /api/sql`. A BIGINT may be passed as a string. */
export type SqlParam = string | number | boolean | null;

/**
 * State of the live-query connection, and of each subscription:
 *
 * - `connecting`: first connection (or first subscribe) under way;
 * - `live`: authenticated (a subscription: its initial rows are complete — after a resume,
 *   the deletes that follow them too — and changes flow);
 * - `reconnecting`: the connection was lost (or the subscription was killed) and the
 *   client is waiting for its backoff delay or connecting again; subscriptions resume
 *   where they stopped;
 * - `closed`: ended for good: `close()`, `unsubscribe()`, or an error that does not heal.
 *
 * The connection is also `idle` before the first subscription.
 */
export type LiveState = 'connecting' | 'live' | 'reconnecting' | 'closed';
export type ConnectionState = LiveState | 'idle';

/** Why the client asks the app for a token. */
export type TokenReason =
  /** The first connection and there is no token yet. */
  | 'connect'
  /** Before every reconnect: return the current token if it is still valid, else a new one. */
  | 'reconnect'
  /** The server refused the token (HTTP 401, or `UNAUTHORIZED`/`AUTH_TIMEOUT` on the socket). */
  | 'unauthorized';

/** Something that behaves like the browser's `WebSocket` (the browser's, Node 22's global, undici's or the `ws` package's). */
export interface WebSocketLike {
  readonly readyState: number;
  send(data: string): void;
  close(code?: number, reason?: string): void;
  onopen: ((event: any) => void) | null;
  onmessage: ((event: { data: any }) => void) | null;
  onclose: ((event: { code: number; reason: string }) => void) | null;
  onerror: ((event: any) => void) | null;
}
export type WebSocketConstructor = new (url: string) => WebSocketLike;

export interface KalamClientOptions {
  /**
   * The server's base URL, e.g. `http://127.0.0.1:8080` (in a browser it may be
   * relative to the page). The socket goes to the same host at `/ws`
   * (`ws:`/`wss:` for `http:`/`https:`).
   */
  url: string;
  /** An access token (from `POST /api/auth/login`). */
  token?: string;
  /**
   * Token refresh hook: called before every reconnect, when the server refuses
   * the token (HTTP 401 or `UNAUTHORIZED` on the socket), and for the first
   * connection if there is no token. Return the current token if it is still
   * valid, a new one otherwise. Throw a {@link KalamError} with code
   * `UNAUTHORIZED` to give up (every subscription then ends with that error);
   * any other exception counts as a failed connection attempt and is retried
   * with backoff (e.g. the login endpoint is down during a server restart).
   */
  getToken?: (reason: TokenReason) => string | Promise<string>;
  /** Reconnect delays (capped exponential backoff with jitter). */
  backoff?: BackoffOptions;
  /**
   * Keep-alive: a `ping` every `intervalMs` (default 15000); a connection that
   * brings nothing within `timeoutMs` (default 10000) after a ping counts as lost
   * (a half-open TCP connection never reports itself).
   */
  heartbeat?: { intervalMs?: number; timeoutMs?: number };
  /** How long connecting and authenticating may take, in ms (default 10000). */
  connectTimeoutMs?: number;
  /** The WebSocket class (default: `globalThis.WebSocket`; on Node 20 pass `ws`'s or run with `--experimental-websocket`). */
  WebSocket?: WebSocketConstructor;
  /** The fetch function (default: `globalThis.fetch`). */
  fetch?: typeof fetch;
  /** Connection state changes. */
  onStateChange?: (state: ConnectionState) => void;
  /**
   * Errors the client recovers from by itself: a lost connection, `SLOW_CONSUMER`,
   * a heartbeat timeout, a failed reconnect. For logs and status lines; nothing to do.
   */
  onError?: (error: KalamError) => void;
}

export interface SubscribeOptions {
  /** Only the last N initial rows (first snapshot only; a resume always gets every change). */
  lastRows?: number;
  /** Initial rows per `initial_data` message (server default 1000). */
  batchSize?: number;
  /** Start by resuming after this `_seq` (e.g. a `lastSeq` kept from an earlier subscription). */
  fromSeq?: string;
  /**
   * After `KILL LIVE QUERY`, subscribe again (resuming with `from_seq`, so
   * nothing is missed) once the backoff delay has passed. Default `true`: see
   * the README for why. `false` ends the subscription with reason `killed`.
   */
  resubscribeOnKill?: boolean;
}

export interface InitialDataInfo {
  /**
   * `false`: a full snapshot of the query's rows; batch 0 starts it, and
   * replaces whatever you had (the client may deliver a snapshot again after a
   * reconnect that happened before the first one was complete, or after a
   * reset). `true`: the rows that changed while the connection was down (or the
   * subscription killed), in their current version: insert or replace them by
   * key; rows deleted meanwhile follow as `delete` changes with `resumed: true`.
   */
  resumed: boolean;
  /** Batch number, from 0. */
  batch: number;
  /** False on the last batch. */
  hasMore: boolean;
}

export interface LiveChange<R extends Row = Row> {
  type: ChangeType;
  /** `_seq` of the change (a string: 64-bit). */
  seq: string;
  /** New rows (insert, update). */
  rows: R[];
  /** Previous rows (update, delete). */
  oldValues: R[];
  /** A delete a resume sent for a row deleted (or moved out of the filter) while disconnected. */
  resumed: boolean;
}

/** Why a subscription ended: the server's reasons, `error`, or `closed` (the client was closed). */
export type EndReason = UnsubscribeReason | 'error' | 'closed';

export interface EndInfo {
  reason: EndReason;
  /** The error, for reason `error`. */
  error?: KalamError;
  /** True when the client subscribes again by itself (reason `killed` with `resubscribeOnKill`). */
  willResubscribe: boolean;
  /** The last `_seq` applied: pass it as `fromSeq` to a new subscription to miss nothing. */
  lastSeq: string | null;
}

export interface SubscriptionHandlers<R extends Row = Row> {
  /** Initial rows, in batches (see {@link InitialDataInfo} for snapshots and resumes). */
  onInitialData?: (rows: R[], info: InitialDataInfo) => void;
  /** Each insert, update and delete, in `_seq` order, each exactly once. */
  onChange?: (change: LiveChange<R>) => void;
  /** The subscription failed (bad SQL, permission, auth…); `onEnd` follows with reason `error`. */
  onError?: (error: KalamError) => void;
  /** {@link LiveState} changes. */
  onState?: (state: LiveState) => void;
  /**
   * The server no longer holds the changes since the last applied `_seq`
   * (`RESUME_TOO_OLD`: a STREAM table's retention or buffer, or a crash). The
   * client subscribes again from scratch: drop your rows, a full snapshot
   * (`resumed: false`) follows. Changes in between are lost, which is why this
   * is a signal to the app.
   */
  onReset?: (error: KalamError) => void;
  /** The server ended the subscription, or it ended for good. */
  onEnd?: (info: EndInfo) => void;
}

/** A live query. */
export interface Subscription {
  /** The client's id of the subscription (the socket carries `{id}.{n}` for its n-th subscribe). */
  readonly id: string;
  readonly sql: string;
  readonly state: LiveState;
  /** The server's id of the current registration (for `system.live_queries` and `KILL LIVE QUERY`). */
  readonly liveId: string | undefined;
  /** Columns of the rows, from the server. */
  readonly columns: SqlColumn[];
  /** The last `_seq` applied: where a resume starts. `null` before the first snapshot completed. */
  readonly lastSeq: string | null;
  /** Stops the live query; `onEnd` is called with reason `client`. */
  unsubscribe(): void;
}
