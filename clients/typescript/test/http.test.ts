// HTTP side of the client against the real server: login, POST /api/sql
// with parameters and a namespace, typed errors.

import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';
import { KalamClient, KalamError, isKalamError, type LoginResponse } from '@kalamdb/client';
import { sharedServer, unique } from './helpers.js';

const { url, rootPassword } = sharedServer();
const ns = unique('tsc_http');
const user = unique('u');
let root: KalamClient;

before(async () => {
  root = new KalamClient({ url });
  await root.login('root', rootPassword);
  await root.sql(
    `CREATE NAMESPACE ${ns}; CREATE USER TABLE ${ns}.notes (id BIGINT PRIMARY KEY, body TEXT NOT NULL, n INT);
     CREATE USER '${user}' WITH PASSWORD 'pw' ROLE user`,
  );
});

after(async () => {
  await root.sql(`DROP NAMESPACE ${ns} CASCADE; DROP USER '${user}'`);
  root.close();
});

test('health and login', async () => {
  const client = new KalamClient({ url });
  assert.equal((await client.health()).status, 'ok');
  const session: LoginResponse = await client.login(user, 'pw');
  assert.equal(session.token_type, 'Bearer');
  assert.equal(session.role, 'user');
  assert.equal(session.user_id, user);
  assert.equal(client.accessToken, session.access_token);
  client.close();
});

test('POST /api/sql with params and namespace; BIGINT values stay strings', async () => {
  const client = new KalamClient({ url });
  await client.login(user, 'pw');
  const big = '9007199254740993'; // 2^53 + 1: a JavaScript number would round it
  const inserted = await client.sql('INSERT INTO notes (id, body, n) VALUES ($1, $2, $3), ($4, $5, NULL)', [big, 'hi', 7, '2', 'there'], {
    namespace: ns,
  });
  assert.equal(inserted.results[0]!.row_count, 2);
  const rows = await client.query<{ id: string; body: string; n: number | null }>(
    `SELECT id, body, n FROM ${ns}.notes WHERE id = $1 OR body = $2 ORDER BY id`,
    [big, 'there'],
  );
  assert.deepEqual(rows, [
    { id: '2', body: 'there', n: null },
    { id: big, body: 'hi', n: 7 },
  ]);
  const me = await client.query<{ me: string }>('SELECT CURRENT_USER() AS me');
  assert.equal(me[0]!.me, user);
  client.close();
});

test('errors are KalamErrors with the server code and HTTP status', async () => {
  const client = new KalamClient({ url });
  await client.login(user, 'pw');
  const expectError = async (promise: Promise<unknown>, code: string, status: number) => {
    const error = await promise.then(
      () => assert.fail(`expected ${code}`),
      (e: unknown) => e,
    );
    assert.ok(error instanceof KalamError, `a KalamError, got ${String(error)}`);
    assert.equal(error.code, code, error.message);
    assert.equal(error.status, status);
    return error;
  };
  const bad = await expectError(client.sql('SELEC 1'), 'INVALID_SQL', 400);
  assert.match(bad.message, /SELEC/);
  const missing = await expectError(client.sql(`SELECT * FROM ${ns}.ghost`), 'NOT_FOUND', 400);
  assert.match(missing.message, /ghost/);
  await expectError(client.sql(`CREATE NAMESPACE ${ns}_nope`), 'PERMISSION_DENIED', 403);
  const dup = await expectError(
    client.sql(`INSERT INTO ${ns}.notes (id, body) VALUES (100, 'a'); INSERT INTO ${ns}.notes (id, body) VALUES (100, 'b')`),
    'CONSTRAINT_VIOLATION',
    400,
  );
  assert.equal(dup.results.length, 1, 'the result of the statement that succeeded');
  assert.match(dup.statement ?? '', /'b'/);
  await expectError(new KalamClient({ url }).login(user, 'wrong'), 'UNAUTHORIZED', 401);
  await expectError(new KalamClient({ url, token: 'not-a-token' }).sql('SELECT 1'), 'UNAUTHORIZED', 401);
  const noToken = await new KalamClient({ url }).sql('SELECT 1').catch((e: unknown) => e);
  assert.ok(isKalamError(noToken, 'UNAUTHORIZED'));
  const down = await new KalamClient({ url: 'http://127.0.0.1:9' }).health().catch((e: unknown) => e);
  assert.ok(isKalamError(down, 'NETWORK_ERROR'), String(down));
  client.close();
});

test('a 401 calls getToken and retries once', async () => {
  const reasons: string[] = [];
  const client = new KalamClient({
    url,
    token: 'expired-or-garbage',
    getToken: async (reason) => {
      reasons.push(reason);
      return (await new KalamClient({ url }).login(user, 'pw')).access_token;
    },
  });
  const rows = await client.query<{ one: string }>('SELECT 1 AS one'); // an Int64 literal: a string
  assert.deepEqual(rows, [{ one: '1' }]);
  assert.deepEqual(reasons, ['unauthorized']);
  client.close();
});

test('close() aborts requests in flight and refuses new ones', async () => {
  const client = new KalamClient({ url });
  await client.login(user, 'pw');
  const pending = client.sql('SELECT 1').catch((e: unknown) => e);
  client.close();
  const error = await pending;
  // Either it finished before the abort took effect, or it was aborted.
  assert.ok(!(error instanceof Error) || isKalamError(error, 'CLOSED'), String(error));
  await assert.rejects(client.sql('SELECT 1'), (e: unknown) => isKalamError(e, 'CLOSED'));
});
