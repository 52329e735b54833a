// Runs the compiled tests (build/test/*.test.js) one file after the other
// against a real server:
//
//   node scripts/run-tests.mjs [NAME…]        # e.g. `live` runs build/test/live.test.js only
//
// Environment:
//   KALAMDB_URL, KALAMDB_ROOT_PASSWORD  a running server to test against (openapi/test-clients.sh
//                                      passes its own); without them this script starts one
//   KALAMDB_SERVER_BIN                 the server binary: started here when KALAMDB_URL is unset,
//                                      and by the tests that need a server of their own (restart,
//                                      slow consumer, token expiry); default
//                                      ../../target/debug/kalamdb-server
//   KALAMDB_TEST_SEED                  seed of the random workloads (printed; default random)

import { spawn } from 'node:child_process';
import { mkdtempSync, readdirSync, rmSync, existsSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';

const root = resolve(dirname(fileURLToPath(import.meta.url)), '..');
const FILE_TIMEOUT_MS = 300_000;
const buildDir = join(root, 'build');
const names = process.argv.slice(2);
const files = readdirSync(buildDir)
  .filter((f) => f.endsWith('.test.js'))
  .filter((f) => names.length === 0 || names.some((n) => f === `${n}.test.js` || f === n))
  .sort();
if (files.length === 0) {
  console.error(`no test file matches ${names.join(' ')} in ${buildDir}`);
  process.exit(2);
}

const env = { ...process.env };
env.KALAMDB_SERVER_BIN ??= resolve(root, '../../target/debug/kalamdb-server');
env.KALAMDB_TEST_SEED ??= String(Math.floor(Math.random() * 2 ** 31));
console.log(`KALAMDB_TEST_SEED=${env.KALAMDB_TEST_SEED}`);

let server;
let dataDir;
if (!env.KALAMDB_URL) {
  if (!existsSync(env.KALAMDB_SERVER_BIN)) {
    console.error(`${env.KALAMDB_SERVER_BIN} is missing: build it (cargo build --bins) or set KALAMDB_SERVER_BIN`);
    process.exit(2);
  }
  dataDir = mkdtempSync(join(tmpdir(), 'kalamdb-ts-tests-'));
  env.KALAMDB_ROOT_PASSWORD = `root-${Math.random().toString(36).slice(2)}`;
  server = spawn(env.KALAMDB_SERVER_BIN, [], {
    env: {
      ...process.env,
      KALAMDB_LISTEN: '127.0.0.1:0',
      KALAMDB_PG_LISTEN: 'off',
      KALAMDB_DATA_DIR: dataDir,
      KALAMDB_ROOT_PASSWORD: env.KALAMDB_ROOT_PASSWORD,
      KALAMDB_LOG: process.env.KALAMDB_LOG ?? 'warn',
    },
    stdio: ['ignore', 'pipe', 'inherit'],
  });
  env.KALAMDB_URL = await new Promise((resolveUrl, reject) => {
    let out = '';
    server.stdout.on('data', (chunk) => {
      out += chunk;
      const match = /listening on (http:\S+)/.exec(out);
      if (match) resolveUrl(match[1]);
    });
    server.once('exit', (code) => reject(new Error(`the server exited with ${code}`)));
  });
  console.log(`started ${env.KALAMDB_SERVER_BIN} at ${env.KALAMDB_URL}`);
}

// Node.js 20 has a WebSocket (undici's) behind a flag; 22+ has it by default.
const nodeArgs = typeof globalThis.WebSocket === 'undefined' ? ['--experimental-websocket', '--no-warnings=ExperimentalWarning'] : [];

let failed = 0;
for (const file of files) {
  console.log(`\n--- ${file}`);
  const code = await new Promise((done) => {
    const child = spawn(process.execPath, [...nodeArgs, '--test-reporter=spec', join(buildDir, file)], {
      env,
      stdio: 'inherit',
    });
    // A test file that never ends (a leaked timer or socket keeps Node alive) fails.
    const timer = setTimeout(() => {
      console.log(`${file} did not finish within ${FILE_TIMEOUT_MS / 1000} s: stopping it`);
      child.kill('SIGKILL');
    }, FILE_TIMEOUT_MS);
    child.once('exit', (status, signal) => {
      clearTimeout(timer);
      done(signal ? 1 : status);
    });
  });
  if (code !== 0) failed += 1;
  console.log(`--- ${code === 0 ? 'PASS' : 'FAIL'} ${file}`);
}

if (server) {
  const exited = new Promise((done) => server.once('exit', done));
  server.kill('SIGTERM');
  await exited;
  rmSync(dataDir, { recursive: true, force: true });
}
console.log(`\n${files.length - failed} of ${files.length} test files passed`);
process.exit(failed === 0 ? 0 : 1);
