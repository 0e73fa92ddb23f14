// Connection management against an in-process fake gateway: exact control over drops, silence,
// duplicates and gaps. The same behaviour against the real gateway is in test/gateway/.
import assert from 'node:assert/strict';
import { afterEach, describe, test } from 'node:test';
import { ClosedError, GatewayClient, GatewayError } from '../../src/index.js';
import { FakeGateway } from '../helpers/fake-gateway.js';

const sleep = (/** @type {number} */ ms) => new Promise((r) => setTimeout(r, ms));
/** @param {() => boolean} cond @param {number} [timeoutMs] */
async function until(cond, timeoutMs = 3000) {
  const deadline = Date.now() + timeoutMs;
  while (!cond()) {
    if (Date.now() > deadline) throw new Error('condition not met in time');
    await sleep(5);
  }
}

/** @type {import('../../src/session.js').GatewaySession[]} */
let sessions = [];
afterEach(() => {
  for (const s of sessions) s.disconnect();
  sessions = [];
});

/** @param {FakeGateway} gw @param {import('../../src/session.js').SessionOptions} [options] @param {import('../../src/client.js').ClientOptions} [clientOptions] */
function makeSession(gw, options = {}, clientOptions = {}) {
  const client = new GatewayClient({
    url: 'http://gateway.test', token: 'tok-0123456789abcdef', WebSocket: /** @type {any} */ (gw.WebSocket), fetch: gw.fetch,
    reconnect: { initialDelayMs: 5, maxDelayMs: 40 }, watchNetwork: false, ...clientOptions,
  });
  const s = client.session(options);
  sessions.push(s);
  return s;
}

/** @param {import('../../src/session.js').GatewaySession} s */
function collect(s) {
  /** @type {number[]} */
  const seqs = [];
  s.on('event', (f) => seqs.push(f.seq));
  return seqs;
}

