import { KalamError } from './errors.js';
import type {
  ErrorResponse,
  HealthResponse,
  LoginRequest,
  LoginResponse,
  SqlRequestBody,
  SqlResponse,
} from './generated/openapi.js';
import { LiveConnection, type ConnectionHost } from './live.js';
import { LiveRows, type LiveRowsOptions } from './live-rows.js';
import type {
  ConnectionState,
  KalamClientOptions,
  Row,
  SqlParam,
  SubscribeOptions,
  Subscription,
  SubscriptionHandlers,
  TokenReason,
} from './types.js';

export interface SqlOptions {
  /** Namespace for unqualified table names. */
  namespace?: string;
  /** Aborts the request. */
  signal?: AbortSignal;
}

function resolveUrl(url: string): URL {
  const base = (globalThis as { location?: { href: string } }).location?.href;
  return base === undefined ? new URL(url) : new URL(url, base);
}

/**
 * A KalamDB client: login, `POST /api/sql`, and live queries over one
 * WebSocket that reconnects and resumes by itself.
 *
 * ```ts
 * const db = new KalamClient({ url: 'http://127.0.0.1:8080' });
 * await db.login('alice', 'pw');
 * const rows = await db.query('SELECT id, body FROM app.messages WHERE id > $1', ['10']);
 * const view = db.liveRows('SELECT id, body FROM app.messages', { key: 'id' });
 * view.onChange((rows) => render(rows));
 * ```
 */
export class KalamClient {
  readonly url: string;
  readonly options: KalamClientOptions;
  private token: string | undefined;
  private closed = false;
  private readonly live: LiveConnection;
  private readonly inflight = new Set<AbortController>();
  private refreshing: Promise<string> | undefined;
  private loggingIn: Promise<void> | undefined;

  constructor(options: KalamClientOptions) {
    this.options = options;
    const base = resolveUrl(options.url);
    this.url = base.href.replace(/\/+$/, '');
    this.token = options.token;
    const ws = new URL(base.href);
    ws.protocol = base.protocol === 'https:' ? 'wss:' : 'ws:';
    ws.pathname = `${ws.pathname.replace(/\/+$/, '')}/ws`;
    const client = this;
    const host: ConnectionHost = {
      options,
      wsUrl: ws.href,
      tokenFor: (reason) => client.tokenFor(reason),
      get canRefresh() {
        return options.getToken !== undefined;
      },
    };
    this.live = new LiveConnection(host);
  }

  /** State of the live-query connection (`idle` before the first subscription). */
  get connectionState(): ConnectionState {
    return this.live.state;
  }

  /** The current access token, if any. */
  get accessToken(): string | undefined {
    return this.token;
  }

  /** Replaces the access token (the live connection uses it from its next (re)connect). */
  setToken(token: string | undefined): void {
    this.token = token;
  }

  // ------------------------------------------------------------ HTTP

  /** `GET /health`. */
  health(options: { signal?: AbortSignal } = {}): Promise<HealthResponse> {
    return this.request<HealthResponse>('GET', '/health', undefined, false, options.signal);
  }

  /** `POST /api/auth/login`; keeps the token for every later call. */
  async login(username: string, password: string, options: { signal?: AbortSignal } = {}): Promise<LoginResponse> {
    const body: LoginRequest = { username, password };
    const login = this.request<LoginResponse>('POST', '/api/auth/login', body, false, options.signal);
    // A subscribe() made before this resolves waits for it (see tokenFor).
    const pending = login.then(
      () => undefined,
      () => undefined,
    );
    this.loggingIn = pending;
    try {
      const session = await login;
      this.token = session.access_token;
      return session;
    } finally {
      if (this.loggingIn === pending) this.loggingIn = undefined;
    }
  }

  /**
   * `POST /api/sql`: runs a batch of statements. `params` bind `$1`, `$2`, …
   * in every statement. Throws a {@link KalamError} (code from the server's
   * error body, `status` the HTTP status) when any statement fails.
   */
  sql(sql: string, params?: SqlParam[], options: SqlOptions = {}): Promise<SqlResponse> {
    const body: SqlRequestBody = { sql };
    if (params !== undefined) body.params = params;
    if (options.namespace !== undefined) body.namespace = options.namespace;
    return this.request<SqlResponse>('POST', '/api/sql', body, true, options.signal);
  }

  /** The rows of the last statement of {@link sql}. */
  async query<R extends Row = Row>(sql: string, params?: SqlParam[], options: SqlOptions = {}): Promise<R[]> {
    const response = await this.sql(sql, params, options);
    const last = response.results[response.results.length - 1];
    return (last?.rows ?? []) as R[];
  }

