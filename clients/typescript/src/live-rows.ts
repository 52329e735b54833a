import { KalamError } from './errors.js';
import type { KalamClient } from './client.js';
import type { EndReason, InitialDataInfo, LiveChange, LiveState, Row, SubscribeOptions, Subscription } from './types.js';

export interface LiveRowsOptions<R extends Row = Row> extends SubscribeOptions {
  /**
   * The primary key: a column name (it must be in the query's column list),
   * or a function of the row. BIGINT keys are strings already.
   */
  key: string | ((row: R) => string);
  /** Keeps `rows` sorted; otherwise rows keep the order they arrived in (initial rows in the query's `ORDER BY`). */
  sort?: (a: R, b: R) => number;
  /**
   * Rows to start from, with `fromSeq`: e.g. the `rows` and
   * `subscription.lastSeq` an earlier view saved (a page reload, an app
   * restart). The view then resumes instead of loading a snapshot; if the
   * server cannot resume that far back (`RESUME_TOO_OLD`) it resets and loads one.
   */
  rows?: readonly R[];
}

/** What changed; the listener gets it with the new rows. */
export type LiveRowsEvent<R extends Row = Row> =
  /** The rows are complete: a full snapshot replaced them (the first one, or after a reset), or a view started from saved `rows` caught up. */
  | { type: 'snapshot' }
  /** Rows that changed while the connection was down, applied by key. */
  | { type: 'resync'; rows: R[] }
  /** One change, applied by key. `resumed`: a delete a resume sent. */
  | { type: 'insert' | 'update' | 'delete'; row: R; oldRow: R | undefined; seq: string; resumed: boolean }
  /** `RESUME_TOO_OLD`: the rows are stale until the next `snapshot`. */
  | { type: 'reset'; error: KalamError }
  /** The subscription's state changed. */
  | { type: 'state'; state: LiveState }
  /** The subscription ended (for good unless `willResubscribe`). */
  | { type: 'end'; reason: EndReason; error: KalamError | undefined; willResubscribe: boolean };

export type LiveRowsListener<R extends Row = Row> = (rows: readonly R[], event: LiveRowsEvent<R>) => void;

/**
 * The current result set of a live query, what a UI list binds to: inserts,
 * updates and deletes are applied by primary key (rows moving into or out
 * of the `WHERE` arrive as inserts and deletes), across reconnects, with
 * every change applied exactly once.
 */
export class LiveRows<R extends Row = Row> {
  /** The underlying subscription. */
  readonly subscription: Subscription;
  private map = new Map<string, R>();
  private staging: Map<string, R> | undefined;
  private cached: readonly R[] | undefined;
  private readonly listeners = new Set<LiveRowsListener<R>>();
  private readonly keyOf: (row: R) => string;
  private loaded = false;
  private failure: KalamError | undefined;
  private endReason: EndReason | undefined;
  private readonly waiters: Array<{ resolve: () => void; reject: (error: KalamError) => void }> = [];

  constructor(client: KalamClient, sql: string, private readonly options: LiveRowsOptions<R>) {
    const key = options.key;
    this.keyOf =
      typeof key === 'function'
        ? key
        : (row: R) => {
            const value = row[key];
            if (value === undefined) {
              throw new KalamError('INVALID_INPUT', `liveRows: a row has no column ${key}; put the key in the column list`);
            }
            return String(value);
          };
    if (options.rows && options.fromSeq === undefined) {
      throw new KalamError('INVALID_INPUT', 'liveRows: rows to start from need the fromSeq they are current at');
    }
    for (const row of options.rows ?? []) this.map.set(this.keyOf(row), row);
    this.subscription = client.subscribe<R>(sql, options, {
      onInitialData: (rows, info) => this.guard(() => this.initial(rows, info)),
      onChange: (change) => this.guard(() => this.apply(change)),
      onReset: (error) => this.emit({ type: 'reset', error }),
      onState: (state) => {
        if (state === 'live' && !this.loaded) {
          // Started with fromSeq: the first resume makes the view current.
          this.loaded = true;
          this.emit({ type: 'snapshot' });
          this.settle();
        }
        this.emit({ type: 'state', state });
      },
      onError: (error) => {
        this.failure = error;
      },
      onEnd: (info) => {
        if (!info.willResubscribe) {
          this.endReason = info.reason;
          this.settle();
        }
        this.emit({ type: 'end', reason: info.reason, error: info.error ?? this.failure, willResubscribe: info.willResubscribe });
      },
    });
  }

