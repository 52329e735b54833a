// Live queries against the real server: initial rows and changes, the
// materialised view, subscriptions that fail or that the server ends, and
// resuming without a lost or duplicated change after KILL LIVE QUERY, a cut
// TCP connection and a half-open one, while another client keeps writing.

import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';
import {
  KalamClient,
  isKalamError,
  type EndInfo,
  type InitialDataInfo,
  type KalamError,
  type LiveChange,
  type LiveRowsEvent,
  type LiveState,
} from '@kalamdb/client';
import { TcpProxy, loggedIn, random, sharedServer, sleep, testSeed, unique, waitFor } from './helpers.js';
import { Checker, Writer, byId, selectSql, watchSql, type Item } from './workload.js';

const { url, rootPassword } = sharedServer();
const serverPort = Number(new URL(url).port);
const ns = unique('tsc_live');
const user = unique('u');
let root: KalamClient;

before(async () => {
  root = new KalamClient({ url });
  await root.login('root', rootPassword);
  await root.sql(`CREATE NAMESPACE ${ns}; CREATE USER '${user}' WITH PASSWORD 'pw' ROLE user`);
});

after(async () => {
  await root.sql(`DROP NAMESPACE ${ns} CASCADE; DROP USER '${user}'`);
  root.close();
});

async function itemsTable(name: string): Promise<string> {
  const table = `${ns}.${name}`;
  await root.sql(`CREATE USER TABLE ${table} (id BIGINT PRIMARY KEY, v INT NOT NULL, tag TEXT NOT NULL)`);
  return table;
}

/** KILL LIVE QUERY, as an operator would after finding it in system.live_queries. */
async function kill(liveId: string | undefined): Promise<void> {
  const listed = await root.query<{ query: string }>('SELECT query FROM system.live_queries WHERE live_id = $1', [liveId ?? '']);
  assert.equal(listed.length, 1, `live query ${liveId} is listed`);
  await root.sql(`KILL LIVE QUERY '${liveId}'`);
}

test('initial rows in batches, then every change with old_values, in order', async () => {
  const table = await itemsTable('basic');
  const client = await loggedIn(url, user, 'pw');
  await client.sql(`INSERT INTO ${table} (id, v, tag) VALUES (1, 1, 'in'), (2, 2, 'in'), (3, 3, 'in'), (4, 4, 'in'), (5, 5, 'out')`);
  const batches: Array<[Item[], InitialDataInfo]> = [];
  const changes: LiveChange<Item>[] = [];
  const states: LiveState[] = [];
  const sub = client.subscribe<Item>(`${watchSql(table)} ORDER BY id`, { batchSize: 2 }, {
    onInitialData: (rows, info) => batches.push([rows, info]),
    onChange: (change) => changes.push(change),
    onState: (state) => states.push(state),
  });
  await waitFor(() => sub.state === 'live', 'the subscription to be live');
  assert.deepEqual(
    batches.map(([rows, info]) => [rows.map((r) => r.id), info.batch, info.hasMore, info.resumed]),
    [
      [['1', '2'], 0, true, false],
      [['3', '4'], 1, false, false],
    ],
    'batches of 2',
  );
  assert.deepEqual(sub.columns.map((c) => [c.name, c.type]), [
    ['id', 'BIGINT'],
    ['v', 'INT'],
    ['tag', 'TEXT'],
  ]);
  assert.ok(sub.liveId, 'the server gave a live_id');
  assert.match(sub.lastSeq ?? '', /^\d+$/, 'lastSeq is the seq of subscribed, a string');

  await client.sql(`INSERT INTO ${table} (id, v, tag) VALUES (6, 6, 'in')`);
  await client.sql(`UPDATE ${table} SET v = 10 WHERE id = 1`);
  await client.sql(`UPDATE ${table} SET tag = 'out' WHERE id = 2`); // leaves the WHERE: a delete
  await client.sql(`UPDATE ${table} SET tag = 'in' WHERE id = 5`); // enters it: an insert
  await client.sql(`UPDATE ${table} SET v = 99 WHERE id = 2`); // outside the WHERE: nothing
  await client.sql(`DELETE FROM ${table} WHERE id = 3`);
  await waitFor(() => changes.length >= 5, 'five changes');
  await sleep(100);
  assert.deepEqual(
    changes.map((c) => [c.type, c.rows.map((r) => `${r.id}:${r.v}`), c.oldValues.map((r) => `${r.id}:${r.v}`), c.resumed]),
    [
      ['insert', ['6:6'], [], false],
      ['update', ['1:10'], ['1:1'], false],
      ['delete', [], ['2:2'], false],
      ['insert', ['5:5'], [], false],
      ['delete', [], ['3:3'], false],
    ],
  );
  const seqs = changes.map((c) => BigInt(c.seq));
  assert.ok(seqs.every((s, i) => i === 0 || s > seqs[i - 1]!), 'seqs increase');
  assert.equal(sub.lastSeq, changes[changes.length - 1]!.seq);
  assert.deepEqual(states, ['live']);

  let ended: EndInfo | undefined;
  const sub2 = client.subscribe(watchSql(table), {}, { onEnd: (info) => (ended = info) });
  await waitFor(() => sub2.state === 'live', 'a second subscription');
  sub2.unsubscribe();
  assert.equal(ended?.reason, 'client');
  assert.equal(sub2.state, 'closed');
  await waitFor(
    async () => (await client.query('SELECT live_id FROM system.live_queries')).length === 1,
    'system.live_queries to drop the unsubscribed one',
  );
  client.close();
  assert.equal(sub.state, 'closed');
});

