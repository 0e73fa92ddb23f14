// Folding recorded event streams (test/fixtures, recorded from a demo gateway with
// test/helpers/record-fixtures.mjs) into chat state.
import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import { describe, test } from 'node:test';
import { fileURLToPath } from 'node:url';
import { ChatState, foldChat } from '../../src/index.js';

const FIXTURES = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../fixtures');
const HELLO = 'Hello! I am the scripted model, streaming this greeting in small chunks.';

/** @param {string} name @returns {{ attached: any, events: import('../../src/protocol.js').EventFrame[] }} */
function load(name) {
  const frames = fs.readFileSync(path.join(FIXTURES, `${name}.jsonl`), 'utf8').trim().split('\n').map((l) => JSON.parse(l));
  return { attached: frames[0], events: frames.slice(1) };
}
/** @param {string} name */
function fold(name) {
  const { attached, events } = load(name);
  return foldChat(events, attached.session);
}
/** @param {ChatState} chat @param {string} type */
const ofType = (chat, type) => /** @type {any[]} */ (chat.items.filter((i) => i.type === type));

describe('chat state from recorded sessions', () => {
  test('a streamed greeting: prompt, text, result with cost and usage', () => {
    const chat = fold('hello');
    assert.deepEqual(chat.items.map((i) => i.type), ['user', 'text', 'result']);
    const [user, text, result] = /** @type {any[]} */ (chat.items);
    assert.equal(user.text, 'SCRIPT:hello');
    assert.equal(text.text, HELLO);
    assert.equal(text.streaming, false);
    assert.equal(result.isError, false);
    assert.ok(result.costUsd > 0);
    assert.equal(result.costUsd, chat.totalCostUsd);
    assert.ok(/** @type {any} */ (result.usage).output_tokens > 0);
    assert.equal(chat.sessionState, 'idle');
    assert.equal(chat.busy, false);
    assert.equal(chat.turns, 1);
    // Attaching later replays the same result: the turn is not counted twice.
    const { attached, events } = load('hello');
    assert.equal(foldChat(events, { ...attached.session, turns: 1 }).turns, 1);
  });

  test('text grows delta by delta while streaming', () => {
    const { attached, events } = load('hello');
    const chat = new ChatState();
    chat.setInfo(attached.session);
    /** @type {string[]} */
    const seen = [];
    for (const frame of events) {
      chat.applyFrame(frame);
      const text = /** @type {any} */ (chat.items.find((i) => i.type === 'text'));
      if (text && text.streaming) seen.push(text.text);
    }
    assert.ok(seen.length > 3, 'several partial states');
    for (let i = 1; i < seen.length; i++) assert.ok(seen[i].startsWith(seen[i - 1]));
    assert.ok(HELLO.startsWith(seen[seen.length - 1]));
  });

  test('an allowed tool: approval, tool card with result, final text', () => {
    const chat = fold('bash-allow');
    const [tool] = ofType(chat, 'tool');
    const [approval] = ofType(chat, 'approval');
    assert.equal(tool.name, 'Bash');
    assert.equal(tool.input.command, "sh -c 'echo hello-from-agent'");
    assert.equal(tool.status, 'done');
    assert.equal(tool.result.text, 'hello-from-agent');
    assert.equal(/** @type {any} */ (tool.result.data).stdout, 'hello-from-agent');
    assert.equal(approval.status, 'allowed');
    assert.equal(approval.resolvedBy.principal, 'alice');
    assert.equal(chat.pending.length, 0);
    const texts = ofType(chat, 'text').map((t) => t.text);
    assert.equal(texts[0], 'Let me run a command.');
    assert.ok(texts[1].startsWith('The command returned: hello-from-agent'));
    assert.deepEqual(chat.items.map((i) => i.type), ['user', 'text', 'tool', 'approval', 'text', 'result']);
  });

  test('pending approvals are listed until resolved', () => {
    const { attached, events } = load('bash-allow');
    const chat = new ChatState();
    chat.setInfo(attached.session);
    let sawPending = false;
    for (const frame of events) {
      chat.applyFrame(frame);
      if (frame.event.kind === 'permission_request') {
        sawPending = true;
        assert.equal(chat.pending.length, 1);
        assert.equal(chat.pending[0].type, 'approval');
        assert.equal(/** @type {any} */ (chat.tool(String(frame.event.tool_use_id))).status, 'awaiting_approval');
      }
    }
    assert.ok(sawPending);
    assert.equal(chat.pending.length, 0);
  });

  test('a denied tool stays denied and shows the reason', () => {
    const chat = fold('bash-deny');
    const [tool] = ofType(chat, 'tool');
    const [approval] = ofType(chat, 'approval');
    assert.equal(approval.status, 'denied');
    assert.equal(approval.message, 'Not now');
    assert.equal(tool.status, 'denied');
    assert.equal(tool.result.isError, true);
  });

  test('a question and its answer', () => {
    const chat = fold('ask');
    const [question] = ofType(chat, 'question');
    assert.equal(question.questions[0].question, 'Which color?');
    assert.deepEqual(question.questions[0].options.map((/** @type {any} */ o) => o.label), ['Red', 'Blue']);
    assert.equal(question.status, 'answered');
    assert.deepEqual(question.answers, { 'Which color?': 'Blue' });
    assert.equal(ofType(chat, 'text').at(-1).text, 'You answered: Blue');
  });

  test('an interrupted turn keeps the partial text and says so', () => {
    const chat = fold('interrupt');
    const [text] = ofType(chat, 'text');
    assert.ok(text.text.startsWith('Here is a longer answer'));
    assert.equal(text.streaming, false);
    assert.ok(ofType(chat, 'notice').some((n) => n.code === 'interrupted'));
    const [result] = ofType(chat, 'result');
    assert.equal(result.interrupted, true);
    assert.equal(result.isError, true);
  });

  test('model and mode changes, and per-turn cost across a conversation reset', () => {
    const { attached, events } = load('settings');
    const before = foldChat(events.slice(0, events.findIndex((f) => f.event.kind === 'conversation_reset')), attached.session);
    assert.deepEqual(ofType(before, 'notice').map((n) => n.code), ['model_changed', 'permission_mode_changed']);
    const [first] = ofType(before, 'result');
    const chat = fold('settings');
    assert.equal(chat.model, 'claude-haiku-4-5');
    assert.equal(chat.permissionMode, 'plan');
    // The reset starts the chat again, as it does the gateway's transcript: what a snapshot shows.
    assert.equal(chat.items[0].type, 'notice');
    assert.deepEqual(ofType(chat, 'notice').map((n) => n.code), ['conversation_reset']);
    const [second, ...more] = ofType(chat, 'result');
    assert.equal(more.length, 0);
    // The agent process restarts after the reset; each turn's cost and the session's total still add up.
    for (const r of [first, second]) assert.ok(r.costUsd > 0 && r.costUsd < 0.1, `turn cost ${r.costUsd}`);
    assert.ok(Math.abs(chat.totalCostUsd - (first.costUsd + second.costUsd)) < 1e-9);
  });

  test('a queued prompt that never ran is no longer shown as queued once its result is in', () => {
    const by = { principal: 'alice', connection: 'c1' };
    const chat = foldChat(/** @type {any[]} */ ([
      { kind: 'user_query', query_id: 'q1', prompt: 'a', by, queued: false },
      { kind: 'user_query', query_id: 'q2', prompt: 'b', by, queued: true },
      { kind: 'result', query_id: 'q2', subtype: 'cancelled', is_error: true, duration_ms: 0, duration_api_ms: 0, num_turns: 0 },
    ]));
    assert.equal(/** @type {any} */ (chat.get('q:q2')).queued, false);
  });

  test('a reset keeps the prompts sent while it ran (they run next), as the gateway\'s transcript does', () => {
    const by = { principal: 'alice', connection: 'c1' };
    const result = (/** @type {string} */ q, /** @type {string} */ subtype) => ({ kind: 'result', query_id: q, subtype, is_error: subtype !== 'success', duration_ms: 0, duration_api_ms: 0, num_turns: 0 });
    const chat = foldChat(/** @type {any[]} */ ([
      { kind: 'user_query', query_id: 'q1', prompt: 'running', by, queued: false },
      { kind: 'turn_started', query_id: 'q1' },
      { kind: 'user_query', query_id: 'q2', prompt: 'queued before the reset', by, queued: true },
      result('q2', 'cancelled'), // dropped by the reset
      { kind: 'user_query', query_id: 'q3', prompt: 'sent during the reset', by, queued: true },
      result('q1', 'success'),
      { kind: 'conversation_reset', mode: 'soft', by },
      { kind: 'turn_started', query_id: 'q3' },
    ]));
    assert.deepEqual(chat.items.map((i) => [i.type, i.type === 'notice' ? i.code : /** @type {any} */ (i).text]), [
      ['user', 'sent during the reset'],
      ['notice', 'conversation_reset'],
    ]);
  });

  test("a turn lost with its agent process ends with the gateway's result; costs don't count twice", () => {
    /** @param {string} id @param {object} extra */
    const result = (id, extra) => ({ kind: 'result', query_id: id, is_error: false, subtype: 'success', duration_ms: 5, duration_api_ms: 1, num_turns: 1, ...extra });
    /** @param {string} id */
    const ask = (id) => ({ kind: 'user_query', query_id: id, prompt: id, by: { principal: 'alice', connection: 'c1' }, queued: false });
    const chat = foldChat(/** @type {any[]} */ ([
      ask('q1'),
      result('q1', { cost_usd: 0.1, total_cost_usd: 0.1 }),
      ask('q2'),
      { kind: 'error', code: 'agent_exited', message: 'The agent process stopped', recoverable: true },
      result('q2', { subtype: 'agent_exited', is_error: true, duration_ms: 0, num_turns: 0, errors: ['the agent process stopped during this turn'] }),
      ask('q3'),
      result('q3', { cost_usd: 0.2, total_cost_usd: 0.3 }),
    ]));
    const results = ofType(chat, 'result');
    assert.deepEqual(results.map((r) => [r.queryId, r.subtype, r.isError, r.costUsd]), [
      ['q1', 'success', false, 0.1], ['q2', 'agent_exited', true, null], ['q3', 'success', false, 0.2],
    ]);
    assert.deepEqual(results[1].errors, ['the agent process stopped during this turn']);
    assert.equal(chat.totalCostUsd, 0.3);
    assert.equal(chat.turns, 2); // as the session counts them: the gateway's own result is not a turn
    assert.equal(chat.busy, false);
  });

  test('a snapshot of the transcript folds to the same chat as the live events', () => {
    for (const name of ['bash-allow', 'ask', 'interrupt', 'settings']) {
      const { attached, events } = load(name);
      const live = foldChat(events, attached.session);
      const TRANSCRIPT = new Set(['user_query', 'assistant_message', 'user_message', 'result', 'permission_request', 'question', 'request_resolved', 'model_changed', 'permission_mode_changed', 'conversation_reset', 'error']);
      const chat = new ChatState();
      chat.applySnapshot({
        session: { ...attached.session, last_seq: events.length, state: 'idle', total_cost_usd: live.totalCostUsd },
        transcript: events.map((f) => f.event).filter((e) => TRANSCRIPT.has(e.kind)),
        streaming_text: null,
      });
      /** @param {ChatState} c */
      const view = (c) => c.items.map((i) => ({
        type: i.type,
        text: 'text' in i ? i.text : undefined,
        status: 'status' in i ? i.status : undefined,
        result: i.type === 'tool' ? i.result?.text : undefined,
      }));
      assert.deepEqual(view(chat), view(live), name);
      assert.equal(chat.totalCostUsd, live.totalCostUsd);
      assert.deepEqual(chat.items.filter((i) => i.type === 'result').map((i) => /** @type {any} */ (i).interrupted),
        live.items.filter((i) => i.type === 'result').map((i) => /** @type {any} */ (i).interrupted));
    }
  });

  test('after a mid-stream snapshot, live deltas continue the streaming text', () => {
    const { attached, events } = load('hello');
    const stop = events.findIndex((f) => f.event.kind === 'stream' && /** @type {any} */ (f.event.event).delta?.type === 'text_delta') + 2;
    let partial = '';
    for (const f of events.slice(0, stop)) {
      const d = f.event.kind === 'stream' ? /** @type {any} */ (f.event.event).delta : null;
      if (d?.type === 'text_delta') partial += d.text;
    }
    const chat = new ChatState();
    chat.applySnapshot({
      session: { ...attached.session, last_seq: events[stop - 1].seq, state: 'running' },
      transcript: events.slice(0, stop).map((f) => f.event).filter((e) => e.kind === 'user_query'),
      streaming_text: partial,
    });
    assert.equal(/** @type {any} */ (chat.items[1]).text, partial);
    let grew = false;
    for (const f of events.slice(stop)) {
      chat.applyFrame(f);
      const texts = ofType(chat, 'text');
      assert.equal(texts.length, 1, 'still one text item');
      if (texts[0].streaming && texts[0].text.length > partial.length) grew = true;
    }
    assert.ok(grew);
    assert.equal(ofType(chat, 'text')[0].text, HELLO);
  });

  test('unchanged items keep their identity; changed ones are new objects', () => {
    const { attached, events } = load('hello');
    const chat = new ChatState();
    chat.setInfo(attached.session);
    const last = events.findIndex((f) => f.event.kind === 'stream' && /** @type {any} */ (f.event.event).delta?.type === 'text_delta');
    for (const f of events.slice(0, last + 1)) chat.applyFrame(f);
    const before = chat.items;
    const version = chat.version;
    chat.applyFrame(events[last + 1]);
    const after = chat.items;
    assert.notEqual(before, after);
    assert.ok(chat.version > version);
    assert.equal(before[0], after[0], 'the prompt did not change');
    assert.notEqual(before[1], after[1], 'the streaming text did');
  });
});
