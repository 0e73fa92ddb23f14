import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import {
  decodeServerFrame, decodeServerMessage, encodeClientFrame, ProtocolError, validateClientFrame, validateServerFrame,
} from '../../src/index.js';

const info = {
  session_id: 's', profile: 'default', model: null, permission_mode: 'default', state: 'idle', epoch: 'e', last_seq: 0,
  created_at: 1, last_activity: 1, turns: 0, total_cost_usd: 0, queued: 0, pending: [], allowed_models: null, allowed_modes: ['default'],
  limits: { log_max_events: 10000, log_max_bytes: 33554432, log_max_age_s: 3600, transcript_max_events: 2000, max_queued_queries: 20, max_frame_bytes: 1048576 },
};

describe('server frames', () => {
  test('a message with several frames is split on newlines', () => {
    const a = { type: 'event', seq: 1, epoch: 'e', ts: 1, event: { kind: 'state', state: 'idle' } };
    const b = { type: 'ack', id: 'q1', result: { query_id: 'q1', queued: false, position: 0 } };
    const { frames, errors } = decodeServerMessage(`${JSON.stringify(a)}\n${JSON.stringify(b)}`);
    assert.deepEqual(frames, [a, b]);
    assert.deepEqual(errors, []);
  });

  test('a bad line is reported without losing the others', () => {
    const good = { type: 'pong', id: 'p', ts: 3 };
    const { frames, errors } = decodeServerMessage(`{oops\n${JSON.stringify(good)}\n{"type":"event","seq":0,"epoch":"e","ts":1,"event":{"kind":"state","state":"idle"}}`);
    assert.deepEqual(frames, [good]);
    assert.equal(errors.length, 2);
    assert.ok(errors.every((e) => e instanceof ProtocolError));
    assert.match(errors[1].message, /seq must be >= 1/);
  });

  test('known event kinds are checked; unknown kinds pass through (a newer gateway)', () => {
    const frame = (/** @type {any} */ event) => ({ type: 'event', seq: 1, epoch: 'e', ts: 1, event });
    assert.equal(validateServerFrame(frame({ kind: 'permission_request', request_id: 'r', tool_name: 'Bash', input: {}, expires_at: 1 })), null);
    assert.match(String(validateServerFrame(frame({ kind: 'permission_request', request_id: 'r', input: {}, expires_at: 1 }))), /tool_name is required/);
    assert.match(String(validateServerFrame(frame({ kind: 'state', state: 'sleeping' }))), /state must be one of/);
    assert.equal(validateServerFrame(frame({ kind: 'brand_new_kind', anything: 1 })), null);
    assert.match(String(validateServerFrame({ type: 'mystery' })), /unknown server frame type/);
  });

  test('attached and reset carry a valid session', () => {
    assert.equal(validateServerFrame({ type: 'attached', id: 'o', connection: 'c', after: 0, session: info, protocol: 1 }), null);
    assert.match(String(validateServerFrame({ type: 'attached', id: 'o', connection: 'c', after: 0, session: { ...info, epoch: 3 }, protocol: 1 })), /epoch must be a string/);
    const noRetention = { ...info, limits: { ...info.limits, log_max_events: '10000' } };
    assert.match(String(validateServerFrame({ type: 'attached', id: 'o', connection: 'c', after: 0, session: noRetention, protocol: 1 })), /log_max_events must be an integer/);
    const snapshot = { session: info, transcript: [{ kind: 'user_query', query_id: 'q', prompt: 'hi', by: { principal: 'a' } }], streaming_text: null };
    assert.equal(validateServerFrame({ type: 'reset', reason: 'cursor_too_old', snapshot }), null);
  });

  test('decodeServerFrame throws ProtocolError on bad JSON', () => {
    assert.throws(() => decodeServerFrame('nope'), ProtocolError);
  });
});

describe('client frames', () => {
  test('valid frames encode', () => {
    const frames = [
      { type: 'open', id: 'o1', profile: 'default', permission_mode: 'plan', max_turns: 3 },
      { type: 'attach', id: 'a1', session_id: 's_1', after: 10, epoch: 'e' },
      { type: 'query', id: 'q1', prompt: 'hello' },
      { type: 'query', id: 'q2', prompt: [{ type: 'text', text: 'hi' }] },
      { type: 'permission_response', id: 'p', request_id: 'r', decision: 'allow', updated_input: { command: 'ls' }, apply_suggestions: [0] },
      { type: 'question_response', id: 'qr', request_id: 'r', answers: { 'Which?': 'Blue', 'Many?': ['a', 'b'] } },
      { type: 'set_model', id: 'm', model: 'x' },
      { type: 'set_permission_mode', id: 'pm', mode: 'acceptEdits' },
      { type: 'reset_conversation', id: 'rc', mode: 'hard' },
      { type: 'interrupt', id: 'i' }, { type: 'close', id: 'c' }, { type: 'ping', id: 'p2' },
    ];
    for (const f of frames) assert.equal(JSON.parse(encodeClientFrame(/** @type {any} */ (f))).id, f.id);
  });

  test('invalid frames are refused before they are sent', () => {
    const bad = [
      [{ type: 'query', id: 'q', prompt: '' }, /prompt/],
      [{ type: 'query', prompt: 'x' }, /id is required/],
      [{ type: 'query', id: 'x'.repeat(129), prompt: 'x' }, /length/],
      [{ type: 'attach', id: 'a', session_id: 's', after: -1 }, /after must be >= 0/],
      [{ type: 'open', id: 'o', max_budget_usd: 0 }, /max_budget_usd must be > 0/],
      [{ type: 'set_permission_mode', id: 'p', mode: 'yolo' }, /mode must be one of/],
      [{ type: 'interrupt', id: 'i', extra: 1 }, /not a field/],
      [{ type: 'teleport', id: 't' }, /unknown client frame type/],
    ];
    for (const [frame, pattern] of bad) {
      assert.match(String(validateClientFrame(frame)), /** @type {RegExp} */ (pattern), JSON.stringify(frame));
      assert.throws(() => encodeClientFrame(/** @type {any} */ (frame)), ProtocolError);
    }
  });
});
