// The live-query connection: one WebSocket per client, every subscription
// on it, reconnect and resume. Protocol: docs/websocket-protocol.md.
//
// Resume without loss or duplicates. Each subscription keeps `cursor`, the
// `_seq` of the last change it applied (after a snapshot: the `seq` of its
// `subscribed` message). After a reconnect (or a kill) it subscribes with
// `from_seq = cursor`, and the server answers with
//   subscribed(seq = S), initial_data (rows changed in (cursor, S], current
//   version), delete changes for rows deleted in (cursor, S], then live
//   changes with seq > S, in order.
// The cursor moves to S only once every resume delete has arrived: the
// client sends a `ping` right after its subscribes, and the server handles
// client messages in order, so its `pong` comes after them (a live change,
// seq > S, proves it too). Until then the cursor stays put, so a connection
// lost in the middle of a resume resumes from the same place again; resume
// deletes already delivered are recognised by their seq and not delivered
// twice. A live change with seq <= cursor is a duplicate and is dropped.

import { backoffDelay } from './backoff.js';
import { KalamError, isKalamError } from './errors.js';
import type {
  ClientMessage,
  ServerMessage,
  ServerMessageOf,
  SqlColumn,
  SubscribeOptions as WireSubscribeOptions,
  UnsubscribeReason,
} from './generated/openapi.js';
import type {
  ConnectionState,
  EndReason,
  KalamClientOptions,
  LiveChange,
  LiveState,
  Row,
  SubscribeOptions,
  Subscription,
  SubscriptionHandlers,
  TokenReason,
  WebSocketConstructor,
  WebSocketLike,
} from './types.js';

const OPEN = 1;
/** How long the heartbeat waits while a subscribe is being answered (the server's default statement timeout plus a margin). */
const SUBSCRIBE_PATIENCE_MS = 70_000;

function assertNever(value: never, what: string): never {
  throw new KalamError('PROTOCOL_ERROR', `unexpected ${what}: ${JSON.stringify(value)}`);
}

/** One subscribe on the wire. */
interface Incarnation {
  wireId: string;
  /** The `from_seq` it was sent with (null: a snapshot). */
  fromSeq: bigint | null;
  /** `seq` of its `subscribed` message. */
  baseSeq: bigint | null;
  initialDone: boolean;
  /** Every resume delete has arrived: the cursor may move to baseSeq. */
  phaseDone: boolean;
}

/** What the connection needs from the client. */
export interface ConnectionHost {
  readonly options: KalamClientOptions;
  readonly wsUrl: string;
  tokenFor(reason: TokenReason): Promise<string>;
  readonly canRefresh: boolean;
}

export class SubscriptionImpl<R extends Row = Row> implements Subscription {
  state: LiveState = 'connecting';
  liveId: string | undefined;
  columns: SqlColumn[] = [];
  cursor: bigint | null;
  inc: Incarnation | null = null;
  /** Seqs of resume deletes delivered since the cursor last moved. */
  readonly resumeDeletesSeen = new Set<string>();
  incarnations = 0;
  killed = 0;
  resubscribeTimer: ReturnType<typeof setTimeout> | undefined;
  ended = false;
  everLive = false;
  /** Changes dropped as duplicates (seq at or below the cursor). */
  duplicatesDropped = 0;

  constructor(
    private readonly connection: LiveConnection,
    readonly id: string,
    readonly sql: string,
    readonly options: SubscribeOptions,
    readonly handlers: SubscriptionHandlers<R>,
  ) {
    if (options.fromSeq !== undefined && !/^\d+$/.test(options.fromSeq)) {
      throw new KalamError('INVALID_INPUT', `fromSeq must be a _seq such as "1795379209359041", not ${JSON.stringify(options.fromSeq)}`);
    }
    this.cursor = options.fromSeq === undefined ? null : BigInt(options.fromSeq);
  }

