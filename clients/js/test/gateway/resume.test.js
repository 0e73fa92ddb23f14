// Connections cut at many points, dead sockets, and resets: every event arrives exactly once.
import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import { foldChat } from '../../src/index.js';
import { HELLO, assertContiguous, autoAnswer, referenceEvents, seeded, sleep, testClient, turn, until } from '../helpers/flows.js';
import { startGateway } from '../helpers/gateway.js';
import { startProxy } from '../helpers/proxy.js';

/** @type {import('../helpers/gateway.js').Gateway} */
let gw;
/** @type {import('../helpers/proxy.js').Proxy} */
let proxy;
/** A gateway with a short event log: a client kept away long enough must be reset with a snapshot. */
/** @type {import('../helpers/gateway.js').Gateway} */
let shortLog;
/** @type {import('../helpers/proxy.js').Proxy} */
let shortLogProxy;
/** @type {import('../../src/session.js').GatewaySession[]} */
const sessions = [];
/** @template {import('../../src/session.js').GatewaySession} S @param {S} s @returns {S} */
const track = (s) => (sessions.push(s), s);

before(async () => {
  [gw, shortLog] = await Promise.all([
    startGateway({ name: 'resume' }),
    startGateway({ name: 'resume-short-log', env: { AGENT_GATEWAY_LOG_MAX_EVENTS: '60' } }),
  ]);
  proxy = await startProxy(gw.port);
  shortLogProxy = await startProxy(shortLog.port);
});
after(async () => {
  for (const s of sessions) s.disconnect();
  await Promise.all([proxy?.stop(), shortLogProxy?.stop()]);
  await Promise.all([gw?.stop(), shortLog?.stop()]);
});

/** What happened to a session, for a failure message. @param {import('../../src/session.js').GatewaySession} session */
function traceOf(session) {
  /** @type {string[]} */
  const trace = [];
  const t0 = Date.now();
  session.on('connectionstate', (c) => trace.push(`${Date.now() - t0}ms ${c.state} ${c.reason ?? ''}`));
  session.on('event', (f) => {
    const e = /** @type {any} */ (f.event);
    if (e.kind !== 'stream') trace.push(`${Date.now() - t0}ms #${f.seq} ${e.kind} ${e.state ?? e.request_id ?? e.query_id ?? ''} ${e.outcome ?? ''}`);
  });
  session.on('error', (e) => trace.push(`error ${e.code}: ${e.message}`));
  session.on('protocolerror', (e) => trace.push(`protocol error: ${e.message}`));
  return trace;
}

/** The parts of a chat a user sees. @param {import('../../src/chat.js').ChatState} chat */
const visible = (chat) => chat.items.map((i) => ({
  type: i.type,
  text: 'text' in i ? i.text : undefined,
  status: 'status' in i ? i.status : undefined,
  result: i.type === 'tool' ? i.result?.text : undefined,
}));

