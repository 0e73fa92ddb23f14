// Issue 11's frames and fields: what the gateway exposes of the SDK beyond chat, checked by the codec.
import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { encodeClientFrame, validateClientFrame, validateServerFrame } from '../../src/index.js';

const event = (/** @type {any} */ body) => ({ type: 'event', seq: 1, epoch: 'e', ts: 1, event: body });
const result = { kind: 'result', query_id: 'q', subtype: 'success', is_error: false, duration_ms: 1, duration_api_ms: 1, num_turns: 1 };

describe('result and rate-limit fidelity', () => {
  test('a result carries structured output, per-model usage, the API error status and a deferred tool', () => {
    const full = {
      ...result, structured_output: { answer: '42' }, api_error_status: 529, origin: { kind: 'task-notification' },
      model_usage: { 'claude-sonnet-4-5': { inputTokens: 10, outputTokens: 2, costUSD: 0.1, contextWindow: 200000 } },
      deferred_tool_use: { id: 't', name: 'Bash', input: { command: 'ls' } },
    };
    assert.equal(validateServerFrame(event(full)), null);
    assert.match(String(validateServerFrame(event({ ...result, model_usage: { m: { inputTokens: '10', outputTokens: 2, costUSD: 0 } } }))), /inputTokens must be a number/);
    assert.match(String(validateServerFrame(event({ ...result, deferred_tool_use: { id: 't', input: {} } }))), /name is required/);
  });

  test('a rate limit has a typed status, in the event and in the session', () => {
    const info = { status: 'allowed_warning', resetsAt: 1795320000, rateLimitType: 'five_hour', utilization: 0.82 };
    assert.equal(validateServerFrame(event({ kind: 'rate_limit', info })), null);
    assert.match(String(validateServerFrame(event({ kind: 'rate_limit', info: { ...info, status: 'maybe' } }))), /status must be one of/);
    assert.match(String(validateServerFrame(event({ kind: 'rate_limit', info: { utilization: 1 } }))), /status is required/);
  });

  test('a user message keeps its uuid and origin', () => {
    assert.equal(validateServerFrame(event({ kind: 'user_message', content: 'done', uuid: 'u1', origin: { kind: 'task-notification' } })), null);
    assert.match(String(validateServerFrame(event({ kind: 'user_message', content: 'done', uuid: 7 }))), /uuid must be a string/);
  });
});

describe('structured output', () => {
  test('open may ask for a JSON schema; anything else in output_format is refused before it is sent', () => {
    const schema = { type: 'object', properties: { answer: { type: 'string' } } };
    assert.ok(encodeClientFrame({ type: 'open', id: 'o', output_format: { type: 'json_schema', schema } }));
    assert.ok(encodeClientFrame({ type: 'open', id: 'o', output_format: { schema } }));
    assert.match(String(validateClientFrame({ type: 'open', id: 'o', output_format: { type: 'xml', schema } })), /type must be one of/);
    assert.match(String(validateClientFrame({ type: 'open', id: 'o', output_format: {} })), /schema is required/);
  });
});

describe('chat state', () => {
  test('the latest rate limit comes from the session when attaching, then from events', async () => {
    const { ChatState } = await import('../../src/index.js');
    const chat = new ChatState();
    const info = {
      session_id: 's', profile: 'default', model: null, permission_mode: 'default', state: 'idle', epoch: 'e', last_seq: 0,
      created_at: 1, last_activity: 1, turns: 0, total_cost_usd: 0, queued: 0, pending: [], allowed_models: null, allowed_modes: ['default'],
      limits: { log_max_events: 1, log_max_bytes: 1, log_max_age_s: 1, transcript_max_events: 1, max_queued_queries: 1, max_frame_bytes: 1 },
      rate_limit: { status: 'allowed_warning', utilization: 0.82 },
    };
    chat.setInfo(/** @type {any} */ (info));
    assert.deepEqual(chat.rateLimit, { status: 'allowed_warning', utilization: 0.82 });
    chat.apply({ kind: 'rate_limit', info: { status: 'rejected' } });
    assert.deepEqual(chat.rateLimit, { status: 'rejected' });
  });
});

