// The chat example's small server: serves the page (index.html, app.js,
// style.css and the built @kalamdb/client under /client/) and relays what
// a browser may not write itself:
//
//   POST /api/send    {"room","body"}  → a copy of the message into every member's
//                                        chat.messages partition (EXECUTE AS USER)
//   POST /api/typing  {"room"}         → a chat.typing event into every other member's stream
//
// Both take the user's own KalamDB token (Authorization: Bearer), which the
// relay checks by asking KalamDB who it belongs to (CURRENT_USER()); it then
// writes with its own service account. Everything else — login, reading
// rooms and messages, live queries — the page does directly against KalamDB.
//
//   node examples/chat/server.mjs http://127.0.0.1:8080 [PORT]
//
// (after setup.mjs; needs clients/typescript built).

import { createServer } from 'node:http';
import { readFile } from 'node:fs/promises';
import { dirname, extname, join, resolve, sep } from 'node:path';
import { fileURLToPath } from 'node:url';
import { KalamClient, isKalamError } from '../../clients/typescript/dist/index.js';
import { demo } from './setup.mjs';

const here = dirname(fileURLToPath(import.meta.url));
const clientDist = resolve(here, '../../clients/typescript/dist');
const pages = { '/': 'index.html', '/index.html': 'index.html', '/app.js': 'app.js', '/style.css': 'style.css' };
const types = {
  '.html': 'text/html; charset=utf-8',
  '.js': 'text/javascript; charset=utf-8',
  '.css': 'text/css; charset=utf-8',
  '.map': 'application/json; charset=utf-8',
  '.json': 'application/json; charset=utf-8',
};
// Ids the relay puts into EXECUTE AS USER '…' (KalamDB's user ids: letters, digits, _ . @ - and ~).
const USER_ID = /^[A-Za-z0-9_.@~-]{1,64}$/;
const MAX_BODY = 2000;

class HttpError extends Error {
  constructor(status, message) {
    super(message);
    this.status = status;
  }
}

/**
 * Starts the page and relay server. `kalamUrl` is the KalamDB server the
 * page talks to, `relayUrl` the one the relay talks to (the same unless
 * given); the relay logs in as the service account `relay`.
 */
export async function startChatServer({ kalamUrl, relayUrl = kalamUrl, relay = demo.relay, port = 0, host = '127.0.0.1' }) {
  const login = async () => (await new KalamClient({ url: relayUrl }).login(relay.name, relay.password)).access_token;
  const service = new KalamClient({ url: relayUrl, getToken: login });
  await service.login(relay.name, relay.password);

  async function whoIs(token) {
    const user = new KalamClient({ url: relayUrl, token });
    try {
      const [row] = await user.query('SELECT CURRENT_USER() AS me');
      return row.me;
    } catch (error) {
      if (isKalamError(error, 'UNAUTHORIZED')) throw new HttpError(401, 'log in again');
      throw error;
    } finally {
      user.close();
    }
  }

  async function membersOf(room, me) {
    const [row] = await service.query('SELECT members FROM chat.rooms WHERE name = $1', [room]);
    if (!row) throw new HttpError(404, `no room ${room}`);
    const members = JSON.parse(row.members);
    if (!Array.isArray(members) || !members.every((m) => typeof m === 'string' && USER_ID.test(m))) {
      throw new HttpError(500, `room ${room} has a bad member list`);
    }
    if (!members.includes(me)) throw new HttpError(403, `${me} is not in room ${room}`);
    return members;
  }

  const asEach = (members, statement) => members.map((m) => `EXECUTE AS USER '${m}' (${statement})`).join('; ');

  async function relayed(path, me, input) {
    const room = String(input.room ?? '');
    const members = await membersOf(room, me);
    if (path === '/api/send') {
      const body = String(input.body ?? '').trim();
      if (body === '' || body.length > MAX_BODY) throw new HttpError(400, `a message is 1 to ${MAX_BODY} characters`);
      // One id for every copy, so the copies are the same message.
      const [{ id }] = await service.query('SELECT SNOWFLAKE_ID() AS id');
      await service.sql(asEach(members, 'INSERT INTO chat.messages (id, room, author, body) VALUES ($1, $2, $3, $4)'), [id, room, me, body]);
      return { id };
    }
    const others = members.filter((m) => m !== me);
    if (others.length > 0) {
      await service.sql(asEach(others, 'INSERT INTO chat.typing (room, author) VALUES ($1, $2)'), [room, me]);
    }
    return {};
  }

  async function handle(req, res) {
    const url = new URL(req.url ?? '/', 'http://localhost');
    if (req.method === 'POST' && (url.pathname === '/api/send' || url.pathname === '/api/typing')) {
      const token = /^Bearer (.+)$/.exec(req.headers.authorization ?? '')?.[1];
      if (!token) throw new HttpError(401, 'send your KalamDB token as Authorization: Bearer …');
      const input = await readJson(req);
      const me = await whoIs(token);
      return json(res, 200, await relayed(url.pathname, me, input));
    }
    if (req.method !== 'GET') throw new HttpError(405, 'method not allowed');
    if (url.pathname === '/config.json') return json(res, 200, { kalamUrl });
    let file;
    if (pages[url.pathname]) {
      file = join(here, pages[url.pathname]);
    } else if (url.pathname.startsWith('/client/')) {
      file = resolve(clientDist, `.${decodeURIComponent(url.pathname.slice('/client'.length))}`);
      if (!file.startsWith(clientDist + sep)) throw new HttpError(404, 'not found');
    } else {
      throw new HttpError(404, 'not found');
    }
    let content;
    try {
      content = await readFile(file);
    } catch {
      throw new HttpError(404, 'not found');
    }
    res.writeHead(200, { 'content-type': types[extname(file)] ?? 'application/octet-stream', 'cache-control': 'no-store' });
    res.end(content);
  }

  const server = createServer((req, res) => {
    handle(req, res).catch((error) => {
      const status = error instanceof HttpError ? error.status : 502;
      json(res, status, { error: error.message ?? String(error), code: error.code });
    });
  });
  await new Promise((done) => server.listen(port, host, done));
  const address = server.address();
  return {
    url: `http://${host}:${address.port}`,
    async close() {
      service.close();
      server.closeAllConnections();
      await new Promise((done) => server.close(done));
    },
  };
}

function json(res, status, value) {
  if (res.headersSent) return res.end();
  res.writeHead(status, { 'content-type': 'application/json; charset=utf-8', 'cache-control': 'no-store' });
  res.end(JSON.stringify(value));
}

async function readJson(req) {
  let text = '';
  for await (const chunk of req) {
    text += chunk;
    if (text.length > 64 * 1024) throw new HttpError(413, 'request too large');
  }
  try {
    const value = JSON.parse(text);
    if (value && typeof value === 'object') return value;
  } catch {
    // fall through
  }
  throw new HttpError(400, 'send a JSON object');
}

if (import.meta.url === `file://${process.argv[1]}`) {
  const [kalamUrl, port = '8090'] = process.argv.slice(2);
  if (!kalamUrl) {
    console.error('usage: node examples/chat/server.mjs KALAMDB_URL [PORT]');
    process.exit(2);
  }
  const chat = await startChatServer({ kalamUrl, port: Number(port) });
  console.log(`chat on ${chat.url} (KalamDB ${kalamUrl}); log in as alice/alice-pw and bob/bob-pw in two windows`);
}