test('liveRows keeps the result set by key and notifies on every change', async () => {
  const table = await itemsTable('view');
  const client = await loggedIn(url, user, 'pw');
  await client.sql(`INSERT INTO ${table} (id, v, tag) VALUES (1, 1, 'in'), (2, 2, 'out')`);
  const view = client.liveRows<Item>(watchSql(table), { key: 'id', sort: (a, b) => Number(a.id) - Number(b.id) });
  const events: LiveRowsEvent<Item>['type'][] = [];
  view.onChange((_rows, event) => events.push(event.type));
  await view.whenReady();
  assert.deepEqual(view.rows, [{ id: '1', v: 1, tag: 'in' }]);
  await client.sql(`INSERT INTO ${table} (id, v, tag) VALUES (0, 0, 'in')`);
  await client.sql(`UPDATE ${table} SET tag = 'in' WHERE id = 2`);
  await client.sql(`UPDATE ${table} SET v = v + 10 WHERE id = 1`);
  await client.sql(`DELETE FROM ${table} WHERE id = 0`);
  const expected = await client.query<Item>(selectSql(table));
  await waitFor(() => JSON.stringify(view.rows) === JSON.stringify(expected), 'the view to match SELECT');
  assert.deepEqual(view.rows, [
    { id: '1', v: 11, tag: 'in' },
    { id: '2', v: 2, tag: 'in' },
  ]);
  assert.deepEqual(view.get('2'), { id: '2', v: 2, tag: 'in' });
  assert.deepEqual(events.filter((e) => e !== 'state'), ['snapshot', 'insert', 'insert', 'update', 'delete']);
  client.close();
});

test('a subscription that fails gets a typed error and ends; the others go on', async () => {
  const table = await itemsTable('errors');
  const client = await loggedIn(url, user, 'pw');
  const good = client.liveRows<Item>(watchSql(table), { key: 'id' });
  await good.whenReady();
  const failures: Array<[string, KalamError | undefined, EndInfo | undefined]> = [];
  for (const sql of [
    `SELEC id FROM ${table}`,
    `SELECT id FROM ${ns}.ghost`,
    `SELECT a.id FROM ${table} a JOIN ${table} b ON a.id = b.id`,
    `SELECT count(*) FROM ${table}`,
  ]) {
    let error: KalamError | undefined;
    let end: EndInfo | undefined;
    const sub = client.subscribe(sql, {}, { onError: (e) => (error = e), onEnd: (info) => (end = info) });
    await waitFor(() => sub.state === 'closed', `${sql} to fail`);
    failures.push([sql, error, end]);
  }
  assert.deepEqual(
    failures.map(([, error, end]) => [error?.code, end?.reason, end?.willResubscribe]),
    [
      ['INVALID_SQL', 'error', false],
      ['NOT_FOUND', 'error', false],
      ['INVALID_SQL', 'error', false],
      ['INVALID_SQL', 'error', false],
    ],
  );
  assert.ok(failures.every(([, error]) => error?.subscriptionId !== undefined && error.message.length > 0));
  const rejected = await good.whenReady().then(() => 'ok');
  assert.equal(rejected, 'ok');
  const failed = client.liveRows(`SELECT id FROM ${ns}.ghost`, { key: 'id' });
  await assert.rejects(failed.whenReady(), (e: unknown) => isKalamError(e, 'NOT_FOUND'));
  // The connection is still up and the good subscription still works.
  await client.sql(`INSERT INTO ${table} (id, v, tag) VALUES (1, 1, 'in')`);
  await waitFor(() => good.size === 1, 'the good subscription to see the insert');
  assert.equal(client.connectionState, 'live');
  client.close();
});