describe('thinking', () => {
  test('open may narrow thinking and effort; malformed settings are refused before they are sent', () => {
    assert.ok(encodeClientFrame({ type: 'open', id: 'o', thinking: { type: 'enabled', budget_tokens: 2000, display: 'omitted' }, effort: 'low' }));
    assert.ok(encodeClientFrame({ type: 'open', id: 'o', thinking: { type: 'disabled' } }));
    assert.match(String(validateClientFrame({ type: 'open', id: 'o', thinking: { type: 'enabled' } })), /budget_tokens is required/);
    assert.match(String(validateClientFrame({ type: 'open', id: 'o', thinking: { type: 'disabled', display: 'omitted' } })), /not a field/);
    assert.match(String(validateClientFrame({ type: 'open', id: 'o', effort: 'extreme' })), /effort must be one of/);
  });

  test('a snapshot taken mid-thinking shows the thinking apart from the text, and the deltas that follow continue it', async () => {
    const { ChatState } = await import('../../src/index.js');
    const chat = new ChatState();
    const session = {
      session_id: 's', profile: 'default', model: null, permission_mode: 'default', state: 'running', epoch: 'e', last_seq: 9,
      created_at: 1, last_activity: 1, turns: 0, total_cost_usd: 0, queued: 0, pending: [], allowed_models: null, allowed_modes: ['default'],
      limits: { log_max_events: 1, log_max_bytes: 1, log_max_age_s: 1, transcript_max_events: 1, max_queued_queries: 1, max_frame_bytes: 1 },
    };
    chat.applySnapshot(/** @type {any} */ ({ session, transcript: [], streaming_thinking: 'Let me we' }));
    const stream = (/** @type {any} */ event) => chat.apply(/** @type {any} */ ({ kind: 'stream', event }));
    stream({ type: 'content_block_delta', index: 0, delta: { type: 'thinking_delta', thinking: 'igh it.' } });
    stream({ type: 'content_block_stop', index: 0 });
    stream({ type: 'content_block_start', index: 1, content_block: { type: 'text', text: '' } });
    stream({ type: 'content_block_delta', index: 1, delta: { type: 'text_delta', text: 'Answer' } });
    const shown = chat.items.map((i) => [i.type, /** @type {any} */ (i).text]);
    assert.deepEqual(shown, [['thinking', 'Let me weigh it.'], ['text', 'Answer']]);
  });
});

describe('context usage and compact', () => {
  test('the session asks for context usage and compacts; the frames are checked before they are sent', async () => {
    const { GatewayClient } = await import('../../src/index.js');
    const { FakeGateway } = await import('../helpers/fake-gateway.js');
    const gw = new FakeGateway();
    const client = new GatewayClient({
      url: 'http://gateway.test', token: 'tok-0123456789abcdef', WebSocket: /** @type {any} */ (gw.WebSocket), fetch: gw.fetch, watchNetwork: false,
    });
    const s = client.session({});
    try {
      await s.connect();
      const usage = await s.getContextUsage();
      assert.equal(usage.percentage, 7);
      assert.deepEqual(usage.categories, [{ name: 'Messages', tokens: 2806 }]);
      const compacted = await s.compact('keep the decisions');
      assert.deepEqual(gw.received.filter((f) => f.type === 'compact').map((f) => [f.id, f.instructions]), [[compacted.query_id, 'keep the decisions']]);
      await s.compact();
      assert.equal(gw.received.filter((f) => f.type === 'compact')[1].instructions, undefined);
      assert.match(String(validateClientFrame({ type: 'compact', id: 'c', instructions: 'x'.repeat(2001) })), /length/);
      assert.match(String(validateClientFrame({ type: 'get_context_usage', id: 'u', verbose: true })), /not a field/);
    } finally {
      s.disconnect();
    }
  });
});