describe('session over WebSocket', () => {
  test('opens, authenticates with the subprotocol, and receives events once', async () => {
    const gw = new FakeGateway();
    const s = makeSession(gw);
    const seqs = collect(s);
    const states = /** @type {string[]} */ ([]);
    s.on('connectionstate', (c) => states.push(c.state));
    await s.connect();
    assert.equal(s.id, 's_fake');
    assert.deepEqual(gw.sockets[0].protocols, ['agent-gateway.v1', 'bearer.tok-0123456789abcdef']);
    assert.equal(gw.sockets[0].url, 'ws://gateway.test/v1/ws');
    await until(() => seqs.length === 2);
    gw.emit({ kind: 'state', state: 'running' });
    await until(() => seqs.length === 3);
    assert.deepEqual(seqs, [1, 2, 3]);
    assert.deepEqual(states, ['connecting', 'open']);
    assert.equal(s.transport, 'websocket');
    assert.equal(s.chat?.sessionState, 'running');
  });

  test('drops events it already applied (duplicates by seq)', async () => {
    const gw = new FakeGateway();
    const s = makeSession(gw);
    const seqs = collect(s);
    await s.connect();
    await until(() => seqs.length === 2);
    const sock = gw.sockets[0];
    sock.push(JSON.stringify(gw.log[0]));
    sock.push(`${JSON.stringify(gw.log[1])}\n${JSON.stringify(gw.log[0])}`);
    gw.emit({ kind: 'turn_started', query_id: 'q' });
    await until(() => seqs.length === 3);
    assert.deepEqual(seqs, [1, 2, 3]);
    assert.equal(s.stats.duplicates, 3);
  });

  test('a gap makes it re-attach from its cursor and fill the gap in order', async () => {
    const gw = new FakeGateway();
    const s = makeSession(gw);
    const seqs = collect(s);
    await s.connect();
    await until(() => seqs.length === 2);
    const first = gw.sockets[0];
    gw.attached.delete(first); // this socket misses the next events
    gw.emit({ kind: 'turn_started', query_id: 'a' });
    gw.emit({ kind: 'turn_started', query_id: 'b' });
    first.push(JSON.stringify(gw.emit({ kind: 'turn_started', query_id: 'c' }))); // seq 5 arrives, 3 and 4 never did
    await until(() => seqs.length === 5);
    assert.deepEqual(seqs, [1, 2, 3, 4, 5]);
    assert.equal(s.stats.gaps, 1);
    const attach = gw.received.filter((f) => f.type === 'attach');
    assert.equal(attach.length, 1);
    assert.equal(attach[0].after, 2);
    assert.equal(attach[0].epoch, 'ep1');
  });

  test('reconnects with backoff after drops and resumes exactly after its cursor', async () => {
    const gw = new FakeGateway();
    const s = makeSession(gw, { reconnect: { initialDelayMs: 5, maxDelayMs: 40, stableMs: 0 } }); // every link counts as up
    const seqs = collect(s);
    /** @type {(number | null)[]} */
    const delays = [];
    s.on('connectionstate', (c) => c.state === 'reconnecting' && delays.push(c.retryInMs));
    await s.connect();
    for (let round = 0; round < 5; round++) {
      gw.emit({ kind: 'turn_started', query_id: `before${round}` });
      await until(() => s.connectionState === 'open');
      gw.dropAll();
      gw.emit({ kind: 'turn_started', query_id: `while-down${round}` }); // missed live, replayed on attach
      await until(() => s.connectionState === 'open');
    }
    await until(() => seqs.length === gw.log.length);
    assert.deepEqual(seqs, gw.log.map((f) => f.seq));
    assert.equal(s.stats.duplicates, 0);
    assert.equal(delays.length, 5);
    for (const d of delays) assert.ok(d !== null && d >= 2 && d <= 5, `first retry delay ${d} within jitter of 5 ms`);
    const attaches = gw.received.filter((f) => f.type === 'attach');
    assert.equal(attaches.length, 5);
  });

  test('links dropped right after attaching back off; one that stayed up starts the backoff again', async () => {
    const gw = new FakeGateway();
    const s = makeSession(gw, { reconnect: { initialDelayMs: 5, maxDelayMs: 40, stableMs: 150 } });
    /** @type {number[]} */
    const delays = [];
    s.on('connectionstate', (c) => c.state === 'reconnecting' && c.retryInMs !== null && delays.push(c.retryInMs));
    await s.connect();
    await sleep(200); // up long enough
    for (let i = 0; i < 4; i++) {
      gw.dropAll(); // e.g. a gateway that fails at once after each attach
      await until(() => s.connectionState === 'open');
    }
    assert.ok(delays[0] <= 5 && delays[3] >= 20, `grows: ${delays}`);
    await sleep(200);
    gw.dropAll();
    await until(() => s.connectionState === 'open');
    assert.ok(delays[4] <= 5, `starts again: ${delays}`);
  });

  test('the gateway\'s resume-now close codes reconnect at once; others back off', async () => {
    for (const [code, immediate] of [[4008, true], [4010, true], [1012, true], [1011, false], [1006, false]]) {
      const gw = new FakeGateway();
      const s = makeSession(gw, { reconnect: { initialDelayMs: 10_000, maxDelayMs: 10_000, stableMs: 0 } });
      /** @type {number[]} */
      const delays = [];
      s.on('connectionstate', (c) => c.state === 'reconnecting' && c.retryInMs !== null && delays.push(c.retryInMs));
      await s.connect();
      gw.dropAll(code);
      await until(() => delays.length === 1);
      assert.equal(delays[0] === 0, immediate, `close ${code}: first retry after ${delays[0]} ms`);
      s.disconnect();
    }
  });

  test('an event the client cannot validate still moves the cursor: no reconnect loop', async () => {
    const gw = new FakeGateway();
    const s = makeSession(gw);
    /** @type {unknown[]} */
    const errors = [];
    s.on('protocolerror', (e) => errors.push(e));
    const seqs = collect(s);
    await s.connect();
    gw.emit({ kind: 'question', request_id: 'r1', questions: [{ not_a_question: true }], expires_at: 1 });
    gw.emit({ kind: 'turn_started', query_id: 'q1' });
    await until(() => s.cursor.seq === gw.log.length);
    await sleep(50);
    assert.equal(errors.length, 1);
    assert.equal(seqs.at(-1), gw.log.length); // the event after it was applied
    assert.equal(gw.sockets.length, 1); // no reconnects
    assert.equal(s.stats.gaps, 0);
  });

  test('backoff grows, is jittered and capped while the gateway stays away', async () => {
    const gw = new FakeGateway();
    const s = makeSession(gw, { fallback: { enabled: false } });
    await s.connect();
    gw.refuseWebSocket = true;
    /** @type {number[]} */
    const delays = [];
    s.on('connectionstate', (c) => c.state === 'reconnecting' && c.retryInMs !== null && delays.push(c.retryInMs));
    gw.dropAll();
    await until(() => delays.length >= 7, 5000);
    // 5, 10, 20, 40, 40, ... with up to half taken off at random
    assert.ok(delays[0] <= 5 && delays[1] <= 10 && delays[2] <= 20, `${delays}`);
    assert.ok(delays[2] >= 10 && delays[3] >= 20, `grows: ${delays}`);
    assert.ok(delays.slice(4).every((d) => d >= 20 && d <= 40), `capped: ${delays}`);
    gw.refuseWebSocket = false;
    await until(() => s.connectionState === 'open', 2000);
  });

  test('frames sent while disconnected wait, and un-acked frames are re-sent with the same id', async () => {
    const gw = new FakeGateway();
    const s = makeSession(gw);
    await s.connect();
    gw.silent = true; // the socket accepts the query but never answers (the answer is lost)
    const first = s.query('hello');
    await until(() => gw.received.some((f) => f.type === 'query'));
    const sent = gw.received.find((f) => f.type === 'query');
    gw.execute(/** @type {any} */ (sent)); // it did run on the gateway
    gw.silent = false;
    gw.dropAll();
    const second = s.query('queued while down');
    const [r1, r2] = await Promise.all([first, second]);
    assert.equal(r1.query_id, sent?.id);
    assert.equal(r2.queued, false);
    const queries = gw.received.filter((f) => f.type === 'query');
    assert.deepEqual(queries.map((f) => f.id), [sent?.id, sent?.id, queries[2].id], 'resent once with the same id');
    assert.equal(gw.log.filter((f) => f.event.kind === 'user_query').length, 2, 'each query ran once');
    assert.equal(s.stats.resent, 1);
  });

  test('errors reject the frame that caused them', async () => {
    const gw = new FakeGateway();
    const s = makeSession(gw);
    await s.connect();
    await assert.rejects(s.setModel('nope'), (err) => err instanceof GatewayError && err.code === 'model_not_allowed');
    await s.setModel('m2');
    await until(() => s.chat?.model === 'm2');
    // An oversized frame is refused like the gateway would, without being sent.
    await assert.rejects(s.query('x'.repeat(1048577)), (err) => err instanceof GatewayError && err.code === 'frame_too_large');
    assert.ok(!gw.received.some((f) => f.type === 'query'));
    // An invalid frame never leaves the client.
    await assert.rejects(s.send(/** @type {any} */ ({ type: 'permission_response', request_id: 'r', decision: 'maybe' })), /decision/);
  });

  test('a silent connection is detected by heartbeat and replaced', async () => {
    const gw = new FakeGateway();
    const s = makeSession(gw, { heartbeat: { intervalMs: 60, timeoutMs: 60 }, connectTimeoutMs: 500 });
    const seqs = collect(s);
    await s.connect();
    gw.silent = true; // a reconnect that lands before it speaks again is not answered: connectTimeoutMs retries it
    await until(() => s.stats.heartbeatTimeouts >= 1, 10_000);
    gw.silent = false;
    gw.emit({ kind: 'turn_started', query_id: 'after' });
    await until(() => s.connectionState === 'open' && seqs.length === 3, 10_000);
    assert.ok(gw.received.some((f) => f.type === 'ping'));
    assert.deepEqual(seqs, [1, 2, 3]);
  });

  test('close code 4009 ends the session connection for good', async () => {
    const gw = new FakeGateway();
    const s = makeSession(gw);
    await s.connect();
    /** @type {any[]} */
    const closed = [];
    s.on('closed', (info) => closed.push(info));
    const iterator = s.events();
    gw.dropAll(4009);
    await until(() => s.connectionState === 'closed');
    assert.equal(closed[0].code, 'session_closed');
    assert.deepEqual(await iterator.next(), { value: undefined, done: true });
    await assert.rejects(s.query('x'), ClosedError);
  });

  test('4001 closes with unauthorized and rejects connect', async () => {
    const gw = new FakeGateway();
    gw.unauthorized = true;
    const s = makeSession(gw);
    await assert.rejects(s.connect(), (err) => err instanceof ClosedError && err.code === 'unauthorized');
    assert.equal(gw.sockets.length, 1, 'no retry after 4001');
  });

  test('attaching to a missing session fails with session_not_found', async () => {
    const gw = new FakeGateway();
    const s = makeSession(gw, { sessionId: 's_missing' });
    await assert.rejects(s.connect(), (err) => err instanceof ClosedError && err.code === 'session_not_found');
  });

  test('a reset rebuilds the chat from the snapshot and moves the cursor', async () => {
    const gw = new FakeGateway();
    gw.handshake({ type: 'open', id: 'o' });
    gw.emit({ kind: 'user_query', query_id: 'q1', prompt: 'hi', by: { principal: 'alice' } });
    const s = makeSession(gw, { sessionId: 's_fake', after: 3, epoch: 'old-epoch' });
    /** @type {any[]} */
    const resets = [];
    s.on('reset', (f) => resets.push(f));
    const seqs = collect(s);
    await s.connect();
    assert.equal(resets.length, 1);
    assert.equal(resets[0].reason, 'epoch_mismatch');
    assert.deepEqual(s.cursor, { epoch: 'ep1', seq: 3 });
    assert.equal(s.chat?.items[0].type, 'user');
    gw.emit({ kind: 'turn_started', query_id: 'q1' });
    await until(() => seqs.length === 1);
    assert.deepEqual(seqs, [4]);
  });

  test('run() takes a result that a reset skipped from the snapshot', async () => {
    const gw = new FakeGateway();
    const s = makeSession(gw);
    await s.connect();
    const running = s.run('hi', { timeoutMs: 2000 });
    await until(() => gw.received.some((f) => f.type === 'query'));
    const id = gw.received.find((f) => f.type === 'query')?.id;
    await until(() => gw.acks.has(id));
    gw.dropAll();
    gw.epoch = 'ep2'; // the log was replaced while the client was away: it comes back to a reset
    gw.emit({ kind: 'result', query_id: id, subtype: 'success', is_error: false, duration_ms: 1, duration_api_ms: 1, num_turns: 1 });
    const result = await running;
    assert.equal(result.query_id, id);
    assert.equal(s.stats.resets, 1);
  });

  test('waitFor gives up when its signal aborts', async () => {
    const gw = new FakeGateway();
    const s = makeSession(gw);
    await s.connect();
    const stop = new AbortController();
    const waiting = s.waitFor('result', { signal: stop.signal });
    stop.abort(new Error('no longer needed'));
    await assert.rejects(waiting, /no longer needed/);
    await assert.rejects(s.waitFor('result', { signal: stop.signal }), /no longer needed/);
  });

  test("info.turns counts the agent's results, not the gateway's own", async () => {
    const gw = new FakeGateway();
    const s = makeSession(gw);
    await s.connect();
    const result = { kind: 'result', is_error: false, duration_ms: 1, duration_api_ms: 1, num_turns: 1 };
    gw.emit({ ...result, query_id: 'q1', subtype: 'cancelled', is_error: true });
    gw.emit({ ...result, query_id: 'q2', subtype: 'success' });
    await until(() => s.cursor.seq === gw.log.length);
    assert.equal(s.info?.turns, 1);
  });

  test('attaching from a saved cursor still shows the approvals raised before it', async () => {
    const gw = new FakeGateway();
    gw.handshake({ type: 'open', id: 'o' });
    const request = { kind: 'permission_request', request_id: 'req_1', tool_name: 'Bash', input: { command: 'ls' }, expires_at: Date.now() + 60000 };
    gw.emit(request);
    gw.emit({ kind: 'turn_started', query_id: 'q9' });
    for (const after of [gw.log.length - 1, gw.log.length]) { // with a replay after it, and with none
      const s = makeSession(gw, { sessionId: 's_fake', after, epoch: 'ep1' });
      await s.connect();
      await until(() => s.cursor.seq === gw.log.length);
      assert.deepEqual(s.chat?.pending.map((p) => p.requestId), ['req_1'], `after ${after}`);
      s.disconnect();
    }
  });

  test('connect() on a connected session resolves at once', async () => {
    const gw = new FakeGateway();
    const s = makeSession(gw);
    await s.connect();
    assert.equal(await Promise.race([s.connect(), sleep(500).then(() => 'hung')]), s);
  });

  test('a WebSocket that takes over from a dying SSE stream is the only connection left', async () => {
    const gw = new FakeGateway();
    gw.refuseWebSocket = true;
    let armed = false;
    const Base = gw.WebSocket;
    gw.WebSocket = class extends Base {
      /** @param {string} url @param {string[]} protocols */
      constructor(url, protocols) {
        super(url, protocols);
        if (!armed) return;
        armed = false; // the SSE stream dies just as the WebSocket probe starts
        for (const conn of [...gw.attached]) if (!(conn instanceof Base)) /** @type {any} */ (conn).end();
      }
    };
    const s = makeSession(gw, { heartbeat: false, fallback: { afterFailures: 1, retryWebSocketMs: 50 } });
    await s.connect();
    assert.equal(s.transport, 'sse');
    gw.refuseWebSocket = false;
    armed = true;
    await until(() => s.transport === 'websocket');
    await sleep(300); // the reconnect the SSE stream's end had scheduled would have fired by now
    assert.equal(gw.openSockets.length, 1);
    s.disconnect();
    await sleep(20);
    assert.equal(gw.openSockets.length, 0);
  });

  test("a proxy's error page for a POST is not the gateway's answer: the frame is re-sent under its id", async () => {
    const gw = new FakeGateway();
    const reach = gw.fetch;
    let proxyFails = true;
    gw.fetch = async (/** @type {string} */ url, /** @type {RequestInit} */ init = {}) => {
      if (proxyFails && init.method === 'POST' && url.endsWith('/frames')) {
        proxyFails = false;
        await reach(url, init); // the gateway ran it; the answer was lost on the way back
        return new Response('<html><h1>502 Bad Gateway</h1></html>', { status: 502, headers: { 'Content-Type': 'text/html' } });
      }
      return reach(url, init);
    };
    const s = makeSession(gw, { transport: 'sse' });
    await s.connect();
    const ack = await s.query('hi', { id: 'q-once' });
    assert.equal(ack.query_id, 'q-once');
    assert.equal(gw.log.filter((f) => f.event.kind === 'user_query').length, 1); // ran once
  });

  test('events() iterates in order, filters by kind and ends on disconnect', async () => {
    const gw = new FakeGateway();
    const s = makeSession(gw);
    await s.connect();
    const all = s.events();
    const models = s.events({ kinds: ['model_changed'] });
    /** @type {string[]} */
    const typed = [];
    s.onEvent('model_changed', (ev) => typed.push(ev.model));
    gw.emit({ kind: 'turn_started', query_id: 'x' });
    gw.emit({ kind: 'model_changed', model: 'm2', by: { principal: 'a' } });
    assert.equal((await all.next()).value?.event.kind, 'turn_started');
    assert.equal((await all.next()).value?.event.kind, 'model_changed');
    assert.equal((await models.next()).value?.event.kind, 'model_changed');
    assert.deepEqual(typed, ['m2']);
    s.disconnect();
    assert.equal((await all.next()).done, true);
  });

  test('close() closes the session on the gateway', async () => {
    const gw = new FakeGateway();
    const s = makeSession(gw);
    await s.connect();
    await s.close();
    assert.equal(s.connectionState, 'closed');
    assert.equal(s.closeInfo?.code, 'closed_by_client');
    assert.equal(gw.closed, true);
  });
});