test('a refused token ends every subscription with UNAUTHORIZED when there is no getToken', async () => {
  const client = new KalamClient({ url, token: 'not-a-token' });
  const errors: KalamError[] = [];
  const ends: EndInfo[] = [];
  const sub = client.subscribe(`SELECT * FROM ${ns}.nothing`, {}, {
    onError: (e) => errors.push(e),
    onEnd: (info) => ends.push(info),
  });
  await waitFor(() => sub.state === 'closed', 'the subscription to end');
  assert.deepEqual(errors.map((e) => e.code), ['UNAUTHORIZED']);
  assert.deepEqual(ends.map((e) => e.reason), ['error']);
  assert.equal(client.connectionState, 'idle');
  client.close();
});

/** Reconnect under writes: the figures, and the proof that nothing was lost or applied twice. */
async function outage(kind: 'kill' | 'cut', rounds: number): Promise<void> {
  const table = await itemsTable(`outage_${kind}`);
  const proxy = new TcpProxy(serverPort);
  await proxy.start();
  const reported: string[] = [];
  const subscriber = await loggedIn(proxy.url, user, 'pw', {
    // A longer first delay, so that writes happen while it is away.
    backoff: { initialDelayMs: 300, maxDelayMs: 1000 },
    onError: (e) => reported.push(e.code),
  });
  const writerClient = await loggedIn(url, user, 'pw');
  const writer = new Writer(writerClient, table, random(testSeed + (kind === 'kill' ? 1 : 2)));
  await writer.run(30);
  const checker = new Checker(subscriber, table);
  const view = subscriber.liveRows<Item>(watchSql(table), { key: 'id' });
  let away: number | undefined;
  let writtenWhileAway = 0;
  view.onChange((_rows, event) => {
    if (event.type !== 'state') return;
    if (event.state !== 'live' && away === undefined) away = writer.writes;
    if (event.state === 'live' && away !== undefined) {
      writtenWhileAway += writer.writes - away;
      away = undefined;
    }
  });
  await view.whenReady();
  await waitFor(() => checker.subscription.state === 'live', 'the checker to be live');

  const running = writer.run();
  for (let round = 0; round < rounds; round += 1) {
    const mark = checker.changes;
    await waitFor(() => checker.changes >= mark + 20, 'changes to flow');
    if (kind === 'kill') {
      await kill(view.subscription.liveId);
      await kill(checker.subscription.liveId);
      await waitFor(() => view.state !== 'live' || checker.kills > round, 'the kill to arrive');
    } else {
      proxy.refusing = true;
      assert.ok(proxy.cut() >= 1, 'a connection to cut');
      const mark2 = writer.writes;
      await waitFor(() => writer.writes >= mark2 + 40, 'writes while the connection is down');
      proxy.refusing = false;
    }
    await waitFor(() => view.state === 'live' && checker.subscription.state === 'live', 'both subscriptions to resume');
  }
  const mark = checker.changes;
  await waitFor(() => checker.changes >= mark + 20, 'changes to flow after the last resume');
  writer.stop();
  await running;

  const expected = await writerClient.query<Item>(selectSql(table));
  await waitFor(
    () => JSON.stringify(byId(view.rows)) === JSON.stringify(expected) && JSON.stringify(checker.sorted()) === JSON.stringify(expected),
    'the live rows to equal a fresh SELECT',
  );
  const received = checker.changes + checker.resumedRows + checker.resumeDeletes;
  console.log(
    `# ${kind === 'kill' ? 'KILL LIVE QUERY' : 'cut TCP connection'} x${rounds} (seed ${testSeed}): ` +
      `${writer.writes} changes written, ${writtenWhileAway} of them while disconnected; ` +
      `received ${received} (${checker.changes} live changes, ${checker.resumes} resumes with ${checker.resumedRows} rows changed since ` +
      `and ${checker.resumeDeletes} deletes); duplicates ${checker.duplicateSeqs}; anomalies ${checker.anomalies.length}; ` +
      `final rows ${expected.length} = SELECT`,
  );
  assert.equal(checker.duplicateSeqs, 0, 'no change delivered twice');
  assert.deepEqual(checker.anomalies, [], 'no change contradicts the rows');
  assert.equal(checker.snapshots, 1, 'one snapshot, then only resumes');
  assert.equal(checker.resumes, rounds, 'one resume per outage');
  assert.ok(writtenWhileAway > 0, 'writes happened while disconnected');
  if (kind === 'kill') assert.equal(checker.kills, rounds);
  else assert.ok(reported.includes('NETWORK_ERROR'), `the lost connection was reported: ${reported.join(',')}`);
  subscriber.close();
  writerClient.close();
  await proxy.stop();
}