  get lastSeq(): string | null {
    return this.cursor === null ? null : String(this.cursor);
  }

  unsubscribe(): void {
    this.connection.unsubscribe(this);
  }

  setState(state: LiveState): void {
    if (this.state === state) return;
    this.state = state;
    if (state === 'live') this.everLive = true;
    this.call(() => this.handlers.onState?.(state));
  }

  /** Runs an app handler; an exception in it must not break the connection. */
  call(fn: () => void): void {
    try {
      fn();
    } catch (error) {
      this.connection.report(
        new KalamError('PROTOCOL_ERROR', `a handler of subscription ${this.id} threw: ${String(error)}`, { cause: error }),
      );
    }
  }
}

export class LiveConnection {
  state: ConnectionState = 'idle';
  private readonly subs = new Set<SubscriptionImpl<any>>();
  private readonly byWire = new Map<string, SubscriptionImpl<any>>();
  private socket: WebSocketLike | undefined;
  /** Bumped whenever a socket is abandoned: events of older sockets are ignored. */
  private generation = 0;
  private attempt = 0;
  private everConnected = false;
  private needRefresh = false;
  private authRejections = 0;
  private closed = false;
  private opening = false;
  private reconnectTimer: ReturnType<typeof setTimeout> | undefined;
  private connectTimer: ReturnType<typeof setTimeout> | undefined;
  private heartbeatTimer: ReturnType<typeof setInterval> | undefined;
  private deadTimer: ReturnType<typeof setTimeout> | undefined;
  /** One entry per ping sent: the incarnations its pong vouches for. */
  private pendingPings: Array<Array<[SubscriptionImpl<any>, Incarnation]>> = [];
  /** A connection-level error the server sent just before closing (SLOW_CONSUMER…). */
  private closingError: KalamError | undefined;
  private nextId = 0;

  constructor(private readonly host: ConnectionHost) {}

  // ------------------------------------------------------------ public side

  subscribe<R extends Row>(sql: string, options: SubscribeOptions, handlers: SubscriptionHandlers<R>): SubscriptionImpl<R> {
    if (this.closed) throw new KalamError('CLOSED', 'the client is closed');
    const sub = new SubscriptionImpl<R>(this, `s${++this.nextId}`, sql, options, handlers);
    this.subs.add(sub);
    if (this.state === 'live') {
      this.sendSubscribes([sub]);
    } else {
      this.ensureOpen();
    }
    return sub;
  }

  unsubscribe(sub: SubscriptionImpl<any>): void {
    if (sub.ended) return;
    const inc = sub.inc;
    if (inc && this.state === 'live') this.send({ type: 'unsubscribe', id: inc.wireId });
    this.end(sub, 'client');
  }

  close(): void {
    if (this.closed) return;
    this.closed = true;
    this.abandonSocket();
    clearTimeout(this.reconnectTimer);
    this.reconnectTimer = undefined;
    for (const sub of [...this.subs]) this.end(sub, 'closed');
    this.setState('closed');
  }

  report(error: KalamError): void {
    try {
      this.host.options.onError?.(error);
    } catch {
      // The app's error handler failed: nothing left to tell.
    }
  }

  // ------------------------------------------------------------ connecting

  private setState(state: ConnectionState): void {
    if (this.state === state) return;
    this.state = state;
    try {
      this.host.options.onStateChange?.(state);
    } catch (error) {
      this.report(new KalamError('PROTOCOL_ERROR', `onStateChange threw: ${String(error)}`, { cause: error }));
    }
  }

  private ensureOpen(): void {
    if (this.closed || this.socket || this.opening || this.reconnectTimer) return;
    void this.open();
  }