describe('resume over WebSocket', () => {
  test('connections cut at many points mid-stream: every event exactly once, in order', async () => {
    const random = seeded(20251121);
    // Each WebSocket dies after 300..4300 bytes from the gateway: inside frames, inside batches,
    // during replays, between a permission request and its answer.
    proxy.cutWebSocketAfter = () => 300 + Math.floor(random() * 4000);
    const client = testClient(proxy.url, { fallback: { enabled: false } });
    const session = track(client.session());
    /** @type {import('../../src/protocol.js').EventFrame[]} */
    const received = [];
    const iterate = (async () => {
      for await (const frame of session.events()) received.push(frame);
    })();
    autoAnswer(session);
    const trace = traceOf(session);
    await session.connect();
    await session.waitForState('idle', { timeoutMs: 60000 });
    const severedBefore = proxy.severed;
    try {
      // Whole rounds of turns until enough cuts landed (how many fit in a round depends on the machine's speed).
      for (let round = 0; round < 4 && (proxy.severed - severedBefore < 10 || session.stats.attaches < 10); round++) {
        for (const prompt of ['SCRIPT:long', 'SCRIPT:bash', 'SCRIPT:ask', 'SCRIPT:hello', 'SCRIPT:bash']) {
          trace.push(`--- ${prompt}`);
          const result = await turn(session, prompt, 30000);
          assert.equal(result.is_error, false, prompt);
        }
      }
    } catch (err) {
      console.log(`${trace.slice(-60).join('\n')}\nstats ${JSON.stringify(session.stats)} state ${session.connectionState} pending ${session.pendingFrames}\n${gw.log().slice(-4000)}`);
      throw err;
    }
    proxy.cutWebSocketAfter = null;
    const cuts = proxy.severed - severedBefore;
    console.log(`cut ${cuts} times; stats ${JSON.stringify(session.stats)}`);
    assert.ok(cuts >= 10, `the connection was cut ${cuts} times`);
    // Some cuts land inside the handshake (before `attached`); the rest interrupt live streams.
    assert.ok(session.stats.attaches >= 10, `re-attached ${session.stats.attaches} times`);

    const reference = await referenceEvents(gw.url, String(session.id));
    await until(() => received.length >= reference.length, 10000, 'the iterator to catch up');
    session.disconnect();
    await iterate;
    assertContiguous(received);
    assert.deepEqual(received, reference, 'the same events, byte for byte, as a clean replay');
    // And the chat built along the way equals the one built from the clean replay.
    assert.deepEqual(visible(/** @type {any} */ (session.chat)), visible(foldChat(reference)));
    const text = /** @type {any} */ (session.chat?.items.find((i) => i.type === 'text')).text;
    assert.ok(text.startsWith('Here is a longer answer') && text.endsWith('deliberately long reply.'));
  });

  test('a silent (dead) connection is found by heartbeat, and the session resumes', async () => {
    const client = testClient(proxy.url, { heartbeat: { intervalMs: 400, timeoutMs: 400 }, fallback: { enabled: false } });
    const session = track(await client.open());
    await session.waitForState('idle', { timeoutMs: 60000 });
    const streaming = session.waitFor((e) => e.kind === 'stream', { timeoutMs: 60000 });
    const running = session.run('SCRIPT:long', { timeoutMs: 60000 });
    await streaming;
    proxy.freeze(); // packets vanish; no FIN, no RST
    await until(() => session.stats.heartbeatTimeouts === 1, 5000, 'heartbeat timeout');
    await running;
    assert.equal(session.connectionState, 'open');
    const reference = await referenceEvents(gw.url, String(session.id));
    assert.equal(session.cursor.seq, reference.length);
    assert.equal(session.stats.duplicates, 0);
    await session.close();
  });

  test('a cursor the log no longer holds gets a reset with a snapshot; the chat is rebuilt', async () => {
    const client = testClient(shortLogProxy.url, { fallback: { enabled: false } });
    const session = track(await client.open());
    await session.waitForState('idle', { timeoutMs: 60000 });
    await turn(session, 'SCRIPT:hello');
    /** @type {import('../../src/protocol.js').ResetFrame[]} */
    const resets = [];
    session.on('reset', (f) => resets.push(f));
    // Keep this client away while another tab runs turns that push its cursor out of the log.
    shortLogProxy.blockNew = true;
    shortLogProxy.severAll();
    const other = track(await testClient(shortLog.url).attach(String(session.id)));
    await turn(other, 'SCRIPT:long');
    await turn(other, 'SCRIPT:hello');
    other.disconnect();
    shortLogProxy.blockNew = false;
    await until(() => resets.length === 1, 20000, 'a reset');
    assert.equal(resets[0].reason, 'cursor_too_old');
    assert.equal(session.connectionState, 'open');
    const chat = /** @type {import('../../src/chat.js').ChatState} */ (session.chat);
    const texts = chat.items.filter((i) => i.type === 'text').map((i) => /** @type {any} */ (i).text);
    assert.deepEqual(texts.length, 3);
    assert.equal(texts[0], HELLO);
    assert.ok(texts[1].endsWith('deliberately long reply.'));
    assert.equal(chat.items.filter((i) => i.type === 'result').length, 3);
    // Live events continue after the snapshot's position.
    await turn(session, 'SCRIPT:hello');
    assert.equal(chat.items.filter((i) => i.type === 'result').length, 4);
    await session.close();
  });

  test('an attach naming another epoch gets a reset, and the chat matches a full replay', async () => {
    const client = testClient(gw.url);
    const first = track(await client.open());
    await first.waitForState('idle', { timeoutMs: 60000 });
    autoAnswer(first);
    await turn(first, 'SCRIPT:bash');
    const id = String(first.id);
    const live = /** @type {import('../../src/chat.js').ChatState} */ (first.chat);
    const s = track(await testClient(gw.url).attach(id, { after: 5, epoch: 'not-the-epoch' }));
    assert.equal(s.stats.resets, 1);
    assert.deepEqual(s.cursor, first.cursor);
    assert.deepEqual(visible(/** @type {any} */ (s.chat)), visible(live));
    assert.ok(Math.abs(/** @type {any} */ (s.chat).totalCostUsd - live.totalCostUsd) < 1e-9);
    s.disconnect();
    await first.close();
  });

  test('a page reload: a new client attaches from 0 and gets the whole history', async () => {
    const client = testClient(gw.url);
    const first = track(await client.open());
    await first.waitForState('idle', { timeoutMs: 60000 });
    await turn(first, 'SCRIPT:hello');
    await turn(first, 'SCRIPT:hello');
    first.disconnect();
    await sleep(50);
    const again = track(await testClient(gw.url).attach(String(first.id)));
    await until(() => again.cursor.seq === first.cursor.seq, 10000, 'the replay');
    assert.deepEqual(visible(/** @type {any} */ (again.chat)), visible(/** @type {any} */ (first.chat)));
    await again.close();
  });
});