test('KILL LIVE QUERY while another client writes: resubscribed from the last seq, nothing lost or doubled', () => outage('kill', 3));

test('a cut TCP connection while another client writes: reconnected and resumed, nothing lost or doubled', () => outage('cut', 3));

test('a half-open connection is noticed by the heartbeat, and the subscription resumes', async () => {
  const table = await itemsTable('halfopen');
  const proxy = new TcpProxy(serverPort);
  await proxy.start();
  // Counted, not polled: with the tests' 50 ms backoff the client may be
  // reconnecting for less time than one poll of waitFor.
  let reconnects = 0;
  const client = await loggedIn(proxy.url, user, 'pw', {
    heartbeat: { intervalMs: 200, timeoutMs: 400 },
    onStateChange: (state) => {
      if (state === 'reconnecting') reconnects += 1;
    },
  });
  const writer = await loggedIn(url, user, 'pw');
  try {
    const view = client.liveRows<Item>(watchSql(table), { key: 'id' });
    await view.whenReady();
    // The ping sent behind the subscribe must be answered first: while it
    // is pending the heartbeat is patient for as long as a subscribe may
    // take (70 s), longer than this test waits.
    await sleep(500);
    assert.equal(proxy.blackholeCurrent(), 1);
    for (let i = 1; i <= 10; i += 1) await writer.sql(`INSERT INTO ${table} (id, v, tag) VALUES ($1, $1, 'in')`, [String(i)]);
    await waitFor(() => reconnects > 0, 'the heartbeat to notice');
    await waitFor(() => view.state === 'live', 'the resume');
    const expected = await writer.query<Item>(selectSql(table));
    await waitFor(() => JSON.stringify(byId(view.rows)) === JSON.stringify(expected), 'the view to match SELECT');
    assert.equal(view.size, 10);
  } finally {
    client.close();
    writer.close();
    await proxy.stop();
  }
});

test('subscriptions the server ends are surfaced: schema_changed, table_dropped, killed without resubscribe', async () => {
  const table = await itemsTable('ended');
  const client = await loggedIn(url, user, 'pw');
  const ends: Record<string, EndInfo> = {};
  const watch = (name: string, sql: string, resubscribeOnKill = true) =>
    client.subscribe(sql, { resubscribeOnKill }, { onEnd: (info) => (ends[name] = info) });
  const byTag = watch('byTag', watchSql(table));
  const all = watch('all', `SELECT * FROM ${table}`);
  const killed = watch('killed', `SELECT id FROM ${table}`, false);
  await waitFor(() => [byTag, all, killed].every((s) => s.state === 'live'), 'three live subscriptions');
  await root.sql(`KILL LIVE QUERY '${killed.liveId}'`);
  await waitFor(() => killed.state === 'closed', 'the killed subscription to end');
  assert.equal(ends.killed?.reason, 'killed');
  assert.equal(ends.killed?.willResubscribe, false);
  assert.match(ends.killed?.lastSeq ?? '', /^\d+$/);

  await root.sql(`ALTER TABLE ${table} RENAME COLUMN tag TO label`);
  await waitFor(() => byTag.state === 'closed', 'the subscription on the renamed column to end');
  assert.equal(ends.byTag?.reason, 'schema_changed');
  assert.equal(all.state, 'live', 'SELECT * follows the ALTER');

  await root.sql(`DROP TABLE ${table}`);
  await waitFor(() => all.state === 'closed', 'the subscription on the dropped table to end');
  assert.equal(ends.all?.reason, 'table_dropped');
  assert.equal(ends.all?.willResubscribe, false);
  client.close();
});

