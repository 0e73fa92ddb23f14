// WebSockets refused on the way (a proxy that blocks upgrades): the client falls back to SSE +
// POST with the same cursor, survives cuts there, and moves back to WebSocket when it can.
import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import { foldChat } from '../../src/index.js';
import { assertContiguous, autoAnswer, referenceEvents, sleep, testClient, turn, until } from '../helpers/flows.js';
import { startGateway } from '../helpers/gateway.js';
import { startProxy } from '../helpers/proxy.js';

/** @type {import('../helpers/gateway.js').Gateway} */
let gw;
/** @type {import('../helpers/proxy.js').Proxy} */
let proxy;
/** @type {import('../../src/session.js').GatewaySession[]} */
const sessions = [];
before(async () => {
  gw = await startGateway({ name: 'fallback' });
  proxy = await startProxy(gw.port);
});
after(async () => {
  for (const s of sessions) s.disconnect();
  await proxy?.stop();
  await gw?.stop();
});

describe('SSE fallback', () => {
  test('WebSocket refused: a full chat over SSE + POST, then back to WebSocket, every event once', async () => {
    proxy.refuseWebSocket = true;
    const client = testClient(proxy.url, { fallback: { afterFailures: 2, retryWebSocketMs: 700 } });
    const session = client.session();
    sessions.push(session);
    /** @type {import('../../src/protocol.js').EventFrame[]} */
    const received = [];
    session.on('event', (f) => received.push(f));
    /** @type {string[]} */
    const states = [];
    session.on('connectionstate', (c) => states.push(c.state));
    autoAnswer(session);

    // The session is created over HTTP (POST /v1/sessions) since no WebSocket gets through.
    await session.connect();
    assert.equal(session.connectionState, 'fallback');
    assert.equal(session.transport, 'sse');
    assert.ok(proxy.refusedUpgrades >= 2);
    assert.equal(proxy.websocketConnections, 0);
    await session.waitForState('idle', { timeoutMs: 60000 });

    // Queries, an approval and a question, all over POST; events over SSE.
    await turn(session, 'SCRIPT:hello');
    await turn(session, 'SCRIPT:bash');
    await turn(session, 'SCRIPT:ask');
    const chat = /** @type {import('../../src/chat.js').ChatState} */ (session.chat);
    const tool = /** @type {any} */ (chat.items.find((i) => i.type === 'tool' && i.name === 'Bash'));
    assert.equal(tool.result.text, 'hello-from-agent');
    assert.equal(/** @type {any} */ (chat.items.filter((i) => i.type === 'text').at(-1)).text, 'You answered: Blue');
    assert.equal(session.connectionState, 'fallback', 'still on the fallback');

    // Cut the SSE stream mid-turn: it resumes with Last-Event-ID.
    const running = session.run('SCRIPT:long', { timeoutMs: 60000 });
    for (let i = 0; i < 3; i++) {
      await session.waitFor((e) => e.kind === 'stream', { timeoutMs: 30000 });
      await sleep(300);
      proxy.severAll();
    }
    await running;

    // WebSockets get through again: the next probe takes over from the same cursor.
    proxy.refuseWebSocket = false;
    await until(() => session.connectionState === 'open', 15000, 'back on WebSocket');
    assert.equal(session.transport, 'websocket');
    await turn(session, 'SCRIPT:hello');

    const reference = await referenceEvents(gw.url, String(session.id));
    assertContiguous(received);
    assert.deepEqual(received, reference);
    assert.equal(foldChat(reference).items.length, chat.items.length);
    assert.deepEqual(states.filter((s, i) => s !== states[i - 1]).slice(0, 2), ['connecting', 'fallback']);
    assert.ok(states.includes('reconnecting'));
    assert.equal(states.at(-1), 'open');
    await session.close();
  });

  test('WebSocket drops while attached: after it keeps failing, the session moves to SSE with its cursor', async () => {
    const client = testClient(proxy.url, { fallback: { afterFailures: 2, retryWebSocketMs: 60000 } });
    const session = await client.open();
    sessions.push(session);
    await session.waitForState('idle', { timeoutMs: 60000 });
    await turn(session, 'SCRIPT:hello');
    const cursor = session.cursor;
    /** @type {import('../../src/protocol.js').EventFrame[]} */
    const after = [];
    session.on('event', (f) => after.push(f));
    proxy.refuseWebSocket = true;
    proxy.severAll();
    await until(() => session.connectionState === 'fallback', 15000, 'fallback');
    await turn(session, 'SCRIPT:hello');
    assert.equal(after[0].seq, cursor.seq + 1, 'no event lost or repeated across the switch');
    assertContiguous([...Array(cursor.seq).fill(null).map((_, i) => /** @type {any} */ ({ seq: i + 1 })), ...after]);
    proxy.refuseWebSocket = false;
    await session.close();
  });
});