  private async open(): Promise<void> {
    const gen = ++this.generation;
    this.opening = true;
    this.setState(this.everConnected ? 'reconnecting' : 'connecting');
    const reason: TokenReason = this.needRefresh ? 'unauthorized' : this.everConnected ? 'reconnect' : 'connect';
    let token: string;
    try {
      token = await this.host.tokenFor(reason);
    } catch (error) {
      if (gen !== this.generation || this.closed) return;
      this.opening = false;
      if (isKalamError(error, 'UNAUTHORIZED', 'CLOSED')) {
        this.fail(error);
      } else {
        this.retry(
          error instanceof KalamError
            ? error
            : new KalamError('NETWORK_ERROR', `getToken failed: ${String(error)}`, { cause: error }),
        );
      }
      return;
    }
    if (gen !== this.generation || this.closed) return;
    this.opening = false;
    const WebSocketImpl: WebSocketConstructor | undefined =
      this.host.options.WebSocket ?? (globalThis as { WebSocket?: WebSocketConstructor }).WebSocket;
    if (!WebSocketImpl) {
      this.fail(
        new KalamError(
          'NETWORK_ERROR',
          'no WebSocket implementation: pass options.WebSocket (e.g. the `ws` package) or run Node.js 20 with --experimental-websocket (Node.js 22+ has one)',
        ),
      );
      return;
    }
    let socket: WebSocketLike;
    try {
      socket = new WebSocketImpl(this.host.wsUrl);
    } catch (error) {
      this.fail(new KalamError('NETWORK_ERROR', `cannot open ${this.host.wsUrl}: ${String(error)}`, { cause: error }));
      return;
    }
    this.socket = socket;
    this.closingError = undefined;
    socket.onopen = () => {
      if (gen === this.generation) this.send({ type: 'authenticate', token });
    };
    socket.onmessage = (event) => {
      if (gen === this.generation) this.receive(event.data);
    };
    socket.onerror = () => {
      // A close event follows and carries the outcome.
    };
    socket.onclose = (event) => {
      if (gen !== this.generation) return;
      this.lost(
        this.closingError ??
          new KalamError('NETWORK_ERROR', `the connection closed (code ${event.code}${event.reason ? `: ${event.reason}` : ''})`),
      );
    };
    this.connectTimer = setTimeout(() => {
      if (gen === this.generation) {
        this.lost(new KalamError('NETWORK_ERROR', `not connected and authenticated within ${this.connectTimeoutMs} ms`));
      }
    }, this.connectTimeoutMs);
  }

  private get connectTimeoutMs(): number {
    return this.host.options.connectTimeoutMs ?? 10_000;
  }

  /** Stops listening to the current socket and closes it. */
  private abandonSocket(): void {
    this.generation += 1;
    this.opening = false;
    clearTimeout(this.connectTimer);
    clearInterval(this.heartbeatTimer);
    clearTimeout(this.deadTimer);
    this.connectTimer = this.heartbeatTimer = this.deadTimer = undefined;
    this.pendingPings = [];
    const socket = this.socket;
    this.socket = undefined;
    if (socket) {
      socket.onopen = socket.onmessage = socket.onclose = socket.onerror = null;
      try {
        socket.close();
      } catch {
        // Already closed, or never opened.
      }
    }
    for (const sub of this.subs) {
      if (sub.inc) this.byWire.delete(sub.inc.wireId);
      sub.inc = null;
    }
  }

  /** The connection is gone: every subscription waits, and the client reconnects after its backoff delay. */
  private lost(error: KalamError): void {
    if (this.closed) return;
    this.abandonSocket();
    this.retry(error);
  }

  private retry(error: KalamError): void {
    this.report(error);
    for (const sub of this.subs) sub.setState('reconnecting');
    this.setState('reconnecting');
    const delay = backoffDelay(this.attempt, this.host.options.backoff);
    this.attempt += 1;
    clearTimeout(this.reconnectTimer);
    this.reconnectTimer = setTimeout(() => {
      this.reconnectTimer = undefined;
      this.ensureOpen();
    }, delay);
  }

