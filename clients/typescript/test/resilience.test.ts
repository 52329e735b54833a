// Failures that need a server of the test's own: a client that stops
// reading (SLOW_CONSUMER, with a small KALAMDB_WS_QUEUE_CAPACITY), a server
// restart during a subscription, and tokens that expire
// (KALAMDB_TOKEN_TTL_SECS=2).

import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';
import { KalamClient, type EndInfo, type KalamError, type TokenReason } from '@kalamdb/client';
import { PrivateServer, TcpProxy, loggedIn, random, sleep, testSeed, waitFor } from './helpers.js';
import { Checker, Writer, byId, selectSql, watchSql, type Item } from './workload.js';

const TOKEN_TTL_SECS = 2;
const server = new PrivateServer({ KALAMDB_WS_QUEUE_CAPACITY: '16', KALAMDB_TOKEN_TTL_SECS: String(TOKEN_TTL_SECS) });
const user = 'resilient';
let root: KalamClient;

before(async () => {
  await server.start();
  root = await loggedIn(server.url, 'root', server.rootPassword);
  await root.sql(`CREATE NAMESPACE app; CREATE USER '${user}' WITH PASSWORD 'pw' ROLE user`);
});

after(async () => {
  root?.close();
  await server.dispose();
});

test('a client that stops reading gets SLOW_CONSUMER, reconnects and resumes without a gap', async () => {
  await root.sql('CREATE USER TABLE app.big (id BIGINT PRIMARY KEY, body TEXT NOT NULL)');
  const proxy = new TcpProxy(server.port);
  await proxy.start();
  const errors: KalamError[] = [];
  const client = await loggedIn(proxy.url, user, 'pw', { onError: (e) => errors.push(e) });
  const writer = await loggedIn(server.url, user, 'pw');
  const view = client.liveRows<{ id: string; body: string }>('SELECT id, body FROM app.big', { key: 'id', batchSize: 20 });
  await view.whenReady();
  const liveId = view.subscription.liveId!;

  // Stop reading: the server's socket buffer fills up, then its queue of 16.
  proxy.pauseServerToClient(true);
  const body = 'x'.repeat(64 * 1024);
  let written = 0;
  let overflowAt: number | undefined;
  while (written < 3000 && (overflowAt === undefined || written < overflowAt + 20)) {
    written += 1;
    await writer.sql('INSERT INTO app.big (id, body) VALUES ($1, $2)', [String(written), `${written}:${body}`]);
    if (overflowAt === undefined && written % 10 === 0) {
      // `changes` counts the changes queued for the subscription; it stops when the queue overflows.
      const [row] = await root.query<{ changes: string }>('SELECT changes FROM system.live_queries WHERE live_id = $1', [liveId]);
      if (row && Number(row.changes) < written) overflowAt = written;
    }
  }
  assert.ok(overflowAt !== undefined, `the queue overflowed within ${written} writes`);
  proxy.pauseServerToClient(false);

  await waitFor(() => errors.some((e) => e.code === 'SLOW_CONSUMER'), 'SLOW_CONSUMER');
  await waitFor(() => view.state === 'live' && view.size === written, `all ${written} rows`, 60_000);
  const ids = await writer.query<{ id: string; len: number }>('SELECT id, length(body) AS len FROM app.big ORDER BY id');
  assert.deepEqual(
    [...view.rows].map((r) => [r.id, r.body.length]).sort((a, b) => Number(a[0]) - Number(b[0])),
    ids.map((r) => [r.id, Number(r.len)]),
  );
  assert.ok(view.rows.every((r) => r.body.startsWith(`${r.id}:`)));
  console.log(`# slow consumer: queue overflowed after ${overflowAt} writes of 64 KiB; ${written} written; SLOW_CONSUMER, resumed, ${view.size} rows = SELECT`);
  client.close();
  writer.close();
  await proxy.stop();
});

