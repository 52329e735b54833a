// Creates the chat example's schema and demo accounts on a KalamDB server:
//
//   node examples/chat/setup.mjs http://127.0.0.1:8080 ROOT_PASSWORD
//
// (needs clients/typescript built: cd clients/typescript && npm ci && npm run build)
//
//   chat.rooms     SHARED table: every user reads it; only role service (and
//                  dba/system) writes it. Who is in which room.
//   chat.messages  USER table: each member's own copy of the messages of their
//                  rooms, written into their partition by the relay (server.mjs)
//                  with EXECUTE AS USER.
//   chat.typing    STREAM table: "… is typing" events, kept 10 s, and only while
//                  the user has a subscription on it (ephemeral).
//
// Accounts: alice and bob (role user, passwords alice-pw and bob-pw), and
// chat-relay (role service, password relay-pw), which the relay logs in as.
// Re-running it changes nothing that exists.

import { KalamClient } from '../../clients/typescript/dist/index.js';

export const demo = {
  users: [
    { name: 'alice', password: 'alice-pw' },
    { name: 'bob', password: 'bob-pw' },
  ],
  relay: { name: 'chat-relay', password: 'relay-pw' },
  rooms: [{ name: 'general', title: 'General', members: ['alice', 'bob'] }],
};

export async function setupChat(kalamUrl, rootPassword) {
  const root = new KalamClient({ url: kalamUrl });
  await root.login('root', rootPassword);
  try {
    await root.sql(`
      CREATE NAMESPACE IF NOT EXISTS chat;
      CREATE SHARED TABLE IF NOT EXISTS chat.rooms (
          name TEXT PRIMARY KEY, title TEXT NOT NULL, members JSON NOT NULL);
      CREATE USER TABLE IF NOT EXISTS chat.messages (
          id BIGINT PRIMARY KEY, room TEXT NOT NULL, author TEXT NOT NULL,
          body TEXT NOT NULL, sent TIMESTAMP DEFAULT NOW());
      CREATE STREAM TABLE IF NOT EXISTS chat.typing (room TEXT NOT NULL, author TEXT NOT NULL)
          WITH (retention = '10s', ephemeral = true);
      CREATE USER IF NOT EXISTS '${demo.relay.name}' WITH PASSWORD '${demo.relay.password}' ROLE service;
      ${demo.users.map((u) => `CREATE USER IF NOT EXISTS '${u.name}' WITH PASSWORD '${u.password}' ROLE user`).join(';\n')}`);
    for (const room of demo.rooms) {
      const existing = await root.query('SELECT name FROM chat.rooms WHERE name = $1', [room.name]);
      if (existing.length === 0) {
        await root.sql('INSERT INTO chat.rooms (name, title, members) VALUES ($1, $2, $3)', [
          room.name,
          room.title,
          JSON.stringify(room.members),
        ]);
      }
    }
  } finally {
    root.close();
  }
}

if (import.meta.url === `file://${process.argv[1]}`) {
  const [url, password] = process.argv.slice(2);
  if (!url || !password) {
    console.error('usage: node examples/chat/setup.mjs KALAMDB_URL ROOT_PASSWORD');
    process.exit(2);
  }
  await setupChat(url, password);
  console.log(`chat schema ready on ${url}; users ${demo.users.map((u) => `${u.name}/${u.password}`).join(', ')}`);
}