  /** A row without its key (the key is not in the column list) ends the view with that error. */
  private guard(fn: () => void): void {
    try {
      fn();
    } catch (error) {
      this.failure =
        error instanceof KalamError ? error : new KalamError('INVALID_INPUT', `liveRows: ${String(error)}`, { cause: error });
      this.subscription.unsubscribe();
    }
  }

  private initial(rows: R[], info: InitialDataInfo): void {
    if (info.resumed) {
      for (const row of rows) this.map.set(this.keyOf(row), row);
      this.emit({ type: 'resync', rows });
      return;
    }
    if (info.batch === 0 || !this.staging) this.staging = new Map();
    for (const row of rows) this.staging.set(this.keyOf(row), row);
    if (!info.hasMore) {
      this.map = this.staging;
      this.staging = undefined;
      this.loaded = true;
      this.emit({ type: 'snapshot' });
      this.settle();
    }
  }

  /** The current rows (a new array after every change; the same one in between). */
  get rows(): readonly R[] {
    if (!this.cached) {
      const rows = [...this.map.values()];
      if (this.options.sort) rows.sort(this.options.sort);
      this.cached = Object.freeze(rows);
    }
    return this.cached;
  }

  get size(): number {
    return this.map.size;
  }

  get(key: string): R | undefined {
    return this.map.get(key);
  }

  get state(): LiveState {
    return this.subscription.state;
  }

  /** True once the first snapshot is in. */
  get ready(): boolean {
    return this.loaded;
  }

  /** The error that ended the subscription, if any. */
  get error(): KalamError | undefined {
    return this.failure;
  }

  /** Calls `listener(rows, event)` on every change; returns the function that stops it. */
  onChange(listener: LiveRowsListener<R>): () => void {
    this.listeners.add(listener);
    return () => {
      this.listeners.delete(listener);
    };
  }

  /** Resolves once the first snapshot is in; rejects if the subscription ends first. */
  whenReady(): Promise<void> {
    if (this.loaded) return Promise.resolve();
    if (this.endReason !== undefined) return Promise.reject(this.endError());
    return new Promise((resolve, reject) => this.waiters.push({ resolve, reject }));
  }

  /** Stops the live query. */
  close(): void {
    this.subscription.unsubscribe();
  }

  private endError(): KalamError {
    return this.failure ?? new KalamError('CLOSED', `the live query ended (${this.endReason ?? 'closed'})`);
  }

  private settle(): void {
    const waiters = this.waiters.splice(0);
    for (const waiter of waiters) {
      if (this.loaded) waiter.resolve();
      else waiter.reject(this.endError());
    }
  }

  private apply(change: LiveChange<R>): void {
    const count = Math.max(change.rows.length, change.oldValues.length);
    for (let i = 0; i < count; i += 1) {
      const row = change.rows[i];
      const old = change.oldValues[i];
      switch (change.type) {
        case 'insert':
          if (row) this.map.set(this.keyOf(row), row);
          break;
        case 'update':
          if (old && row && this.keyOf(old) !== this.keyOf(row)) this.map.delete(this.keyOf(old));
          if (row) this.map.set(this.keyOf(row), row);
          break;
        case 'delete':
          if (old) this.map.delete(this.keyOf(old));
          break;
      }
      const subject = row ?? old;
      if (subject) {
        this.emit({ type: change.type, row: subject, oldRow: old, seq: change.seq, resumed: change.resumed });
      }
    }
  }

  private emit(event: LiveRowsEvent<R>): void {
    if (event.type !== 'state' && event.type !== 'end' && event.type !== 'reset') this.cached = undefined;
    const rows = this.rows;
    for (const listener of [...this.listeners]) {
      try {
        listener(rows, event);
      } catch {
        // One listener's failure must not stop the others or the stream.
      }
    }
  }
}