  private async request<T>(
    method: 'GET' | 'POST',
    path: string,
    body: unknown,
    auth: boolean,
    signal: AbortSignal | undefined,
  ): Promise<T> {
    if (this.closed) throw new KalamError('CLOSED', 'the client is closed');
    let refreshed = false;
    for (;;) {
      const headers: Record<string, string> = { accept: 'application/json' };
      if (body !== undefined) headers['content-type'] = 'application/json';
      if (auth) {
        const token = this.token ?? (this.options.getToken ? await this.refreshToken('connect') : undefined);
        if (token === undefined) throw new KalamError('UNAUTHORIZED', 'no access token: call login() or pass token or getToken');
        headers.authorization = `Bearer ${token}`;
      }
      const controller = new AbortController();
      const abort = () => controller.abort(signal?.reason);
      signal?.addEventListener('abort', abort, { once: true });
      this.inflight.add(controller);
      let response: Response;
      let text: string;
      try {
        const fetchImpl = this.options.fetch ?? globalThis.fetch;
        response = await fetchImpl(`${this.url}${path}`, {
          method,
          headers,
          ...(body === undefined ? {} : { body: JSON.stringify(body) }),
          signal: controller.signal,
        });
        text = await response.text();
      } catch (error) {
        if (this.closed) throw new KalamError('CLOSED', 'the client is closed', { cause: error });
        throw new KalamError('NETWORK_ERROR', `${method} ${path} failed: ${String(error)}`, { cause: error });
      } finally {
        signal?.removeEventListener('abort', abort);
        this.inflight.delete(controller);
      }
      let parsed: unknown;
      try {
        parsed = text === '' ? undefined : JSON.parse(text);
      } catch (error) {
        throw new KalamError('PROTOCOL_ERROR', `${method} ${path}: HTTP ${response.status} with a body that is not JSON`, {
          status: response.status,
          cause: error,
        });
      }
      if (response.ok) return parsed as T;
      const failure = KalamError.fromResponse(response.status, parsed as ErrorResponse);
      if (response.status === 401 && auth && !refreshed && this.options.getToken) {
        refreshed = true;
        await this.refreshToken('unauthorized');
        continue;
      }
      throw failure;
    }
  }

  /** Asks the app's getToken hook; concurrent callers share one call. */
  private refreshToken(reason: TokenReason): Promise<string> {
    const getToken = this.options.getToken;
    if (!getToken) return Promise.reject(new KalamError('UNAUTHORIZED', 'no getToken hook to refresh the token'));
    if (!this.refreshing) {
      this.refreshing = (async () => {
        try {
          const token = await getToken(reason);
          if (typeof token !== 'string' || token === '') {
            throw new KalamError('UNAUTHORIZED', 'getToken returned no token');
          }
          this.token = token;
          return token;
        } finally {
          this.refreshing = undefined;
        }
      })();
    }
    return this.refreshing;
  }

  /** The token for a socket (re)connect. */
  private async tokenFor(reason: TokenReason): Promise<string> {
    if (this.loggingIn) await this.loggingIn;
    if (this.options.getToken && (reason !== 'connect' || this.token === undefined)) {
      return this.refreshToken(reason);
    }
    if (this.token === undefined) {
      throw new KalamError('UNAUTHORIZED', 'no access token: call login() or pass token or getToken');
    }
    return this.token;
  }

  // ------------------------------------------------------------ live queries

  /**
   * Starts a live query: one `SELECT` over one table with an optional
   * `WHERE` (docs/websocket-protocol.md). The handlers get the initial rows,
   * then every change exactly once, across reconnects.
   */
  subscribe<R extends Row = Row>(
    sql: string,
    options: SubscribeOptions = {},
    handlers: SubscriptionHandlers<R> = {},
  ): Subscription {
    return this.live.subscribe(sql, options, handlers);
  }

  /**
   * A live, materialised result set: the rows of `sql`, kept current by
   * primary key (`options.key`), with a notification on every change.
   */
  liveRows<R extends Row = Row>(sql: string, options: LiveRowsOptions<R>): LiveRows<R> {
    return new LiveRows<R>(this, sql, options);
  }

  /** Ends everything: every subscription (reason `closed`), the socket, reconnects, HTTP requests in flight. */
  close(): void {
    if (this.closed) return;
    this.closed = true;
    this.live.close();
    for (const controller of this.inflight) controller.abort();
    this.inflight.clear();
  }
}
