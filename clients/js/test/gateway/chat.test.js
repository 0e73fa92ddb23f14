// The client against a real gateway process in demo mode (the scripted model drives the real CLI).
import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import { ClosedError, GatewayClient, GatewayError } from '../../src/index.js';
import { HELLO, autoAnswer, testClient, turn, until } from '../helpers/flows.js';
import { startGateway, TOKENS } from '../helpers/gateway.js';

/** @type {import('../helpers/gateway.js').Gateway} */
let gw;
/** @type {import('../../src/session.js').GatewaySession[]} */
const sessions = [];
before(async () => {
  gw = await startGateway({ name: 'chat' });
});
after(async () => {
  for (const s of sessions) await s.close().catch(() => s.disconnect());
  await gw?.stop();
});

/** @param {import('../../src/session.js').GatewaySession} s */
const track = (s) => (sessions.push(s), s);

describe('chat against a real gateway', () => {
  test('listSessions, closeSession and health: what the chat page\'s list and demo badge use', async () => {
    const client = testClient(gw.url, { token: TOKENS.bob });
    const session = track(await client.open({ profile: 'default' }));
    const id = /** @type {string} */ (session.id);
    const listed = await client.listSessions();
    assert.ok(listed.some((s) => s.session_id === id && s.state !== 'closed'), 'the open session is listed');
    assert.ok(!(await testClient(gw.url).listSessions()).some((s) => s.session_id === id), "not in another principal's list");
    const closed = await client.closeSession(id);
    assert.equal(closed.session_id, id);
    await until(async () => (await client.getSession(id)).state === 'closed', 10000, 'closed');
    assert.equal((await client.listSessions()).find((s) => s.session_id === id)?.state, 'closed', 'listed as closed while retained');
    assert.deepEqual(await client.health(), { status: 'ok', demo: true }, 'the test gateway runs in demo mode');
  });

  test('a full chat: streamed text, an approval, edited input, a denial, a question, an interrupt', async () => {
    const client = testClient(gw.url);
    const session = track(await client.open({ profile: 'default' }));
    assert.match(String(session.id), /^s_/);
    assert.equal(session.connectionState, 'open');
    await session.waitForState('idle', { timeoutMs: 60000 });
    const chat = /** @type {import('../../src/chat.js').ChatState} */ (session.chat);

    // Streamed text.
    /** @type {string[]} */
    const deltas = [];
    const offDeltas = session.onEvent('stream', (e) => {
      const d = /** @type {any} */ (e.event).delta;
      if (d?.type === 'text_delta') deltas.push(d.text);
    });
    const hello = await turn(session, 'SCRIPT:hello');
    offDeltas();
    assert.equal(hello.is_error, false);
    assert.ok(deltas.length > 3, 'the text arrived in deltas');
    assert.equal(deltas.join(''), HELLO);
    assert.equal(chat.items.filter((i) => i.type === 'text').at(-1)?.type === 'text' && /** @type {any} */ (chat.items.filter((i) => i.type === 'text').at(-1)).text, HELLO);

    // An approval, allowed.
    const offAllow = session.onEvent('permission_request', (e) => {
      assert.equal(e.tool_name, 'Bash');
      assert.equal(chat.pending.length, 1);
      session.allow(e.request_id);
    });
    await turn(session, 'SCRIPT:bash');
    offAllow();
    let tool = /** @type {any} */ (chat.items.filter((i) => i.type === 'tool').at(-1));
    assert.equal(tool.status, 'done');
    assert.equal(tool.result.text, 'hello-from-agent');
    assert.match(/** @type {any} */ (chat.items.filter((i) => i.type === 'text').at(-1)).text, /^The command returned: hello-from-agent/);

    // Allowed with edited input: the tool runs what the user changed it to.
    const offEdit = session.onEvent('permission_request', (e) => {
      session.allow(e.request_id, { updatedInput: { ...e.input, command: "sh -c 'echo edited-by-user'" } });
    });
    await turn(session, 'SCRIPT:bash');
    offEdit();
    tool = chat.items.filter((i) => i.type === 'tool').at(-1);
    assert.equal(tool.result.text, 'edited-by-user');
    assert.equal(/** @type {any} */ (chat.items.filter((i) => i.type === 'approval').at(-1)).status, 'allowed');

    // Denied.
    const offDeny = session.onEvent('permission_request', (e) => session.deny(e.request_id, { message: 'not today' }));
    await turn(session, 'SCRIPT:bash');
    offDeny();
    tool = chat.items.filter((i) => i.type === 'tool').at(-1);
    assert.equal(tool.status, 'denied');
    assert.equal(/** @type {any} */ (chat.items.filter((i) => i.type === 'approval').at(-1)).message, 'not today');

    // A question.
    const offAsk = session.onEvent('question', (e) => session.answer(e.request_id, { [e.questions[0].question]: 'Blue' }));
    await turn(session, 'SCRIPT:ask');
    offAsk();
    assert.equal(/** @type {any} */ (chat.items.filter((i) => i.type === 'text').at(-1)).text, 'You answered: Blue');
    assert.deepEqual(/** @type {any} */ (chat.items.filter((i) => i.type === 'question').at(-1)).answers, { 'Which color?': 'Blue' });

    // An interrupt while text streams.
    const streaming = session.waitFor((e) => e.kind === 'stream' && /** @type {any} */ (e.event).delta?.type === 'text_delta', { timeoutMs: 60000 });
    const running = session.run('SCRIPT:long', { timeoutMs: 60000 });
    await streaming;
    assert.equal(chat.busy, true);
    assert.deepEqual(await session.interrupt(), { interrupted: true });
    const result = await running;
    assert.equal(result.is_error, true);
    await session.waitForState('idle', { timeoutMs: 30000 });
    assert.equal(chat.busy, false);
    assert.equal(/** @type {any} */ (chat.lastResult).interrupted, true);

    // Cost per turn adds up to the session's.
    const results = /** @type {any[]} */ (chat.items.filter((i) => i.type === 'result'));
    assert.equal(results.length, 6);
    assert.ok(results.every((r) => typeof r.costUsd === 'number' && r.costUsd >= 0));
    const info = await client.getSession(String(session.id));
    assert.ok(Math.abs(chat.totalCostUsd - info.total_cost_usd) < 1e-6, `${chat.totalCostUsd} vs ${info.total_cost_usd}`);
    assert.equal(session.stats.duplicates, 0);
  });

  test('model, mode and conversation reset from the profile', async () => {
    const client = testClient(gw.url);
    const session = track(await client.open());
    await session.waitForState('idle', { timeoutMs: 60000 });
    const chat = /** @type {import('../../src/chat.js').ChatState} */ (session.chat);
    assert.ok(chat.allowedModels && chat.allowedModels.length > 1);
    const other = chat.allowedModels.find((m) => m !== chat.model) ?? '';
    await session.setModel(other);
    await until(() => chat.model === other, 10000, 'model change');
    await assert.rejects(session.setModel('gpt-nope'), (e) => e instanceof GatewayError && e.code === 'model_not_allowed');
    await session.setPermissionMode('plan');
    await until(() => chat.permissionMode === 'plan', 10000, 'mode change');
    await assert.rejects(session.setPermissionMode('bypassPermissions'), (e) => e instanceof GatewayError && e.code === 'mode_not_allowed');
    await turn(session, 'SCRIPT:hello');
    await session.resetConversation('soft');
    await until(() => chat.items.some((i) => i.type === 'notice' && i.code === 'conversation_reset'), 10000, 'reset notice');
    await turn(session, 'SCRIPT:hello');
    const profiles = await client.profiles();
    assert.ok(profiles.some((p) => p.name === 'default'));
  });

  test('two tabs on one session see the same events; either can answer', async () => {
    const client = testClient(gw.url);
    const tab1 = track(await client.open());
    await tab1.waitForState('idle', { timeoutMs: 60000 });
    const tab2 = track(await testClient(gw.url).attach(String(tab1.id)));
    tab2.onEvent('permission_request', (e) => tab2.allow(e.request_id));
    await turn(tab1, 'SCRIPT:bash');
    await until(() => tab2.cursor.seq === tab1.cursor.seq, 10000, 'tab 2 to catch up');
    const approval = /** @type {any} */ (tab1.chat?.items.find((i) => i.type === 'approval'));
    assert.equal(approval.status, 'allowed');
    assert.equal(approval.resolvedBy.connection, tab2.connectionId);
    assert.deepEqual(tab1.chat?.items.map((i) => i.type), tab2.chat?.items.map((i) => i.type));
    tab2.disconnect();
  });

  test('tickets, a refused token, a missing session, a bad frame', async () => {
    const viaTicket = testClient(gw.url, { auth: 'ticket' });
    const s = track(await viaTicket.open());
    assert.equal(s.connectionState, 'open');

    const bad = new GatewayClient({ url: gw.url, token: 'wrong-token-0123456789' });
    await assert.rejects(bad.open(), (e) => e instanceof ClosedError && e.code === 'unauthorized');
    await assert.rejects(bad.profiles(), (e) => e instanceof GatewayError && e.status === 401 && e.code === 'unauthorized');

    await assert.rejects(testClient(gw.url).attach('s_doesnotexist'), (e) => e instanceof ClosedError && e.code === 'session_not_found');
    // Another principal's session is reported as missing too.
    const bob = new GatewayClient({ url: gw.url, token: TOKENS.bob });
    await assert.rejects(bob.attach(String(s.id)), (e) => e instanceof ClosedError && e.code === 'session_not_found');

    await assert.rejects(testClient(gw.url).open({ profile: 'no-such-profile' }), (e) => e instanceof ClosedError && e.code === 'profile_not_found');
    await assert.rejects(s.send(/** @type {any} */ ({ type: 'query', prompt: '' })), /prompt/);
    await assert.rejects(s.answer('req_unknown', { a: 'b' }), (e) => e instanceof GatewayError && e.code === 'unknown_request');
  });

  test('close() ends the session for every tab', async () => {
    const client = testClient(gw.url);
    const s = await client.open();
    const other = track(await testClient(gw.url).attach(String(s.id)));
    /** @type {any[]} */
    const closed = [];
    other.on('closed', (info) => closed.push(info));
    await s.close();
    assert.equal(s.closeInfo?.code, 'closed_by_client');
    await until(() => closed.length === 1, 10000, 'the other tab to close');
    assert.equal(closed[0].code, 'session_closed');
    autoAnswer(other)();
  });
});

describe('injected implementations', () => {
  test('a WebSocket implementation passed in (the ws package) and plain Node fetch', async () => {
    const { WebSocket: NodeWebSocket } = await import('ws');
    const client = testClient(gw.url, { WebSocket: /** @type {any} */ (NodeWebSocket) });
    const session = track(await client.open());
    assert.equal(session.transport, 'websocket');
    await session.waitForState('idle', { timeoutMs: 60000 });
    const result = await session.run('SCRIPT:hello', { timeoutMs: 60000 });
    assert.equal(result.is_error, false);
    assert.equal(/** @type {any} */ (session.chat?.items.find((i) => i.type === 'text')).text, HELLO);
  });
});
