// Test helpers: the server under test, a TCP proxy the tests can cut, pause
// and refuse, waiting, and a seeded random generator.

import { spawn, type ChildProcess } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { createServer, connect, type Server, type Socket } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { KalamClient, type KalamClientOptions } from '@kalamdb/client';

/** The shared server started by openapi/test-clients.sh (or by run-tests.mjs). */
export function sharedServer(): { url: string; rootPassword: string } {
  const url = process.env.KALAMDB_URL;
  const rootPassword = process.env.KALAMDB_ROOT_PASSWORD;
  if (!url || !rootPassword) throw new Error('set KALAMDB_URL and KALAMDB_ROOT_PASSWORD (scripts/run-tests.mjs does)');
  return { url, rootPassword };
}

export function serverBinary(): string {
  const bin = process.env.KALAMDB_SERVER_BIN;
  if (!bin) throw new Error('set KALAMDB_SERVER_BIN to the kalamdb-server binary');
  return bin;
}

/** A server of the test's own (its own data directory and settings), which it may stop and start again. */
export class PrivateServer {
  private child: ChildProcess | undefined;
  readonly dataDir = mkdtempSync(join(tmpdir(), 'kalamdb-ts-client-'));
  readonly rootPassword = `root-${Math.random().toString(36).slice(2)}`;
  url = '';
  port = 0;
  private log = '';

  constructor(private readonly env: Record<string, string> = {}) {}

  async start(): Promise<void> {
    const child = spawn(serverBinary(), [], {
      env: {
        ...process.env,
        KALAMDB_LISTEN: '127.0.0.1:0',
        KALAMDB_PG_LISTEN: 'off',
        KALAMDB_DATA_DIR: this.dataDir,
        KALAMDB_ROOT_PASSWORD: this.rootPassword,
        KALAMDB_LOG: 'warn',
        ...this.env,
      },
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    this.child = child;
    child.stderr!.on('data', (chunk: Buffer) => {
      this.log = (this.log + chunk.toString()).slice(-20_000);
    });
    this.url = await new Promise<string>((resolve, reject) => {
      let out = '';
      const timer = setTimeout(() => reject(new Error(`the server did not start: ${this.log}`)), 60_000);
      child.stdout!.on('data', (chunk: Buffer) => {
        out += chunk.toString();
        const match = /listening on (http:\S+)/.exec(out);
        if (match) {
          clearTimeout(timer);
          resolve(match[1]!);
        }
      });
      child.once('exit', (code) => {
        clearTimeout(timer);
        reject(new Error(`the server exited with ${code}: ${this.log}`));
      });
    });
    this.port = Number(new URL(this.url).port);
  }

  /** SIGTERM, as an operator would; waits for the exit. */
  async stop(): Promise<void> {
    const child = this.child;
    this.child = undefined;
    if (!child || child.exitCode !== null) return;
    const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()));
    child.kill('SIGTERM');
    const timer = setTimeout(() => child.kill('SIGKILL'), 15_000);
    await exited;
    clearTimeout(timer);
  }

  async dispose(): Promise<void> {
    await this.stop();
    rmSync(this.dataDir, { recursive: true, force: true });
  }
}

/**
 * A TCP proxy in front of the server: the client under test connects
 * through it, and the test cuts its connections, refuses new ones, stops
 * forwarding (a half-open connection), or stops reading from the server
 * (a client that does not read).
 */
export class TcpProxy {
  private server: Server | undefined;
  private readonly pairs = new Set<{ client: Socket; upstream: Socket; blackholed: boolean }>();
  port = 0;
  /** New connections are closed at once (the server looks down). */
  refusing = false;
  /** Connections accepted (refused ones included). */
  accepted = 0;
  private paused = false;

  constructor(public targetPort: number) {}

  get url(): string {
    return `http://127.0.0.1:${this.port}`;
  }

  async start(): Promise<void> {
    this.server = createServer((client) => this.accept(client));
    await new Promise<void>((resolve) => this.server!.listen(0, '127.0.0.1', () => resolve()));
    this.port = (this.server.address() as { port: number }).port;
  }

  private accept(client: Socket): void {
    this.accepted += 1;
    if (this.refusing) {
      client.resetAndDestroy();
      return;
    }
    const upstream = connect(this.targetPort, '127.0.0.1');
    const pair = { client, upstream, blackholed: false };
    this.pairs.add(pair);
    const forward = (from: Socket, to: Socket, fromServer: boolean) => {
      from.on('data', (data) => {
        if (pair.blackholed) return;
        if (!to.write(data)) from.pause();
      });
      to.on('drain', () => {
        if (!(fromServer && this.paused)) from.resume();
      });
    };
    forward(client, upstream, false);
    forward(upstream, client, true);
    if (this.paused) upstream.pause();
    const close = () => {
      client.destroy();
      upstream.destroy();
      this.pairs.delete(pair);
    };
    client.on('close', close);
    upstream.on('close', close);
    client.on('error', close);
    upstream.on('error', close);
  }

  /** Drops every connection at once (both sides see a reset). Returns how many. */
  cut(): number {
    const n = this.pairs.size;
    for (const { client, upstream } of [...this.pairs]) {
      client.resetAndDestroy();
      upstream.resetAndDestroy();
    }
    this.pairs.clear();
    return n;
  }

  /** The open connections silently lose everything from now on, in both directions, and stay open (a half-open connection). */
  blackholeCurrent(): number {
    for (const pair of this.pairs) pair.blackholed = true;
    return this.pairs.size;
  }

  /** Stops (or restarts) reading from the server: the server's socket buffer fills up, as with a client that stopped reading. */
  pauseServerToClient(on: boolean): void {
    this.paused = on;
    for (const { upstream } of this.pairs) {
      if (on) upstream.pause();
      else upstream.resume();
    }
  }

  get connections(): number {
    return this.pairs.size;
  }

  async stop(): Promise<void> {
    this.cut();
    await new Promise<void>((resolve) => (this.server ? this.server.close(() => resolve()) : resolve()));
  }
}

export const sleep = (ms: number) => new Promise<void>((resolve) => setTimeout(resolve, ms));

/** Waits until `condition()` holds (checked every 20 ms); fails with `what` after `timeoutMs`. */
export async function waitFor(condition: () => boolean | Promise<boolean>, what: string, timeoutMs = 20_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    if (await condition()) return;
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await sleep(20);
  }
}

/** A seeded generator (mulberry32), so a failing run can be repeated with KALAMDB_TEST_SEED. */
export function random(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

export const testSeed = Number(process.env.KALAMDB_TEST_SEED ?? Math.floor(Math.random() * 2 ** 31));

/** A client logged in as `user`, with a getToken that logs in again. */
export async function loggedIn(
  url: string,
  user: string,
  password: string,
  options: Partial<KalamClientOptions> = {},
): Promise<KalamClient> {
  const client: KalamClient = new KalamClient({
    url,
    backoff: { initialDelayMs: 50, maxDelayMs: 1000 },
    getToken: async () => (await loginClient(url).login(user, password)).access_token,
    ...options,
  });
  await client.login(user, password);
  return client;
}

function loginClient(url: string): KalamClient {
  return new KalamClient({ url });
}

/** A unique name for this run (tables, users). */
export function unique(prefix: string): string {
  return `${prefix}_${Date.now().toString(36)}_${Math.floor(Math.random() * 1e6).toString(36)}`;
}