test('RESUME_TOO_OLD (a STREAM table evicted what the client missed): reset signal, then a fresh snapshot', async () => {
  const table = `${ns}.events`;
  await root.sql(`CREATE STREAM TABLE ${table} (body TEXT) WITH (retention = '10 minutes', max_buffer = 5)`);
  const proxy = new TcpProxy(serverPort);
  await proxy.start();
  const client = await loggedIn(proxy.url, user, 'pw');
  const writer = await loggedIn(url, user, 'pw');
  await writer.sql(`INSERT INTO ${table} (body) VALUES ('a'), ('b')`);
  const view = client.liveRows<{ id: string; body: string }>(`SELECT id, body FROM ${table}`, { key: 'id' });
  const events: string[] = [];
  view.onChange((_rows, event) => {
    if (event.type !== 'state') events.push(event.type);
  });
  await view.whenReady();
  await writer.sql(`INSERT INTO ${table} (body) VALUES ('c')`);
  await waitFor(() => view.size === 3, 'the live event');
  proxy.refusing = true;
  proxy.cut();
  for (const body of ['d', 'e', 'f', 'g', 'h', 'i', 'j']) await writer.sql(`INSERT INTO ${table} (body) VALUES ($1)`, [body]);
  proxy.refusing = false;
  await waitFor(() => events.includes('reset') && view.state === 'live', 'the reset and a new snapshot');
  const expected = await writer.query<{ id: string; body: string }>(`SELECT id, body FROM ${table} ORDER BY id`);
  assert.deepEqual(expected.map((r) => r.body), ['f', 'g', 'h', 'i', 'j'], 'the stream keeps the last 5');
  await waitFor(() => JSON.stringify(view.rows.map((r) => r.body).sort()) === JSON.stringify(expected.map((r) => r.body)), 'the view to hold them');
  assert.deepEqual(events, ['snapshot', 'insert', 'reset', 'snapshot']);
  client.close();
  writer.close();
  await proxy.stop();
});

test('close() during reconnect ends everything and stops reconnecting', async () => {
  const table = await itemsTable('closing');
  const proxy = new TcpProxy(serverPort);
  await proxy.start();
  const states: string[] = [];
  const client = await loggedIn(proxy.url, user, 'pw', {
    backoff: { initialDelayMs: 20, maxDelayMs: 40 },
    onStateChange: (state) => states.push(state),
  });
  const ends: EndInfo[] = [];
  const sub = client.subscribe(watchSql(table), {}, { onEnd: (info) => ends.push(info) });
  await waitFor(() => sub.state === 'live', 'live');
  proxy.refusing = true;
  proxy.cut();
  const accepted = proxy.accepted;
  await waitFor(() => proxy.accepted >= accepted + 3, 'three reconnect attempts');
  assert.equal(sub.state, 'reconnecting');
  client.close();
  assert.equal(client.connectionState, 'closed');
  assert.equal(sub.state, 'closed');
  assert.deepEqual(ends.map((e) => e.reason), ['closed']);
  const after = proxy.accepted;
  proxy.refusing = false;
  await sleep(300);
  assert.equal(proxy.accepted, after, 'no attempt after close()');
  assert.deepEqual(states.slice(0, 3), ['connecting', 'live', 'reconnecting']);
  assert.equal(states[states.length - 1], 'closed');
  assert.throws(() => client.subscribe(watchSql(table)), (e: unknown) => isKalamError(e, 'CLOSED'));
  await proxy.stop();
});

test('revoked users: a password change reconnects with a new token and resumes; a dropped user ends with UNAUTHORIZED', async () => {
  const other = unique('r');
  let password = 'one';
  await root.sql(`CREATE USER '${other}' WITH PASSWORD 'one' ROLE user; CREATE USER TABLE ${ns}.revoked (id BIGINT PRIMARY KEY, v INT NOT NULL, tag TEXT NOT NULL)`);
  const reasons: string[] = [];
  const client = new KalamClient({
    url,
    backoff: { initialDelayMs: 20, maxDelayMs: 100 },
    getToken: async (reason) => {
      reasons.push(reason);
      return (await new KalamClient({ url }).login(other, password)).access_token; // throws UNAUTHORIZED once dropped
    },
  });
  void client.login(other, password); // not awaited: the subscription waits for it
  const errors: KalamError[] = [];
  const ends: EndInfo[] = [];
  const view = client.liveRows<Item>(watchSql(`${ns}.revoked`), { key: 'id' });
  const sub = client.subscribe(watchSql(`${ns}.revoked`), {}, { onError: (e) => errors.push(e), onEnd: (info) => ends.push(info) });
  await view.whenReady();
  assert.deepEqual(reasons, [], 'the first connection used the token of login()');

  password = 'two';
  await root.sql(`ALTER USER '${other}' SET PASSWORD 'two'`);
  await root.sql(`EXECUTE AS USER '${other}' (INSERT INTO ${ns}.revoked (id, v, tag) VALUES (1, 1, 'in'))`);
  await waitFor(() => view.size === 1 && view.state === 'live', 'the resume with the new password');
  assert.deepEqual(reasons, ['unauthorized']);

  await root.sql(`DROP USER '${other}'`);
  await waitFor(() => sub.state === 'closed' && view.state === 'closed', 'the subscriptions to end');
  assert.deepEqual(errors.map((e) => e.code), ['UNAUTHORIZED']);
  assert.deepEqual(ends.map((e) => e.reason), ['error']);
  assert.ok(isKalamError(view.error, 'UNAUTHORIZED'));
  client.close();
});

