// Encoding client frames and decoding server frames, validated against the wire contract.
//
// Server frames are checked for the fields and types the contract requires; unknown extra
// fields are kept (a newer gateway may add some). Client frames are checked strictly, like the
// gateway does (unknown fields are an error), so mistakes surface before a round trip.

/** @import {ClientFrame, ServerFrame, SessionEvent, EventKind} from './protocol.js' */

import { ProtocolError } from './errors.js';

// ---- a tiny schema language ------------------------------------------------------------------
/** @typedef {(value: unknown, path: string) => string | null} Check */

/** @type {Check} */
const str = (v, p) => (typeof v === 'string' ? null : `${p} must be a string`);
/** @type {Check} */
const num = (v, p) => (typeof v === 'number' && Number.isFinite(v) ? null : `${p} must be a number`);
/** @type {Check} */
const int = (v, p) => (Number.isInteger(v) ? null : `${p} must be an integer`);
/** @type {Check} */
const bool = (v, p) => (typeof v === 'boolean' ? null : `${p} must be a boolean`);
/** @type {Check} */
const obj = (v, p) => (isObject(v) ? null : `${p} must be an object`);
/** @type {Check} */
const any = () => null;

/** @param {unknown} v @returns {v is Record<string, unknown>} */
function isObject(v) {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}
/** @param {...Check} checks @returns {Check} */
const all = (...checks) => (v, p) => {
  for (const c of checks) {
    const e = c(v, p);
    if (e) return e;
  }
  return null;
};
/** @param {...Check} checks @returns {Check} */
const oneOf = (...checks) => (v, p) => {
  const errors = [];
  for (const c of checks) {
    const e = c(v, p);
    if (!e) return null;
    errors.push(e);
  }
  return errors.join(' or ');
};
/** @param {Check} check @returns {Check} */
const nullable = (check) => (v, p) => (v === null ? null : check(v, p));
/** @param {Check} check @returns {Check} */
const arr = (check) => (v, p) => {
  if (!Array.isArray(v)) return `${p} must be an array`;
  for (let i = 0; i < v.length; i++) {
    const e = check(v[i], `${p}[${i}]`);
    if (e) return e;
  }
  return null;
};
/** @param {...unknown} values @returns {Check} */
const literal = (...values) => (v, p) => (values.includes(v) ? null : `${p} must be one of ${values.map((x) => JSON.stringify(x)).join(', ')}`);
/** @param {number} min @param {number} max @returns {Check} */
const len = (min, max) => (v, p) => {
  const n = /** @type {{length: number}} */ (v).length;
  return n < min || n > max ? `${p} must have length ${min}..${max}` : null;
};
/** @param {number} min @param {boolean} [exclusive] @returns {Check} */
const atLeast = (min, exclusive = false) => (v, p) => {
  const n = /** @type {number} */ (v);
  return exclusive ? (n > min ? null : `${p} must be > ${min}`) : n >= min ? null : `${p} must be >= ${min}`;
};
/** @param {Check} check @returns {Check} */
const mapOf = (check) => (v, p) => {
  if (!isObject(v)) return `${p} must be an object`;
  for (const [k, x] of Object.entries(v)) {
    const e = check(x, `${p}.${k}`);
    if (e) return e;
  }
  return null;
};

/**
 * @typedef {{ required?: Record<string, Check>, optional?: Record<string, Check>, strict?: boolean }} Shape
 */
/** @param {Shape} shape @returns {Check} */
const shape = ({ required = {}, optional = {}, strict = false }) => (v, p) => {
  if (!isObject(v)) return `${p} must be an object`;
  for (const [k, check] of Object.entries(required)) {
    if (!(k in v)) return `${p}.${k} is required`;
    const e = check(v[k], `${p}.${k}`);
    if (e) return e;
  }
  for (const [k, check] of Object.entries(optional)) {
    if (k in v && v[k] !== undefined) {
      const e = check(v[k], `${p}.${k}`);
      if (e) return e;
    }
  }
  if (strict) {
    for (const k of Object.keys(v)) {
      if (!(k in required) && !(k in optional) && v[k] !== undefined) return `${p}.${k} is not a field of this frame`;
    }
  }
  return null;
};

// ---- events ----------------------------------------------------------------------------------

const SESSION_STATES = ['starting', 'idle', 'running', 'awaiting_approval', 'interrupted', 'closed', 'failed', 'hibernated'];
const PERMISSION_MODES = ['default', 'acceptEdits', 'plan', 'bypassPermissions', 'dontAsk', 'auto'];
const actor = shape({ required: { principal: str }, optional: { connection: nullable(str) } });
const content = oneOf(str, arr(obj));
const answers = mapOf(oneOf(str, arr(str)));
const RATE_LIMIT_STATUSES = ['allowed', 'allowed_warning', 'rejected'];
const rateLimitInfo = shape({
  required: { status: literal(...RATE_LIMIT_STATUSES) },
  optional: { resetsAt: nullable(num), rateLimitType: nullable(str), utilization: nullable(num), overageStatus: nullable(literal(...RATE_LIMIT_STATUSES)) },
});