describe('fallback to SSE + POST', () => {
  test('falls back after WebSocket fails twice, keeps the cursor, and returns to WebSocket later', async () => {
    const gw = new FakeGateway();
    const s = makeSession(gw, { fallback: { afterFailures: 2, retryWebSocketMs: 80 } });
    const seqs = collect(s);
    /** @type {string[]} */
    const states = [];
    s.on('connectionstate', (c) => states.push(c.state));
    await s.connect();
    await until(() => seqs.length === 2);
    gw.refuseWebSocket = true;
    gw.dropAll();
    await until(() => s.connectionState === 'fallback', 3000);
    assert.equal(s.transport, 'sse');
    assert.ok(gw.fetches.includes('GET /v1/sessions/s_fake/events'));
    gw.emit({ kind: 'turn_started', query_id: 'over-sse' });
    await until(() => seqs.length === 3);
    const ack = await s.query('sent with POST');
    assert.equal(ack.queued, false);
    assert.ok(gw.fetches.includes('POST /v1/sessions/s_fake/frames'));
    await until(() => seqs.length === 4);
    // WebSockets work again: the session moves back and the SSE stream stops.
    gw.refuseWebSocket = false;
    await until(() => s.connectionState === 'open', 3000);
    assert.equal(s.transport, 'websocket');
    gw.emit({ kind: 'turn_started', query_id: 'back-on-ws' });
    await until(() => seqs.length === 5);
    assert.deepEqual(seqs, [1, 2, 3, 4, 5]);
    assert.equal(gw.attached.size, 1, 'only the WebSocket is still attached');
    assert.deepEqual(states.filter((x, i) => x !== states[i - 1]), ['connecting', 'open', 'reconnecting', 'fallback', 'open']);
  });

  test('without any WebSocket implementation it opens over HTTP', async () => {
    const gw = new FakeGateway();
    const s = makeSession(gw, {}, { WebSocket: null });
    await s.connect();
    assert.equal(s.connectionState, 'fallback');
    assert.deepEqual(gw.fetches.slice(0, 2), ['POST /v1/sessions', 'GET /v1/sessions/s_fake/events']);
  });
});

