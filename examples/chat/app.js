// The chat page: logs in to KalamDB, shows the user's rooms (a live view of
// the SHARED table chat.rooms), the messages of the open room (a live view of
// the user's own copies in the USER table chat.messages) and who is typing
// (a subscription on the STREAM table chat.typing). Sending goes through the
// relay (server.mjs), which writes a copy into every member's partition.

import { KalamClient } from './client/index.js';

const config = await (await fetch('./config.json')).json();
const $ = (selector) => document.querySelector(selector);
const ROOM_NAME = /^[A-Za-z0-9_-]{1,64}$/; // room names go into live-query SQL
const TYPING_SHOWN_MS = 3000;
const TYPING_SENT_EVERY_MS = 1500;

let client;
let me;
let roomsView;
let messagesView;
let typingSub;
let room;
const typing = new Map(); // author -> timer
let lastTypingSent = 0;

$('#login-form').addEventListener('submit', async (event) => {
  event.preventDefault();
  $('#login-error').textContent = '';
  try {
    await logIn($('#username').value.trim(), $('#password').value);
  } catch (error) {
    $('#login-error').textContent = error.message;
    client?.close();
    client = undefined;
  }
});

$('#logout').addEventListener('click', () => {
  client?.close();
  client = undefined;
  $('#chat').hidden = true;
  $('#logout').hidden = true;
  $('#login-form').hidden = false;
  $('#whoami').textContent = '';
  showStatus('idle');
});

async function logIn(username, password) {
  client = new KalamClient({
    url: config.kalamUrl,
    // Called before reconnecting and when a token is refused. A real app
    // would use its own session or a refresh token rather than keep the
    // password in memory.
    getToken: async () => (await new KalamClient({ url: config.kalamUrl }).login(username, password)).access_token,
    onStateChange: showStatus,
  });
  const session = await client.login(username, password);
  me = session.user_id;
  $('#whoami').textContent = me;
  $('#login-form').hidden = true;
  $('#chat').hidden = false;
  $('#logout').hidden = false;

  roomsView = client.liveRows('SELECT name, title, members FROM chat.rooms', {
    key: 'name',
    sort: (a, b) => a.name.localeCompare(b.name),
  });
  roomsView.onChange(renderRooms);
  await roomsView.whenReady();
  const first = myRooms()[0];
  if (first) openRoom(first.name);
  renderRooms();
}

function myRooms() {
  return roomsView.rows.filter((r) => {
    try {
      return JSON.parse(r.members).includes(me) && ROOM_NAME.test(r.name);
    } catch {
      return false;
    }
  });
}

function renderRooms() {
  const list = $('#rooms');
  list.replaceChildren(
    ...myRooms().map((r) => {
      const button = document.createElement('button');
      button.type = 'button';
      button.textContent = r.title;
      button.dataset.room = r.name;
      button.className = r.name === room ? 'current' : '';
      button.addEventListener('click', () => openRoom(r.name));
      const item = document.createElement('li');
      item.append(button);
      return item;
    }),
  );
  const current = roomsView.get(room ?? '');
  $('#room-title').textContent = current ? current.title : '';
}

function openRoom(name) {
  if (name === room) return;
  messagesView?.close();
  typingSub?.unsubscribe();
  room = name;
  clearTyping();
  messagesView = client.liveRows(`SELECT id, author, body, sent FROM chat.messages WHERE room = '${name}'`, {
    key: 'id',
    sort: (a, b) => (BigInt(a.id) < BigInt(b.id) ? -1 : 1),
  });
  messagesView.onChange((rows, event) => {
    if (event.type === 'insert') stopTyping(event.row.author);
    renderMessages(rows);
  });
  $('#messages').dataset.ready = 'false';
  const view = messagesView;
  view.whenReady().then(
    () => {
      if (view === messagesView) $('#messages').dataset.ready = 'true';
    },
    (error) => {
      $('#chat-error').textContent = error.message;
    },
  );
  // Only live events count: the initial rows are what was typed up to 10 s ago.
  typingSub = client.subscribe(`SELECT author FROM chat.typing WHERE room = '${name}'`, {}, {
    onChange: (change) => {
      for (const row of change.rows) if (row.author !== me) startTyping(row.author);
    },
  });
  renderRooms();
  renderMessages([]);
}

function renderMessages(rows) {
  const list = $('#messages');
  const atBottom = list.scrollHeight - list.scrollTop - list.clientHeight < 40;
  list.replaceChildren(
    ...rows.map((m) => {
      const item = document.createElement('li');
      item.dataset.id = m.id;
      item.className = m.author === me ? 'mine' : '';
      const author = document.createElement('span');
      author.className = 'author';
      author.textContent = m.author;
      const body = document.createElement('span');
      body.className = 'body';
      body.textContent = m.body;
      const time = document.createElement('time');
      time.dateTime = m.sent;
      time.textContent = new Date(m.sent).toLocaleTimeString([], { hour: '2-digit', minute: '2-digit' });
      item.append(author, body, time);
      return item;
    }),
  );
  if (atBottom) list.scrollTop = list.scrollHeight;
}

function startTyping(author) {
  clearTimeout(typing.get(author));
  typing.set(author, setTimeout(() => stopTyping(author), TYPING_SHOWN_MS));
  renderTyping();
}

function stopTyping(author) {
  clearTimeout(typing.get(author));
  typing.delete(author);
  renderTyping();
}

function clearTyping() {
  for (const timer of typing.values()) clearTimeout(timer);
  typing.clear();
  renderTyping();
}

function renderTyping() {
  const names = [...typing.keys()];
  $('#typing').textContent =
    names.length === 0 ? '' : `${names.join(', ')} ${names.length === 1 ? 'is' : 'are'} typing…`;
}

async function relay(path, body, retried = false) {
  const response = await fetch(path, {
    method: 'POST',
    headers: { 'content-type': 'application/json', authorization: `Bearer ${client.accessToken}` },
    body: JSON.stringify(body),
  });
  if (response.status === 401 && !retried) {
    // The token expired: any KalamDB request refreshes it through getToken.
    await client.query('SELECT 1');
    return relay(path, body, true);
  }
  if (!response.ok) {
    const detail = await response.json().catch(() => ({}));
    throw new Error(detail.error ?? `${path}: HTTP ${response.status}`);
  }
  return response.json();
}

$('#message').addEventListener('input', () => {
  const now = Date.now();
  if (!room || now - lastTypingSent < TYPING_SENT_EVERY_MS || $('#message').value === '') return;
  lastTypingSent = now;
  relay('/api/typing', { room }).catch(() => {
    // A lost typing event is harmless.
  });
});

$('#composer').addEventListener('submit', async (event) => {
  event.preventDefault();
  const input = $('#message');
  const body = input.value.trim();
  if (!body || !room) return;
  $('#chat-error').textContent = '';
  try {
    await relay('/api/send', { room, body });
    input.value = '';
    lastTypingSent = 0;
  } catch (error) {
    $('#chat-error').textContent = error.message;
  }
});

function showStatus(state) {
  const status = $('#status');
  status.className = `status ${state}`;
  status.textContent = state === 'idle' ? 'offline' : state;
}