/** @type {Record<EventKind, Check>} */
const EVENT_SHAPES = {
  state: shape({ required: { state: literal(...SESSION_STATES) }, optional: { reason: nullable(str) } }),
  user_query: shape({ required: { query_id: str, prompt: content, by: actor }, optional: { queued: bool, command: bool } }),
  turn_started: shape({ required: { query_id: str } }),
  stream: shape({ required: { event: shape({ required: { type: str } }) }, optional: { parent_tool_use_id: nullable(str) } }),
  assistant_message: shape({
    required: { content: arr(obj), model: str },
    optional: {
      message_id: nullable(str), parent_tool_use_id: nullable(str), usage: nullable(obj), error: nullable(str), stop_reason: nullable(str),
    },
  }),
  user_message: shape({
    required: { content },
    optional: { parent_tool_use_id: nullable(str), tool_use_result: any, uuid: nullable(str), origin: nullable(obj) },
  }),
  system: shape({ required: { subtype: str, data: obj } }),
  task: shape({
    required: { subtype: str, task_id: str, data: obj },
    optional: {
      status: nullable(str), description: nullable(str), task_type: nullable(str), tool_use_id: nullable(str),
      last_tool_name: nullable(str), summary: nullable(str), usage: nullable(obj),
    },
  }),
  result: shape({
    required: { query_id: nullable(str), subtype: str, is_error: bool, duration_ms: num, duration_api_ms: num, num_turns: int },
    optional: {
      cost_usd: nullable(num), total_cost_usd: nullable(num), usage: nullable(obj), result: nullable(str), stop_reason: nullable(str),
      terminal_reason: nullable(str), permission_denials: nullable(arr(any)), errors: nullable(arr(str)),
      structured_output: any, model_usage: nullable(mapOf(shape({ required: { inputTokens: num, outputTokens: num, costUSD: num } }))),
      api_error_status: nullable(int), deferred_tool_use: nullable(shape({ required: { id: str, name: str, input: obj } })),
      origin: nullable(obj),
    },
  }),
  permission_request: shape({
    required: { request_id: str, tool_name: str, input: obj, expires_at: num },
    optional: {
      tool_use_id: nullable(str), suggestions: arr(obj), title: nullable(str), display_name: nullable(str),
      description: nullable(str), decision_reason: nullable(str), agent_id: nullable(str),
    },
  }),
  question: shape({
    required: { request_id: str, questions: arr(shape({ required: { question: str }, optional: { options: arr(shape({ required: { label: str } })) } })), expires_at: num },
    optional: { tool_use_id: nullable(str) },
  }),
  request_resolved: shape({
    required: { request_id: str, outcome: literal('allowed', 'denied', 'answered', 'expired', 'cancelled') },
    optional: { by: nullable(actor), updated_input: nullable(obj), message: nullable(str), answers: nullable(answers) },
  }),
  model_changed: shape({ required: { model: str, by: actor } }),
  permission_mode_changed: shape({ required: { mode: str, by: actor } }),
  conversation_reset: shape({ required: { mode: literal('soft', 'hard'), by: actor } }),
  files_rewound: shape({ required: { query_id: str, by: actor } }),
  agent_recovered: shape({ required: { reason: literal('owner_lost', 'handover'), ownerless_ms: all(int, atLeast(0)) } }),
  error: shape({ required: { code: str, message: str }, optional: { recoverable: bool } }),
  rate_limit: shape({ required: { info: rateLimitInfo } }),
};

/** Event kinds this client knows (a newer gateway may send others; they are passed through). */
export const EVENT_KINDS = /** @type {EventKind[]} */ (Object.keys(EVENT_SHAPES));

/** @param {unknown} kind @returns {kind is EventKind} */
export function isKnownEventKind(kind) {
  return typeof kind === 'string' && Object.prototype.hasOwnProperty.call(EVENT_SHAPES, kind);
}

/** @type {Check} */
const eventBody = (v, p) => {
  if (!isObject(v)) return `${p} must be an object`;
  if (typeof v.kind !== 'string') return `${p}.kind must be a string`;
  const check = isKnownEventKind(v.kind) ? EVENT_SHAPES[v.kind] : null;
  return check ? check(v, p) : null;
};

// ---- server frames ---------------------------------------------------------------------------