  /** An error that reconnecting cannot heal (the token is refused for good): every subscription ends with it. */
  private fail(error: KalamError): void {
    this.abandonSocket();
    clearTimeout(this.reconnectTimer);
    this.reconnectTimer = undefined;
    for (const sub of [...this.subs]) {
      sub.call(() => sub.handlers.onError?.(error));
      this.end(sub, 'error', error);
    }
    this.attempt = 0;
    this.everConnected = false;
    this.needRefresh = false;
    this.authRejections = 0;
    // Not `closed`: a later subscribe() starts over (e.g. after a new login).
    this.setState('idle');
  }

  // ------------------------------------------------------------ messages

  private send(message: ClientMessage): void {
    const socket = this.socket;
    if (socket && socket.readyState === OPEN) socket.send(JSON.stringify(message));
  }

  private receive(data: unknown): void {
    clearTimeout(this.deadTimer);
    this.deadTimer = undefined;
    let message: ServerMessage;
    try {
      message = JSON.parse(String(data)) as ServerMessage;
    } catch (error) {
      this.report(new KalamError('PROTOCOL_ERROR', `the server sent invalid JSON: ${String(data).slice(0, 200)}`, { cause: error }));
      return;
    }
    switch (message.type) {
      case 'authenticated':
        return this.authenticated();
      case 'subscribed':
        return this.subscribed(message);
      case 'initial_data':
        return this.initialData(message);
      case 'change':
        return this.change(message);
      case 'unsubscribed':
        return this.unsubscribed(message);
      case 'pong':
        return this.pong();
      case 'error':
        return this.serverError(message);
      default:
        try {
          assertNever(message, 'message type');
        } catch (error) {
          this.report(error as KalamError);
        }
    }
  }

  private authenticated(): void {
    clearTimeout(this.connectTimer);
    this.connectTimer = undefined;
    this.everConnected = true;
    this.needRefresh = false;
    this.authRejections = 0;
    const gen = this.generation;
    this.setState('live');
    // onStateChange may have closed the client, or dropped this socket.
    if (gen !== this.generation || this.closed) return;
    this.startHeartbeat();
    const subs = [...this.subs].filter((sub) => !sub.ended && sub.resubscribeTimer === undefined);
    if (subs.length === 0) this.attempt = 0;
    this.sendSubscribes(subs);
  }

  private startHeartbeat(): void {
    const gen = this.generation;
    const interval = this.host.options.heartbeat?.intervalMs ?? 15_000;
    const timeout = this.host.options.heartbeat?.timeoutMs ?? 10_000;
    this.heartbeatTimer = setInterval(() => {
      if (gen !== this.generation) return;
      // A subscribe still being answered may hold the server's answers back
      // for as long as its initial read may take (the server's statement
      // timeout, 60 s by default): be patient then.
      const waitMs = this.pendingPings.some((covered) => covered.length > 0) ? Math.max(timeout, SUBSCRIBE_PATIENCE_MS) : timeout;
      this.pendingPings.push([]);
      this.send({ type: 'ping' });
      if (this.deadTimer === undefined) {
        this.deadTimer = setTimeout(() => {
          if (gen === this.generation) {
            this.lost(new KalamError('NETWORK_ERROR', `no answer to ping within ${waitMs} ms`));
          }
        }, waitMs);
      }
    }, interval);
  }

