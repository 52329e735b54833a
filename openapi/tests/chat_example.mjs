// Check: the chat example (examples/chat/) works in a real browser.
//
//   node chat_example.mjs BASE_URL ROOT_PASSWORD OUT_DIR
//
// Creates the example's schema and accounts on the server at BASE_URL
// (examples/chat/setup.mjs), starts the example's own server (the page, the
// built @kalamdb/client and the relay) on a free port, and drives two
// headless Chromium contexts (Debian's /usr/bin/chromium, playwright-core):
// alice and bob log in; alice types, bob sees "alice is typing…", alice
// sends, bob sees the message; bob answers, alice sees it. Then the pages'
// connections to KalamDB are cut (they reach it through a TCP proxy here)
// while alice sends, and bob's subscriptions are killed (KILL LIVE QUERY)
// while alice sends again: both pages reconnect or resubscribe and show
// every message once. Screenshots go to OUT_DIR/chat-*.png. The pages may
// load nothing but the chat server and KalamDB, and must raise no error.

import { mkdir } from 'node:fs/promises';
import { createServer, connect } from 'node:net';
import { join } from 'node:path';
import { chromium } from 'playwright-core';
import { TIMEOUT, check, executablePath, failureCount } from './browser_check.mjs';
import { KalamClient } from '../../clients/typescript/dist/index.js';
import { setupChat, demo } from '../../examples/chat/setup.mjs';
import { startChatServer } from '../../examples/chat/server.mjs';

const [baseUrl, rootPassword, outDir] = process.argv.slice(2);
if (!baseUrl || !rootPassword || !outDir) {
  console.error('usage: node chat_example.mjs BASE_URL ROOT_PASSWORD OUT_DIR');
  process.exit(2);
}

// The pages reach KalamDB through this proxy, so that the test can cut
// their connections (and refuse new ones for a while).
const target = Number(new URL(baseUrl).port);
const sockets = new Set();
let refusing = false;
const proxy = createServer((client) => {
  if (refusing) return client.resetAndDestroy();
  const upstream = connect(target, '127.0.0.1');
  const pair = [client, upstream];
  sockets.add(pair);
  client.pipe(upstream);
  upstream.pipe(client);
  const close = () => {
    client.destroy();
    upstream.destroy();
    sockets.delete(pair);
  };
  for (const socket of pair) {
    socket.on('close', close);
    socket.on('error', close);
  }
});
await new Promise((done) => proxy.listen(0, '127.0.0.1', done));
const kalamUrl = `http://127.0.0.1:${proxy.address().port}`;
const cut = () => {
  for (const [client, upstream] of sockets) {
    client.resetAndDestroy();
    upstream.resetAndDestroy();
  }
  sockets.clear();
};

await mkdir(outDir, { recursive: true });
await setupChat(baseUrl, rootPassword);
const chat = await startChatServer({ kalamUrl, relayUrl: baseUrl });
console.log(`chat example at ${chat.url}, KalamDB at ${baseUrl} (the pages reach it through ${kalamUrl})`);

const browser = await chromium.launch({
  executablePath,
  headless: true,
  args: ['--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run', '--disable-background-networking', '--disable-component-update', '--disable-sync'],
});

const foreign = [];
const pageErrors = [];
let outage = false;
async function open(user) {
  const context = await browser.newContext({ viewport: { width: 900, height: 640 } });
  const page = await context.newPage();
  page.setDefaultTimeout(TIMEOUT);
  page.on('request', (request) => {
    const url = request.url();
    if (!url.startsWith(chat.url) && !url.startsWith(kalamUrl) && !url.startsWith(kalamUrl.replace(/^http/, 'ws')) && !url.startsWith('data:')) {
      foreign.push(url);
    }
  });
  page.on('pageerror', (error) => pageErrors.push(`${user.name}: ${error}`));
  page.on('console', (message) => {
    if (message.type() !== 'error') return;
    // While the test holds KalamDB away, Chromium logs each failed reconnect.
    if (outage && /net::ERR_|WebSocket connection to .* failed/.test(message.text())) return;
    pageErrors.push(`${user.name} console: ${message.text()}`);
  });
  await page.goto(chat.url);
  await page.fill('#username', user.name);
  await page.fill('#password', user.password);
  await page.click('#login-form button[type=submit]');
  await page.locator('#status.live').waitFor();
  await page.locator('#rooms button[data-room=general]').waitFor();
  await page.locator('#login-form').waitFor({ state: 'hidden' });
  await page.locator('#messages[data-ready=true]').waitFor();
  return page;
}

const messages = (page) => page.locator('#messages li .body').allInnerTexts();
const stamp = new Date().toISOString().slice(11, 19);