describe('background tasks', () => {
  const task = (/** @type {any} */ fields) => ({ kind: 'task', data: {}, ...fields });

  test('task events have a checked shape; stop_task names a task', () => {
    assert.equal(validateServerFrame(event(task({ subtype: 'task_started', task_id: 't1', status: 'running', task_type: 'local_bash' }))), null);
    assert.match(String(validateServerFrame(event(task({ subtype: 'task_started' })))), /task_id is required/);
    assert.ok(encodeClientFrame({ type: 'stop_task', id: 's', task_id: 't1' }));
    assert.match(String(validateClientFrame({ type: 'stop_task', id: 's' })), /task_id is required/);
  });

  test('the chat keeps the running tasks: from the session when attaching, then from task events', async () => {
    const { ChatState } = await import('../../src/index.js');
    const chat = new ChatState();
    const info = {
      session_id: 's', profile: 'default', model: null, permission_mode: 'default', state: 'idle', epoch: 'e', last_seq: 0,
      created_at: 1, last_activity: 1, turns: 0, total_cost_usd: 0, queued: 0, pending: [], allowed_models: null, allowed_modes: ['default'],
      limits: { log_max_events: 1, log_max_bytes: 1, log_max_age_s: 1, transcript_max_events: 1, max_queued_queries: 1, max_frame_bytes: 1 },
      tasks: [{ task_id: 'old', description: 'npm test', task_type: 'local_bash' }],
    };
    chat.setInfo(/** @type {any} */ (info));
    assert.deepEqual([...chat.tasks.keys()], ['old']);
    chat.apply(task({ subtype: 'task_started', task_id: 'a1', status: 'running', description: 'Greet', task_type: 'local_agent' }));
    chat.apply(task({ subtype: 'task_progress', task_id: 'a1', status: 'running', last_tool_name: 'Read' }));
    assert.equal(chat.tasks.get('a1')?.last_tool_name, 'Read');
    assert.equal(chat.tasks.get('a1')?.description, 'Greet');
    chat.apply(task({ subtype: 'task_updated', task_id: 'old', status: 'killed' }));  // the notification may never come
    chat.apply(task({ subtype: 'task_notification', task_id: 'a1', status: 'completed', summary: 'done' }));
    assert.deepEqual([...chat.tasks.keys()], []);
  });

  test('stopTask sends stop_task', async () => {
    const { GatewayClient } = await import('../../src/index.js');
    const { FakeGateway } = await import('../helpers/fake-gateway.js');
    const gw = new FakeGateway();
    const client = new GatewayClient({
      url: 'http://gateway.test', token: 'tok-0123456789abcdef', WebSocket: /** @type {any} */ (gw.WebSocket), fetch: gw.fetch, watchNetwork: false,
    });
    const s = client.session({});
    try {
      await s.connect();
      await s.stopTask('t1');
      assert.deepEqual(gw.received.filter((f) => f.type === 'stop_task').map((f) => f.task_id), ['t1']);
    } finally {
      s.disconnect();
    }
  });
});

describe('rewind', () => {
  test('rewind_files names a query; files_rewound is an event with a notice in the chat', async () => {
    const { ChatState } = await import('../../src/index.js');
    assert.ok(encodeClientFrame({ type: 'rewind_files', id: 'r', query_id: 'q1' }));
    assert.match(String(validateClientFrame({ type: 'rewind_files', id: 'r' })), /query_id is required/);
    assert.equal(validateServerFrame(event({ kind: 'files_rewound', query_id: 'q1', by: { principal: 'alice' } })), null);
    const chat = new ChatState();
    chat.apply({ kind: 'files_rewound', query_id: 'q1', by: { principal: 'alice' } });
    assert.deepEqual(chat.items.map((i) => [i.type, /** @type {any} */ (i).code]), [['notice', 'files_rewound']]);
    // The notice names the message the files went back to, when the chat has it.
    chat.apply({ kind: 'user_query', query_id: 'q2', prompt: 'Write  the\nnotes', by: { principal: 'bob' } });
    chat.apply({ kind: 'files_rewound', query_id: 'q2', by: { principal: 'bob' } });
    assert.deepEqual(chat.items.filter((i) => i.type === 'notice').map((i) => /** @type {any} */ (i).text), [
      'Files put back as they were before that message (by alice)',
      'Files put back as they were before “Write the notes” (by bob)',
    ]);
  });
});