describe('network events', () => {
  test('offline drops the connection and waits; online reconnects at once', async () => {
    const target = new EventTarget();
    const g = /** @type {any} */ (globalThis);
    const saved = { add: g.addEventListener, remove: g.removeEventListener, nav: Object.getOwnPropertyDescriptor(g, 'navigator') };
    const nav = { onLine: true };
    g.addEventListener = target.addEventListener.bind(target);
    g.removeEventListener = target.removeEventListener.bind(target);
    Object.defineProperty(g, 'navigator', { value: nav, configurable: true, writable: true });
    try {
      const gw = new FakeGateway();
      const s = makeSession(gw, { watchNetwork: true });
      await s.connect();
      /** @type {any[]} */
      const changes = [];
      s.on('connectionstate', (c) => changes.push(c));
      nav.onLine = false;
      target.dispatchEvent(new Event('offline'));
      assert.equal(s.connectionState, 'reconnecting');
      await sleep(60);
      assert.equal(gw.sockets.length, 1, 'no attempts while offline');
      nav.onLine = true;
      target.dispatchEvent(new Event('online'));
      await until(() => s.connectionState === 'open');
      assert.equal(gw.sockets.length, 2);
      assert.equal(changes[0].reason, 'offline');
    } finally {
      g.addEventListener = saved.add;
      g.removeEventListener = saved.remove;
      if (saved.nav) Object.defineProperty(g, 'navigator', saved.nav);
      else delete g.navigator;
    }
  });
});