test('liveRows whose key is not in the column list ends with a typed error instead of staying empty', async () => {
  const table = await itemsTable('nokey');
  const client = await loggedIn(url, user, 'pw');
  await client.sql(`INSERT INTO ${table} (id, v, tag) VALUES (1, 1, 'in')`);
  const view = client.liveRows<Item>(`SELECT v, tag FROM ${table}`, { key: 'id' });
  await assert.rejects(view.whenReady(), (e: unknown) => isKalamError(e, 'INVALID_INPUT') && /no column id/.test((e as Error).message));
  assert.equal(view.state, 'closed');
  assert.equal(client.connectionState, 'live', 'the connection stays');
  client.close();
});

test('handlers may close the client or unsubscribe from inside a callback', async () => {
  const table = await itemsTable('reentrant');
  const closing = new KalamClient({
    url,
    token: (await new KalamClient({ url }).login(user, 'pw')).access_token,
    onStateChange: (state) => {
      if (state === 'live') closing.close();
    },
  });
  const ends: string[] = [];
  closing.subscribe(watchSql(table), {}, { onEnd: (info) => ends.push(info.reason) });
  await waitFor(() => closing.connectionState === 'closed', 'the client to close itself');
  assert.deepEqual(ends, ['closed']);

  const client = await loggedIn(url, user, 'pw');
  await client.sql(`INSERT INTO ${table} (id, v, tag) VALUES (1, 1, 'in'), (2, 2, 'in')`);
  const seen: string[] = [];
  const sub = client.subscribe<Item>(watchSql(table), { batchSize: 1 }, {
    onInitialData: (rows) => {
      seen.push(...rows.map((r) => r.id));
      sub.unsubscribe(); // after the first batch
    },
  });
  await waitFor(() => sub.state === 'closed', 'the unsubscribe');
  await sleep(100);
  assert.deepEqual(seen, ['1'], 'nothing after unsubscribe()');
  client.close();
});

test('liveRows started from saved rows and lastSeq catches up without a snapshot', async () => {
  const table = await itemsTable('saved');
  const client = await loggedIn(url, user, 'pw');
  await client.sql(`INSERT INTO ${table} (id, v, tag) VALUES (1, 1, 'in'), (2, 2, 'in'), (3, 3, 'in')`);
  const first = client.liveRows<Item>(watchSql(table), { key: 'id' });
  await first.whenReady();
  const saved = { rows: [...first.rows], lastSeq: first.subscription.lastSeq! };
  first.close();
  await client.sql(`INSERT INTO ${table} (id, v, tag) VALUES (4, 4, 'in')`);
  await client.sql(`UPDATE ${table} SET v = 20 WHERE id = 2`);
  await client.sql(`UPDATE ${table} SET tag = 'out' WHERE id = 3`);
  await client.sql(`DELETE FROM ${table} WHERE id = 1`);
  const events: string[] = [];
  const second = client.liveRows<Item>(watchSql(table), { key: 'id', fromSeq: saved.lastSeq, rows: saved.rows });
  second.onChange((_rows, event) => events.push(event.type === 'delete' ? `delete${event.resumed ? ' (resumed)' : ''}` : event.type));
  await second.whenReady();
  assert.deepEqual(byId(second.rows), await client.query<Item>(selectSql(table)));
  assert.deepEqual(events.filter((e) => e !== 'state'), ['resync', 'delete (resumed)', 'delete (resumed)', 'snapshot']);
  assert.throws(() => client.liveRows(watchSql(table), { key: 'id', rows: [] }), (e: unknown) => isKalamError(e, 'INVALID_INPUT'));
  assert.throws(() => client.subscribe(watchSql(table), { fromSeq: 'yesterday' }), (e: unknown) => isKalamError(e, 'INVALID_INPUT'));
  client.close();
});