  /** Sends subscribes, then one ping whose pong marks their resume as complete. */
  private sendSubscribes(subs: SubscriptionImpl<any>[]): void {
    if (subs.length === 0) return;
    const covered: Array<[SubscriptionImpl<any>, Incarnation]> = [];
    const gen = this.generation;
    for (const sub of subs) {
      // A handler (onState) may have ended it, or closed the client.
      if (sub.ended || gen !== this.generation) continue;
      sub.incarnations += 1;
      const inc: Incarnation = {
        wireId: `${sub.id}.${sub.incarnations}`,
        fromSeq: sub.cursor,
        baseSeq: null,
        initialDone: false,
        phaseDone: false,
      };
      if (sub.inc) this.byWire.delete(sub.inc.wireId);
      sub.inc = inc;
      this.byWire.set(inc.wireId, sub);
      const options: WireSubscribeOptions = {};
      if (inc.fromSeq !== null) {
        options.from_seq = String(inc.fromSeq);
      } else if (sub.options.lastRows !== undefined) {
        options.last_rows = sub.options.lastRows;
      }
      if (sub.options.batchSize !== undefined) options.batch_size = sub.options.batchSize;
      this.send({ type: 'subscribe', id: inc.wireId, sql: sub.sql, options });
      sub.setState(sub.everLive ? 'reconnecting' : 'connecting');
      covered.push([sub, inc]);
    }
    if (covered.length === 0 || gen !== this.generation) return;
    this.pendingPings.push(covered);
    this.send({ type: 'ping' });
  }

  private current(wireId: string | undefined): SubscriptionImpl<any> | undefined {
    if (wireId === undefined) return undefined;
    const sub = this.byWire.get(wireId);
    return sub && !sub.ended && sub.inc?.wireId === wireId ? sub : undefined;
  }

  private subscribed(message: ServerMessageOf<'subscribed'>): void {
    const sub = this.current(message.subscription_id);
    if (!sub || !sub.inc) return;
    sub.inc.baseSeq = BigInt(message.seq);
    sub.liveId = message.live_id;
    sub.columns = message.columns;
  }

  private initialData(message: ServerMessageOf<'initial_data'>): void {
    const sub = this.current(message.subscription_id);
    const inc = sub?.inc;
    if (!sub || !inc) return;
    const resumed = inc.fromSeq !== null;
    sub.call(() =>
      sub.handlers.onInitialData?.(message.rows, { resumed, batch: message.batch, hasMore: message.has_more }),
    );
    if (message.has_more || sub.inc !== inc) return;
    inc.initialDone = true;
    if (!resumed && inc.baseSeq !== null) {
      // A snapshot has no resume deletes: it is complete as of baseSeq.
      inc.phaseDone = true;
      sub.cursor = inc.baseSeq;
      sub.resumeDeletesSeen.clear();
      sub.setState('live');
    }
    // A resume is `live` once its deletes are in too (pong, or a live change).
  }

  private change(message: ServerMessageOf<'change'>): void {
    const sub = this.current(message.subscription_id);
    const inc = sub?.inc;
    if (!sub || !inc) return;
    const seq = BigInt(message.seq);
    const inResume = inc.fromSeq !== null && !inc.phaseDone && inc.baseSeq !== null && seq <= inc.baseSeq;
    if (inResume) {
      // A resume delete: at or below baseSeq, above the cursor.
      if (sub.resumeDeletesSeen.has(message.seq)) {
        sub.duplicatesDropped += 1;
        return;
      }
      sub.resumeDeletesSeen.add(message.seq);
    } else {
      if (sub.cursor !== null && seq <= sub.cursor) {
        sub.duplicatesDropped += 1;
        return;
      }
      if (!inc.phaseDone) {
        // A live change: the resume before it is complete.
        inc.phaseDone = true;
        sub.resumeDeletesSeen.clear();
        sub.setState('live');
        if (sub.inc !== inc) return; // onState ended it
      }
      sub.cursor = seq;
    }
    const change: LiveChange<any> = {
      type: message.change_type,
      seq: message.seq,
      rows: message.rows ?? [],
      oldValues: message.old_values ?? [],
      resumed: inResume,
    };
    sub.call(() => sub.handlers.onChange?.(change));
  }