test('a server restart during a subscription: the client reconnects and resumes', async () => {
  await root.sql('CREATE USER TABLE app.items (id BIGINT PRIMARY KEY, v INT NOT NULL, tag TEXT NOT NULL)');
  const proxy = new TcpProxy(server.port);
  await proxy.start();
  const reasons: TokenReason[] = [];
  const client = await loggedIn(proxy.url, user, 'pw', {
    getToken: async (reason) => {
      reasons.push(reason);
      return (await new KalamClient({ url: proxy.url }).login(user, 'pw')).access_token;
    },
  });
  let writerClient = await loggedIn(server.url, user, 'pw');
  const rand = random(testSeed + 3);
  const writer = new Writer(writerClient, 'app.items', rand);
  await writer.run(30);
  const checker = new Checker(client, 'app.items');
  const view = client.liveRows<Item>(watchSql('app.items'), { key: 'id' });
  await view.whenReady();
  await writer.run(60);
  // The last changes before the stop are committed but never delivered: the
  // client is not reading when its connection drops (with what the server
  // had sent) and the server goes down.
  proxy.pauseServerToClient(true);
  await writer.run(90);
  let written = writer.writes;
  assert.equal(written, 90);
  proxy.refusing = true;
  proxy.cut();
  proxy.pauseServerToClient(false);
  await waitFor(() => view.state === 'reconnecting', 'the client to notice');
  await server.stop();
  proxy.refusing = false;
  await sleep(300); // a few refused reconnects
  await server.start();
  proxy.targetPort = server.port;
  root.close();
  root = await loggedIn(server.url, 'root', server.rootPassword);
  await waitFor(() => view.state === 'live' && checker.subscription.state === 'live', 'the resume after the restart', 30_000);
  writerClient.close();
  writerClient = await loggedIn(server.url, user, 'pw');
  // The same workload goes on (its ids are known) through the new connection.
  writer.client = writerClient;
  await writer.run(written + 60);
  written = writer.writes;

  const expected = await writerClient.query<Item>(selectSql('app.items'));
  await waitFor(
    () => JSON.stringify(byId(view.rows)) === JSON.stringify(expected) && JSON.stringify(checker.sorted()) === JSON.stringify(expected),
    'the live rows to equal a fresh SELECT',
  );
  assert.equal(checker.duplicateSeqs, 0);
  assert.deepEqual(checker.anomalies, []);
  assert.equal(checker.snapshots, 1, 'resumed, not reloaded');
  assert.equal(checker.resumes, 1);
  assert.ok(reasons.includes('reconnect'), `getToken was asked before reconnecting: ${reasons.join(',')}`);
  console.log(
    `# server restart: ${written} changes written (30 undelivered when it stopped, 60 after the restart); ` +
      `received ${checker.changes} live changes, ${checker.resumedRows} rows and ${checker.resumeDeletes} deletes in ${checker.resumes} resume; ` +
      `duplicates ${checker.duplicateSeqs}; anomalies ${checker.anomalies.length}; final rows ${expected.length} = SELECT`,
  );
  client.close();
  writerClient.close();
  await proxy.stop();
});

test('an expired token: getToken is called before reconnecting and on UNAUTHORIZED; without it the subscription ends', async () => {
  await root.sql('CREATE USER TABLE app.notes (id BIGINT PRIMARY KEY, body TEXT)');
  const proxy = new TcpProxy(server.port);
  await proxy.start();
  const login = async () => (await new KalamClient({ url: server.url }).login(user, 'pw')).access_token;

  // 1. getToken hands out a stale token for `reconnect` (as an app with a cached token
  //    would), then a fresh one once the server refused it.
  const stale = await login();
  const reasons: TokenReason[] = [];
  const refreshing = new KalamClient({
    url: proxy.url,
    token: stale,
    backoff: { initialDelayMs: 20, maxDelayMs: 100 },
    getToken: async (reason) => {
      reasons.push(reason);
      return reason === 'unauthorized' ? login() : stale;
    },
  });
  // 2. No getToken: once the token has expired, a reconnect cannot succeed.
  let ended: EndInfo | undefined;
  const stuck = new KalamClient({ url: proxy.url, token: stale, backoff: { initialDelayMs: 20, maxDelayMs: 100 } });

  const view = refreshing.liveRows<{ id: string; body: string }>('SELECT id, body FROM app.notes', { key: 'id' });
  const errors: string[] = [];
  const stuckSub = stuck.subscribe('SELECT id, body FROM app.notes', {}, {
    onError: (e) => errors.push(e.code),
    onEnd: (info) => (ended = info),
  });
  await view.whenReady();
  await waitFor(() => stuckSub.state === 'live', 'the second client');
  await sleep(TOKEN_TTL_SECS * 1000 + 1100); // both tokens expire; open connections stay up
  await refreshing.sql("INSERT INTO app.notes (id, body) VALUES (1, 'after expiry')"); // 401, refresh, retry
  assert.deepEqual(reasons, ['unauthorized']);
  await waitFor(() => view.size === 1, 'the insert over the connection opened with the old token');

  proxy.cut();
  await waitFor(() => stuckSub.state === 'closed', 'the client without getToken to give up');
  assert.deepEqual(errors, ['UNAUTHORIZED']);
  assert.equal(ended?.reason, 'error');
  assert.match(ended?.error?.message ?? '', /expired/);

  await waitFor(() => view.state === 'live' && reasons.length >= 3, 'the refreshing client to resume');
  assert.deepEqual(reasons, ['unauthorized', 'reconnect', 'unauthorized']);
  await root.sql(`EXECUTE AS USER '${user}' (INSERT INTO app.notes (id, body) VALUES (2, 'resumed'))`);
  await waitFor(() => view.size === 2, 'changes after the refresh');
  refreshing.close();
  stuck.close();
  await proxy.stop();
});
