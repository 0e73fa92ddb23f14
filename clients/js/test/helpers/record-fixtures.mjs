// Record real event streams from a demo gateway into test/fixtures/*.jsonl (one server frame per
// line: the `attached` reply, then every event). Unit tests fold these into chats.
//   node --experimental-websocket test/helpers/record-fixtures.mjs
import fs from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { GatewayClient } from '../../src/index.js';
import { startGateway, TOKENS } from './gateway.js';

const dir = path.join(path.dirname(fileURLToPath(import.meta.url)), '..', 'fixtures');
const gw = await startGateway({ name: 'record' });
const client = new GatewayClient({ url: gw.url, token: TOKENS.alice });

/** @param {string} name @param {(s: import('../../src/session.js').GatewaySession) => Promise<void>} flow */
async function record(name, flow) {
  const session = client.session({ chat: false });
  const lines = [];
  session.on('attached', (f) => lines.push(JSON.stringify(f)));
  session.on('event', (f) => lines.push(JSON.stringify(f)));
  await session.connect();
  await session.waitForState('idle', { timeoutMs: 60000 });
  await flow(session);
  await new Promise((r) => setTimeout(r, 300));
  session.disconnect();
  fs.writeFileSync(path.join(dir, `${name}.jsonl`), lines.join('\n') + '\n');
  console.log(name, lines.length, 'frames');
}
/** @param {import('../../src/session.js').GatewaySession} s @param {string} prompt */
async function turn(s, prompt) {
  const ack = await s.query(prompt);
  await s.waitFor((e) => e.kind === 'result' && e.query_id === ack.query_id, { timeoutMs: 60000 });
}

try {
  await record('hello', (s) => turn(s, 'SCRIPT:hello'));
  await record('bash-allow', async (s) => {
    const off = s.onEvent('permission_request', (e) => s.allow(e.request_id));
    await turn(s, 'SCRIPT:bash');
    off();
  });
  await record('bash-deny', async (s) => {
    const off = s.onEvent('permission_request', (e) => s.deny(e.request_id, { message: 'Not now' }));
    await turn(s, 'SCRIPT:bash');
    off();
  });
  await record('ask', async (s) => {
    const off = s.onEvent('question', (e) => s.answer(e.request_id, { 'Which color?': 'Blue' }));
    await turn(s, 'SCRIPT:ask');
    off();
  });
  await record('interrupt', async (s) => {
    const ack = await s.query('SCRIPT:long');
    await s.waitFor((e) => e.kind === 'stream' && e.event.type === 'content_block_delta', { timeoutMs: 60000 });
    await new Promise((r) => setTimeout(r, 500));
    await s.interrupt();
    await s.waitFor((e) => e.kind === 'result' && e.query_id === ack.query_id, { timeoutMs: 60000 });
  });
  await record('settings', async (s) => {
    await s.setModel('claude-haiku-4-5');
    await s.setPermissionMode('plan');
    await turn(s, 'SCRIPT:hello');
    await s.resetConversation('soft');
    await turn(s, 'SCRIPT:hello');
  });
} finally {
  await gw.stop();
}