const sessionInfo = shape({
  required: {
    session_id: str, profile: str, model: nullable(str), permission_mode: str, state: literal(...SESSION_STATES),
    epoch: str, last_seq: all(int, atLeast(0)), created_at: num, last_activity: num, turns: int, total_cost_usd: num,
    queued: int, pending: arr(eventBody), allowed_models: nullable(arr(str)), allowed_modes: arr(str),
    limits: shape({
      required: {
        log_max_events: int, log_max_bytes: int, log_max_age_s: num, transcript_max_events: int,
        max_queued_queries: int, max_frame_bytes: int,
      },
    }),
  },
  optional: { rate_limit: nullable(rateLimitInfo), tasks: arr(shape({ required: { task_id: str } })) },
});

/** @type {Record<ServerFrame['type'], Check>} */
const SERVER_SHAPES = {
  event: shape({ required: { seq: all(int, atLeast(1)), epoch: str, ts: num, event: eventBody } }),
  ack: shape({ required: { id: str }, optional: { result: nullable(obj), duplicate: bool } }),
  error: shape({ required: { code: str, message: str }, optional: { id: nullable(str) } }),
  pong: shape({ required: { id: str, ts: num } }),
  attached: shape({ required: { id: str, connection: str, after: all(int, atLeast(0)), session: sessionInfo, protocol: int } }),
  reset: shape({
    required: {
      reason: str,
      snapshot: shape({
        required: { session: sessionInfo, transcript: arr(eventBody) }, optional: { streaming_text: nullable(str), streaming_thinking: nullable(str) },
      }),
    },
    optional: { id: nullable(str), connection: nullable(str) },
  }),
};

export const SERVER_FRAME_TYPES = /** @type {ServerFrame['type'][]} */ (Object.keys(SERVER_SHAPES));

/**
 * Why `value` is not a valid server frame, or null when it is.
 * @param {unknown} value
 * @returns {string | null}
 */
export function validateServerFrame(value) {
  return validateFrame(SERVER_SHAPES, value, 'server');
}

/**
 * Why `value` is not a frame of one of `shapes` (picked by its `type`), or null when it is.
 * @param {Record<string, (value: unknown, path: string) => string | null>} shapes
 * @param {unknown} value
 * @param {'server' | 'client'} side
 * @returns {string | null}
 */
function validateFrame(shapes, value, side) {
  if (!isObject(value)) return 'a frame must be a JSON object';
  const type = value.type;
  if (typeof type !== 'string') return 'frame has no `type`';
  if (!Object.prototype.hasOwnProperty.call(shapes, type)) return `unknown ${side} frame type ${JSON.stringify(type)}`;
  return shapes[type](value, type);
}

/**
 * Why `value` is not a valid event body, or null when it is (unknown kinds are valid).
 * @param {unknown} value
 * @returns {string | null}
 */
export function validateEvent(value) {
  return eventBody(value, 'event');
}

/**
 * Decode one server frame from its JSON text; throws ProtocolError when it breaks the contract.
 * @param {string} text
 * @returns {ServerFrame}
 */
export function decodeServerFrame(text) {
  return /** @type {ServerFrame} */ (decodeFrame(text, validateServerFrame, 'server'));
}

/**
 * Parse and validate one frame's JSON text; throws ProtocolError when it breaks the contract.
 * @param {string} text
 * @param {(value: unknown) => string | null} validate
 * @param {'server' | 'client'} side
 * @returns {unknown}
 */
function decodeFrame(text, validate, side) {
  let value;
  try {
    value = JSON.parse(text);
  } catch (err) {
    throw new ProtocolError(`${side} frame is not valid JSON: ${/** @type {Error} */ (err).message}`, text);
  }
  const problem = validate(value);
  if (problem) throw new ProtocolError(`invalid ${side} frame: ${problem}`, text);
  return value;
}

/**
 * Decode a transport message: one or more frames separated by "\n". Invalid lines don't stop the
 * others; they are returned in `errors`.
 * @param {string} message
 * @returns {{ frames: ServerFrame[], errors: ProtocolError[] }}
 */
export function decodeServerMessage(message) {
  /** @type {ServerFrame[]} */
  const frames = [];
  /** @type {ProtocolError[]} */
  const errors = [];
  for (const line of message.split('\n')) {
    if (!line.trim()) continue;
    try {
      frames.push(decodeServerFrame(line));
    } catch (err) {
      errors.push(/** @type {ProtocolError} */ (err));
    }
  }
  return { frames, errors };
}

// ---- client frames ---------------------------------------------------------------------------

