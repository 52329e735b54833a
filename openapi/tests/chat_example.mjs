// Check: the chat example (examples/chat/) works in a real browser.
//
//   node chat_example.mjs BASE_URL ROOT_PASSWORD OUT_DIR
//
// Creates the example's schema and accounts on the server at BASE_URL
// (examples/chat/setup.mjs), starts the example's own server (the page, the
// built @kalamdb/client and the relay) on a free port, and drives two
// headless Chromium contexts (Debian's /usr/bin/chromium, playwright-core):
// alice and bob log in; alice types, bob sees "alice is typing…", alice
// sends, bob sees the message; bob answers, alice sees it. Screenshots go to
// OUT_DIR/chat-*.png. The pages may load nothing but the chat server and
// KalamDB, and must raise no error.

import { mkdir } from 'node:fs/promises';
import { join } from 'node:path';
import { chromium } from 'playwright-core';
import { setupChat, demo } from '../../examples/chat/setup.mjs';
import { startChatServer } from '../../examples/chat/server.mjs';

const [baseUrl, rootPassword, outDir] = process.argv.slice(2);
if (!baseUrl || !rootPassword || !outDir) {
  console.error('usage: node chat_example.mjs BASE_URL ROOT_PASSWORD OUT_DIR');
  process.exit(2);
}
const executablePath = process.env.CHROMIUM ?? '/usr/bin/chromium';
const TIMEOUT = 30_000;

let failures = 0;
function check(condition, what) {
  console.log(`${condition ? 'ok  ' : 'FAIL'} ${what}`);
  if (!condition) failures += 1;
}

await mkdir(outDir, { recursive: true });
await setupChat(baseUrl, rootPassword);
const chat = await startChatServer({ kalamUrl: baseUrl });
console.log(`chat example at ${chat.url}, KalamDB at ${baseUrl}`);

const browser = await chromium.launch({
  executablePath,
  headless: true,
  args: ['--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run', '--disable-background-networking', '--disable-component-update', '--disable-sync'],
});

const foreign = [];
const pageErrors = [];
async function open(user) {
  const context = await browser.newContext({ viewport: { width: 900, height: 640 } });
  const page = await context.newPage();
  page.setDefaultTimeout(TIMEOUT);
  page.on('request', (request) => {
    const url = request.url();
    if (!url.startsWith(chat.url) && !url.startsWith(baseUrl) && !url.startsWith(baseUrl.replace(/^http/, 'ws')) && !url.startsWith('data:')) {
      foreign.push(url);
    }
  });
  page.on('pageerror', (error) => pageErrors.push(`${user.name}: ${error}`));
  page.on('console', (message) => {
    if (message.type() === 'error') pageErrors.push(`${user.name} console: ${message.text()}`);
  });
  await page.goto(chat.url);
  await page.fill('#username', user.name);
  await page.fill('#password', user.password);
  await page.click('#login-form button[type=submit]');
  await page.locator('#status.live').waitFor();
  await page.locator('#rooms button[data-room=general]').waitFor();
  await page.locator('#login-form').waitFor({ state: 'hidden' });
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

  const aliceSees = await messages(alice);
  const bobSees = await messages(bob);
  check(JSON.stringify(aliceSees) === JSON.stringify(bobSees), 'both see the same conversation, in the same order');
  check(bobSees.length === before + 2 && bobSees.at(-2) === hello && bobSees.at(-1) === reply, 'the two new messages are last, once each');

  await alice.screenshot({ path: join(outDir, 'chat-alice.png') });
  await bob.screenshot({ path: join(outDir, 'chat-bob.png') });
  console.log(`screenshots: ${outDir}/chat-typing.png, chat-alice.png, chat-bob.png`);
} catch (error) {
  check(false, `the chat works in the browser: ${error}`);
} finally {
  check(foreign.length === 0, `nothing is loaded from elsewhere${foreign.length ? `: ${foreign.join(', ')}` : ''}`);
  check(pageErrors.length === 0, `no page errors${pageErrors.length ? `: ${pageErrors.join('; ')}` : ''}`);
  await browser.close();
  await chat.close();
}

console.log(failures === 0 ? 'chat example: all checks passed' : `chat example: ${failures} check(s) failed`);
process.exit(failures === 0 ? 0 : 1);