try {
  const [alice, bob] = await Promise.all(demo.users.map(open));
  check((await alice.locator('#whoami').innerText()) === 'alice', 'alice is logged in');
  check((await bob.locator('#whoami').innerText()) === 'bob', 'bob is logged in');
  check((await bob.locator('#room-title').innerText()) === 'General', 'bob has the room General open');
  const before = (await messages(bob)).length;

  // alice types: bob sees the typing indicator (a STREAM table event).
  const hello = `Hello Bob, it is ${stamp}`;
  await alice.locator('#message').pressSequentially(hello.slice(0, 12), { delay: 30 });
  await bob.locator('#typing', { hasText: 'alice is typing' }).waitFor();
  check(true, 'bob sees "alice is typing…"');
  await bob.screenshot({ path: join(outDir, 'chat-typing.png') });

  // alice sends: the message appears for both, and the indicator goes away.
  await alice.locator('#message').pressSequentially(hello.slice(12), { delay: 5 });
  await alice.click('#send');
  await bob.locator('#messages li', { hasText: hello }).waitFor();
  check(true, 'bob sees alice\'s message');
  await alice.locator('#messages li.mine', { hasText: hello }).waitFor();
  check(true, 'alice sees her own message');
  await bob.locator('#typing:empty').waitFor();
  check(true, 'the typing indicator is gone once the message arrived');
  check((await bob.locator('#messages li', { hasText: hello }).locator('.author').innerText()) === 'alice', 'the message is signed alice');

  // bob answers.
  const reply = `Hi Alice! (${stamp})`;
  await bob.locator('#message').fill(reply);
  await bob.locator('#message').press('Enter');
  await alice.locator('#messages li', { hasText: reply }).waitFor();
  check(true, 'alice sees bob\'s reply');
  await bob.locator('#messages li.mine', { hasText: reply }).waitFor();

  // Both pages lose KalamDB; alice sends meanwhile (the relay still reaches it).
  outage = true;
  refusing = true;
  cut();
  await Promise.all([alice, bob].map((page) => page.locator('#status.reconnecting').waitFor()));
  check(true, 'both pages show "reconnecting" when their connections drop');
  await bob.screenshot({ path: join(outDir, 'chat-reconnecting.png') });
  const offline = `sent while you were offline (${stamp})`;
  await alice.locator('#message').fill(offline);
  await alice.click('#send');
  await alice.locator('#message:placeholder-shown').waitFor(); // sent
  refusing = false;
  await Promise.all([alice, bob].map((page) => page.locator('#messages li', { hasText: offline }).waitFor()));
  await Promise.all([alice, bob].map((page) => page.locator('#status.live').waitFor()));
  outage = false;
  check(true, 'both pages reconnect and show the message sent while they were offline');

  // An operator kills bob's subscriptions: his page subscribes again, resuming.
  const root = new KalamClient({ url: baseUrl });
  await root.login('root', rootPassword);
  const bobs = await root.query("SELECT live_id FROM system.live_queries WHERE user_id = 'bob'");
  for (const { live_id } of bobs) await root.sql(`KILL LIVE QUERY '${live_id}'`);
  const afterKill = `after the kill (${stamp})`;
  await alice.locator('#message').fill(afterKill);
  await alice.click('#send');
  await bob.locator('#messages li', { hasText: afterKill }).waitFor();
  check(bobs.length === 3, `bob's page had 3 live queries (rooms, messages, typing): ${bobs.length}`);
  check(true, "bob's page resubscribes after KILL LIVE QUERY and shows the next message");
  root.close();

  const aliceSees = await messages(alice);
  const bobSees = await messages(bob);
  check(JSON.stringify(aliceSees) === JSON.stringify(bobSees), 'both see the same conversation, in the same order');
  check(
    bobSees.length === before + 4 && JSON.stringify(bobSees.slice(-4)) === JSON.stringify([hello, reply, offline, afterKill]),
    `the four new messages are last, once each${bobSees.length === before + 4 ? '' : `: ${before} before, now ${JSON.stringify(bobSees)}`}`,
  );

  await alice.screenshot({ path: join(outDir, 'chat-alice.png') });
  await bob.screenshot({ path: join(outDir, 'chat-bob.png') });
  console.log(`screenshots: ${outDir}/chat-typing.png, chat-reconnecting.png, chat-alice.png, chat-bob.png`);
} catch (error) {
  check(false, `the chat works in the browser: ${error}`);
} finally {
  check(foreign.length === 0, `nothing is loaded from elsewhere${foreign.length ? `: ${foreign.join(', ')}` : ''}`);
  check(pageErrors.length === 0, `no page errors${pageErrors.length ? `: ${pageErrors.join('; ')}` : ''}`);
  await browser.close();
  await chat.close();
  cut();
  proxy.close();
}

console.log(failureCount() === 0 ? 'chat example: all checks passed' : `chat example: ${failureCount()} check(s) failed`);
process.exit(failureCount() === 0 ? 0 : 1);