describe('fork', () => {
  test('fork sends the frame and resolves with the new session id', async () => {
    const { GatewayClient } = await import('../../src/index.js');
    const { FakeGateway } = await import('../helpers/fake-gateway.js');
    const gw = new FakeGateway();
    const client = new GatewayClient({
      url: 'http://gateway.test', token: 'tok-0123456789abcdef', WebSocket: /** @type {any} */ (gw.WebSocket), fetch: gw.fetch, watchNetwork: false,
    });
    const s = client.session({});
    try {
      await s.connect();
      assert.equal(await s.fork(), 's_fork_now');
      assert.equal(await s.fork('q2'), 's_fork_q2');
      assert.deepEqual(gw.received.filter((f) => f.type === 'fork').map((f) => f.query_id), [undefined, 'q2']);
      assert.match(String(validateClientFrame({ type: 'fork', id: 'f', query_id: '' })), /length/);
    } finally {
      s.disconnect();
    }
  });
});

describe('operator-defined MCP servers and commands', () => {
  test('the session runs commands and reads and manages the MCP servers', async () => {
    const { GatewayClient } = await import('../../src/index.js');
    const { FakeGateway } = await import('../helpers/fake-gateway.js');
    const gw = new FakeGateway();
    const client = new GatewayClient({
      url: 'http://gateway.test', token: 'tok-0123456789abcdef', WebSocket: /** @type {any} */ (gw.WebSocket), fetch: gw.fetch, watchNetwork: false,
    });
    const s = client.session({});
    try {
      await s.connect();
      const ran = await s.runCommand('context');
      assert.equal(gw.received.find((f) => f.type === 'run_command')?.command, 'context');
      assert.equal(ran.query_id, gw.received.find((f) => f.type === 'run_command')?.id);
      assert.deepEqual((await s.getMcpStatus()).map((m) => [m.name, m.status]), [['github', 'connected']]);
      await s.toggleMcpServer('github', false);
      await s.reconnectMcpServer('github');
      assert.deepEqual(gw.received.filter((f) => f.type.endsWith('_mcp_server')).map((f) => [f.type, f.name, f.enabled]),
        [['toggle_mcp_server', 'github', false], ['reconnect_mcp_server', 'github', undefined]]);
      assert.match(String(validateClientFrame({ type: 'toggle_mcp_server', id: 't', name: 'github' })), /enabled is required/);
      assert.match(String(validateClientFrame({ type: 'run_command', id: 'r', command: '' })), /length/);
      assert.match(String(validateClientFrame({ type: 'run_command', id: 'r', command: 'context', args: 'x\n/clear' })), /one line/);
      assert.match(String(validateClientFrame({ type: 'compact', id: 'c', instructions: 'keep\r\n/clear' })), /one line/);
    } finally {
      s.disconnect();
    }
  });
});

describe('result in the chat', () => {
  test('a result item carries the structured output, per-model usage and how full the context is', async () => {
    const { ChatState } = await import('../../src/index.js');
    const chat = new ChatState();
    const request = (/** @type {number} */ tokens, /** @type {string | null} */ parent) => chat.apply(/** @type {any} */ ({
      kind: 'assistant_message', content: [], model: 'm', parent_tool_use_id: parent, usage: { input_tokens: 1000, cache_read_input_tokens: tokens },
    }));
    request(99000, null);
    request(149000, null);  // the turn's last request: its input is the context
    request(5000, 'toolu_sub');  // a subagent's request has a context of its own
    chat.apply(/** @type {any} */ ({
      ...result, structured_output: { answer: '42' }, usage: { input_tokens: 2000, cache_read_input_tokens: 248000 },
      model_usage: { m: { inputTokens: 1000, outputTokens: 5, costUSD: 0.1, contextWindow: 200000 } },
    }));
    const item = /** @type {any} */ (chat.lastResult);
    assert.deepEqual([item.structuredOutput, item.contextPercent, item.modelUsage.m.contextWindow], [{ answer: '42' }, 75, 200000]);
    chat.apply(/** @type {any} */ ({ ...result, query_id: 'q2' }));  // no model_usage: not known
    assert.equal(/** @type {any} */ (chat.lastResult).contextPercent, null);
  });
});
