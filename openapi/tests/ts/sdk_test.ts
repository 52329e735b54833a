// Check 3: a round trip through the TypeScript SDK generated from
// openapi/openapi.json by @hey-api/openapi-ts. test-clients.sh copies this
// file next to the generated `sdk/` folder, compiles both with tsc and runs
// the result with Node:
//
//   node dist/sdk_test.js BASE_URL ROOT_PASSWORD [NAMESPACE]
//
// It uses nothing but the generated SDK (and Node's standard globals).

import { createClient } from './sdk/client';
import { executeSql, health, login } from './sdk';
import type { ErrorResponse, SqlRequestBody, SqlResponse } from './sdk';

let failures = 0;

function check(condition: boolean, what: string): void {
  console.log(`${condition ? 'ok  ' : 'FAIL'} ${what}`);
  if (!condition) failures += 1;
}

function isErrorResponse(value: unknown): value is ErrorResponse {
  const body = value as ErrorResponse | undefined;
  return body?.status === 'error' && typeof body.error?.code === 'string';
}

async function main(): Promise<number> {
  const [baseUrl, password, ns = 'ts_app'] = process.argv.slice(2);
  if (!baseUrl || !password) {
    console.error('usage: node sdk_test.js BASE_URL ROOT_PASSWORD [NAMESPACE]');
    return 2;
  }
  const publicClient = createClient({ baseUrl });

  const alive = await health({ client: publicClient });
  check(alive.response.status === 200 && alive.data?.status === 'ok', 'GET /health -> HealthResponse');

  const session = await login({ client: publicClient, body: { username: 'root', password } });
  check(session.response.status === 200 && session.data !== undefined, 'login -> LoginResponse');
  if (!session.data) return 1;
  check(session.data.token_type === 'Bearer' && session.data.role === 'system', 'token type Bearer, role system');

  // The SDK adds `Authorization: Bearer <token>` to operations that declare BearerAuth.
  const client = createClient({ baseUrl, auth: session.data.access_token });
  const sql = (text: string, params?: SqlRequestBody['params']) =>
    executeSql({ client, body: params === undefined ? { sql: text } : { sql: text, params } });

  const created = await sql(
    `CREATE NAMESPACE ${ns}; CREATE USER TABLE ${ns}.messages (id BIGINT PRIMARY KEY, body TEXT NOT NULL)`,
  );
  check(created.response.status === 200 && created.data?.status === 'success',
    `create namespace ${ns} and USER table ${ns}.messages -> 200 SqlResponse`);
  check(created.data?.results.length === 2, 'one result per statement');

  const inserted = await sql(`INSERT INTO ${ns}.messages (id, body) VALUES (1, 'hi')`);
  check(inserted.data?.results[0]?.row_count === 1, 'insert a row -> row_count 1');
  const bound = await sql(`INSERT INTO ${ns}.messages (id, body) VALUES ($1, $2)`, ['2', 'there']);
  check(bound.data?.results[0]?.row_count === 1, 'insert with $1/$2 parameters -> row_count 1');

  const selected = await sql(`SELECT id, body FROM ${ns}.messages ORDER BY id`);
  const result: SqlResponse['results'][number] | undefined = selected.data?.results[0];
  check(result !== undefined, 'select -> SqlResponse');
  if (result) {
    check(JSON.stringify(result.columns) === JSON.stringify([{ name: 'id', type: 'BIGINT' }, { name: 'body', type: 'TEXT' }]),
      'columns id BIGINT, body TEXT');
    check(JSON.stringify(result.rows) === JSON.stringify([{ id: '1', body: 'hi' }, { id: '2', body: 'there' }]),
      `rows come back with BIGINT as strings: ${JSON.stringify(result.rows)}`);
    check(result.row_count === 2, 'row_count 2');
  }

  const missing = await sql(`SELECT id FROM ${ns}.no_such_table`);
  check(missing.response.status === 400, `unknown table -> 400 (got ${missing.response.status})`);
  check(missing.data === undefined && isErrorResponse(missing.error), 'the 400 body is parsed as ErrorResponse');
  if (isErrorResponse(missing.error)) {
    check(missing.error.error.message.includes('no_such_table'),
      `error names the table: ${missing.error.error.code}: ${missing.error.error.message}`);
    check(missing.error.error.statement === `SELECT id FROM ${ns}.no_such_table`, 'error names the statement');
  }

  const partial = await sql(`SELECT 1; INSERT INTO ${ns}.messages (id, body) VALUES (1, 'again')`);
  check(isErrorResponse(partial.error) && partial.error.results.length === 1,
    'duplicate key -> ErrorResponse with the results of the statements that ran');

  const denied = await executeSql({ client: createClient({ baseUrl, auth: 'not-a-jwt' }), body: { sql: 'SELECT 1' } });
  check(denied.response.status === 401 && isErrorResponse(denied.error) && denied.error.error.code === 'UNAUTHORIZED',
    'bad token -> 401 ErrorResponse UNAUTHORIZED');

  // throwOnError: the SDK throws the parsed error body.
  try {
    await login({ client: publicClient, body: { username: 'root', password: `${password}-wrong` }, throwOnError: true });
    check(false, 'wrong password throws');
  } catch (thrown) {
    check(isErrorResponse(thrown) && thrown.error.code === 'UNAUTHORIZED', 'wrong password throws a 401 ErrorResponse');
  }

  console.log(`TypeScript SDK: ${failures} failure(s)`);
  return failures === 0 ? 0 : 1;
}

main().then(
  (code) => process.exit(code),
  (error: unknown) => {
    console.error(error);
    process.exit(1);
  },
);