const frameId = all(str, len(1, 128));
const name = all(str, len(1, 200));
const mode = literal(...PERMISSION_MODES);
const prompt = oneOf(all(str, len(1, Infinity)), all(arr(obj), len(1, 100)));
/** @type {Check} text after a command, on its line: one line, so it can't carry a second command */
const oneLine = all(str, len(0, 2000), (v, p) => (/[\r\n]/.test(String(v)) ? `${p} must be one line` : null));
const thinkingDisplay = literal('summarized', 'omitted');
const thinking = oneOf(
  shape({ strict: true, required: { type: literal('adaptive') }, optional: { display: thinkingDisplay } }),
  shape({ strict: true, required: { type: literal('enabled'), budget_tokens: all(int, atLeast(1024)) }, optional: { display: thinkingDisplay } }),
  shape({ strict: true, required: { type: literal('disabled') } }),
);

/** @type {Record<ClientFrame['type'], Check>} */
const CLIENT_SHAPES = {
  open: shape({
    strict: true,
    required: { type: str, id: frameId },
    optional: {
      profile: name, model: nullable(name), permission_mode: nullable(mode), allowed_tools: nullable(arr(name)),
      disallowed_tools: nullable(arr(name)), max_turns: nullable(all(int, atLeast(1))), max_budget_usd: nullable(all(num, atLeast(0, true))),
      output_format: nullable(shape({ strict: true, required: { schema: obj }, optional: { type: literal('json_schema') } })),
      thinking: nullable(thinking), effort: nullable(literal('low', 'medium', 'high', 'xhigh', 'max')),
    },
  }),
  attach: shape({
    strict: true,
    required: { type: str, id: frameId, session_id: name },
    optional: { after: all(int, atLeast(0)), epoch: nullable(name) },
  }),
  query: shape({ strict: true, required: { type: str, id: frameId, prompt } }),
  interrupt: shape({ strict: true, required: { type: str, id: frameId } }),
  permission_response: shape({
    strict: true,
    required: { type: str, id: frameId, request_id: name, decision: literal('allow', 'deny') },
    optional: {
      updated_input: nullable(obj), message: nullable(all(str, len(0, 10000))), interrupt: bool,
      apply_suggestions: arr(all(int, atLeast(0))),
    },
  }),
  question_response: shape({ strict: true, required: { type: str, id: frameId, request_id: name, answers } }),
  set_model: shape({ strict: true, required: { type: str, id: frameId, model: name } }),
  set_permission_mode: shape({ strict: true, required: { type: str, id: frameId, mode } }),
  reset_conversation: shape({ strict: true, required: { type: str, id: frameId }, optional: { mode: literal('soft', 'hard') } }),
  get_context_usage: shape({ strict: true, required: { type: str, id: frameId } }),
  compact: shape({ strict: true, required: { type: str, id: frameId }, optional: { instructions: nullable(oneLine) } }),
  stop_task: shape({ strict: true, required: { type: str, id: frameId, task_id: name } }),
  rewind_files: shape({ strict: true, required: { type: str, id: frameId, query_id: name } }),
  fork: shape({ strict: true, required: { type: str, id: frameId }, optional: { query_id: nullable(name) } }),
  run_command: shape({ strict: true, required: { type: str, id: frameId, command: all(str, len(1, 64)) }, optional: { args: nullable(oneLine) } }),
  get_mcp_status: shape({ strict: true, required: { type: str, id: frameId } }),
  reconnect_mcp_server: shape({ strict: true, required: { type: str, id: frameId, name } }),
  toggle_mcp_server: shape({ strict: true, required: { type: str, id: frameId, name, enabled: bool } }),
  close: shape({ strict: true, required: { type: str, id: frameId } }),
  ping: shape({ strict: true, required: { type: str, id: frameId } }),
};

export const CLIENT_FRAME_TYPES = /** @type {ClientFrame['type'][]} */ (Object.keys(CLIENT_SHAPES));

/**
 * Why `value` is not a valid client frame, or null when it is.
 * @param {unknown} value
 * @returns {string | null}
 */
export function validateClientFrame(value) {
  return validateFrame(CLIENT_SHAPES, value, 'client');
}

/**
 * Validate and encode a client frame; throws ProtocolError when it breaks the contract.
 * @param {ClientFrame} frame
 * @returns {string}
 */
export function encodeClientFrame(frame) {
  const problem = validateClientFrame(frame);
  if (problem) throw new ProtocolError(`invalid client frame: ${problem}`, frame);
  return JSON.stringify(frame);
}

/**
 * Decode a client frame (what the gateway receives); throws ProtocolError on a bad one.
 * @param {string} text
 * @returns {ClientFrame}
 */
export function decodeClientFrame(text) {
  return /** @type {ClientFrame} */ (decodeFrame(text, validateClientFrame, 'client'));
}

/**
 * Narrow an event frame's body to one kind.
 * @template {EventKind} K
 * @param {SessionEvent} event
 * @param {K} kind
 * @returns {event is import('./protocol.js').EventOfKind<K>}
 */
export function isEventKind(event, kind) {
  return event.kind === kind;
}
