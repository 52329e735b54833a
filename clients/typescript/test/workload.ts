// A writer that keeps changing a table (inserts, updates, rows moving into
// and out of the subscription's WHERE, deletes), and a checker that follows
// a subscription on it and counts every change it receives, every change
// received twice, and every change that contradicts what it had.

import type { KalamClient, LiveChange, Subscription } from '@kalamdb/client';

export interface Item extends Record<string, unknown> {
  id: string;
  v: number;
  tag: string;
}

/** The subscription the tests watch: rows move in and out of it as their tag changes. */
export const watchSql = (table: string) => `SELECT id, v, tag FROM ${table} WHERE tag = 'in'`;
/** The same rows, as a fresh SELECT sees them. */
export const selectSql = (table: string) => `SELECT id, v, tag FROM ${table} WHERE tag = 'in' ORDER BY id`;

export class Writer {
  private readonly ids: string[] = [];
  private next = 1;
  /** Statements committed (each changes one row). */
  writes = 0;
  stopped = false;

  constructor(
    /** The client it writes with (may be replaced, e.g. after a server restart). */
    public client: KalamClient,
    private readonly table: string,
    private readonly random: () => number,
  ) {}

  async step(): Promise<void> {
    const r = this.random();
    const pick = () => this.ids[Math.floor(this.random() * this.ids.length)]!;
    if (this.ids.length < 5 || r < 0.4) {
      const id = String(this.next++);
      await this.client.sql(`INSERT INTO ${this.table} (id, v, tag) VALUES ($1, 0, $2)`, [id, this.random() < 0.7 ? 'in' : 'out']);
      this.ids.push(id);
    } else if (r < 0.65) {
      await this.client.sql(`UPDATE ${this.table} SET v = v + 1 WHERE id = $1`, [pick()]);
    } else if (r < 0.85) {
      await this.client.sql(`UPDATE ${this.table} SET tag = CASE WHEN tag = 'in' THEN 'out' ELSE 'in' END WHERE id = $1`, [pick()]);
    } else {
      const id = pick();
      this.ids.splice(this.ids.indexOf(id), 1);
      await this.client.sql(`DELETE FROM ${this.table} WHERE id = $1`, [id]);
    }
    this.writes += 1;
  }

  /** Writes until stop() (or `limit` writes). */
  async run(limit = Infinity): Promise<void> {
    while (!this.stopped && this.writes < limit) await this.step();
  }

  stop(): void {
    this.stopped = true;
  }
}

/** Follows a subscription with its own model of the rows and counts what it sees. */
export class Checker {
  readonly rows = new Map<string, Item>();
  readonly subscription: Subscription;
  /** Live changes received (inserts, updates, deletes). */
  changes = 0;
  /** Rows a resume sent as changed since, and deletes it sent. */
  resumedRows = 0;
  resumeDeletes = 0;
  /** Resumes (initial data with `resumed: true`) and snapshots. */
  resumes = 0;
  snapshots = 0;
  /** The same seq delivered twice. */
  duplicateSeqs = 0;
  /** An insert of a row it had, an update of a row it did not have, a (live) delete of a row it did not have. */
  anomalies: string[] = [];
  kills = 0;
  resets = 0;
  private readonly seqs = new Set<string>();
  private staging: Map<string, Item> | undefined;

  constructor(client: KalamClient, table: string) {
    this.subscription = client.subscribe<Item>(
      watchSql(table),
      {},
      {
        onInitialData: (rows, info) => {
          if (info.resumed) {
            if (info.batch === 0) this.resumes += 1;
            this.resumedRows += rows.length;
            for (const row of rows) this.rows.set(row.id, row);
            return;
          }
          if (info.batch === 0) this.staging = new Map();
          for (const row of rows) this.staging!.set(row.id, row);
          if (!info.hasMore) {
            this.snapshots += 1;
            this.rows.clear();
            for (const [id, row] of this.staging!) this.rows.set(id, row);
          }
        },
        onChange: (change) => this.apply(change),
        onEnd: (info) => {
          if (info.reason === 'killed') this.kills += 1;
        },
        onReset: () => {
          this.resets += 1;
        },
      },
    );
  }

  private apply(change: LiveChange<Item>): void {
    if (this.seqs.has(change.seq)) this.duplicateSeqs += 1;
    this.seqs.add(change.seq);
    if (change.resumed) this.resumeDeletes += 1;
    else this.changes += 1;
    const row = change.rows[0];
    const old = change.oldValues[0];
    switch (change.type) {
      case 'insert':
        if (this.rows.has(row!.id)) this.anomalies.push(`insert of row ${row!.id} it had (seq ${change.seq})`);
        this.rows.set(row!.id, row!);
        break;
      case 'update':
        if (!this.rows.has(row!.id)) this.anomalies.push(`update of row ${row!.id} it did not have (seq ${change.seq})`);
        if (old && old.v !== this.rows.get(old.id)?.v) this.anomalies.push(`update of row ${old.id} from v ${old.v}, it had ${this.rows.get(old.id)?.v}`);
        this.rows.set(row!.id, row!);
        break;
      case 'delete':
        // A resume delete may name a row inserted and deleted while disconnected.
        if (!change.resumed && !this.rows.has(old!.id)) this.anomalies.push(`delete of row ${old!.id} it did not have (seq ${change.seq})`);
        this.rows.delete(old!.id);
        break;
    }
  }

  sorted(): Item[] {
    return [...this.rows.values()].sort((a, b) => Number(BigInt(a.id) - BigInt(b.id)));
  }
}

export function byId(rows: readonly Item[]): Item[] {
  return [...rows].sort((a, b) => Number(BigInt(a.id) - BigInt(b.id)));
}