  private pong(): void {
    const covered = this.pendingPings.shift() ?? [];
    for (const [sub, inc] of covered) {
      if (sub.inc !== inc || !inc.initialDone || inc.phaseDone) continue;
      inc.phaseDone = true;
      if (inc.baseSeq !== null && (sub.cursor === null || inc.baseSeq > sub.cursor)) sub.cursor = inc.baseSeq;
      sub.resumeDeletesSeen.clear();
      sub.setState('live');
    }
    if (covered.length > 0 && covered.every(([sub, inc]) => sub.inc !== inc || inc.phaseDone)) {
      // Every subscription is back: the next failure starts the backoff over.
      this.attempt = 0;
      for (const [sub] of covered) sub.killed = 0;
    }
  }

  private unsubscribed(message: ServerMessageOf<'unsubscribed'>): void {
    const sub = this.current(message.subscription_id);
    if (!sub) return;
    if (sub.inc) this.byWire.delete(sub.inc.wireId);
    sub.inc = null;
    const reason: UnsubscribeReason = message.reason;
    switch (reason) {
      case 'killed':
        if (sub.options.resubscribeOnKill !== false) {
          sub.call(() =>
            sub.handlers.onEnd?.({ reason: 'killed', willResubscribe: true, lastSeq: sub.lastSeq }),
          );
          if (sub.ended) return;
          sub.setState('reconnecting');
          const delay = backoffDelay(sub.killed, this.host.options.backoff);
          sub.killed += 1;
          sub.resubscribeTimer = setTimeout(() => {
            sub.resubscribeTimer = undefined;
            // Not live: the next `authenticated` subscribes it.
            if (!sub.ended && this.state === 'live') this.sendSubscribes([sub]);
          }, delay);
          return;
        }
        return this.end(sub, 'killed');
      case 'client':
      case 'table_dropped':
      case 'schema_changed':
        return this.end(sub, reason);
      default:
        assertNever(reason, 'unsubscribe reason');
    }
  }

  private serverError(message: ServerMessageOf<'error'>): void {
    const error = new KalamError(message.code, message.message, {
      ...(message.subscription_id === undefined ? {} : { subscriptionId: message.subscription_id }),
    });
    if (message.subscription_id !== undefined && message.code !== 'UNAUTHORIZED') {
      const sub = this.current(message.subscription_id);
      if (!sub) return;
      if (message.code === 'RESUME_TOO_OLD') {
        // The changes since the cursor are gone: start over with a snapshot.
        sub.cursor = null;
        sub.resumeDeletesSeen.clear();
        sub.call(() => sub.handlers.onReset?.(error));
        if (!sub.ended && this.state === 'live') this.sendSubscribes([sub]);
        return;
      }
      if (sub.inc) this.byWire.delete(sub.inc.wireId);
      sub.inc = null;
      sub.call(() => sub.handlers.onError?.(error));
      this.end(sub, 'error', error);
      return;
    }
    switch (message.code) {
      case 'UNAUTHORIZED':
      case 'AUTH_TIMEOUT':
        // Refused token, or the user was dropped or changed: the server closes
        // the socket. Reconnect with a fresh token, if the app can give one.
        this.authRejections += 1;
        this.needRefresh = true;
        if (!this.host.canRefresh || this.authRejections >= 3) {
          this.fail(error);
        } else {
          this.lost(error);
        }
        return;
      case 'SLOW_CONSUMER':
        // The server drops this connection: reconnect and resume.
        this.closingError = error;
        this.lost(error);
        return;
      default:
        this.report(error);
    }
  }

  private end(sub: SubscriptionImpl<any>, reason: EndReason, error?: KalamError): void {
    if (sub.ended) return;
    sub.ended = true;
    clearTimeout(sub.resubscribeTimer);
    sub.resubscribeTimer = undefined;
    if (sub.inc) this.byWire.delete(sub.inc.wireId);
    sub.inc = null;
    this.subs.delete(sub);
    sub.setState('closed');
    sub.call(() =>
      sub.handlers.onEnd?.({
        reason,
        ...(error === undefined ? {} : { error }),
        willResubscribe: false,
        lastSeq: sub.lastSeq,
      }),
    );
  }
}
