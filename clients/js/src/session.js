// A session connection: attach (or open), keep the event cursor, reconnect, fall back to SSE.
//
// Every event is delivered once and in order: events carry `seq` (1, 2, 3, ... per epoch), the
// session keeps the last one applied and drops anything at or below it, so replays after a
// reconnect and the overlap while switching transports never show twice. Frames the app sends are
// kept until acknowledged and re-sent with the same id after a reconnect; the gateway executes an
// id at most once, so nothing runs twice either.

/**
 * @import {ClientFrame, ServerFrame, EventFrame, AttachedFrame, ResetFrame, SessionInfo, SessionEvent, EventKind,
 *   EventOfKind, OpenFrame, SessionFrameInput, JsonObject, PermissionMode, ErrorFrame, AckFrame} from './protocol.js'
 * @import {BackoffOptions} from './backoff.js'
 * @import {TransportClose} from './transport-ws.js'
 * @import {GatewayClient} from './client.js'
 */

import { backoffDelay, DEFAULT_BACKOFF } from './backoff.js';
import { ChatState, GATEWAY_RESULTS } from './chat.js';
import { decodeServerFrame, encodeClientFrame } from './codec.js';
import { Emitter, reportListenerError } from './emitter.js';
import { ClosedError, CloseCodes, ErrorCodes, GatewayError, ProtocolError } from './errors.js';
import { SseTransport } from './transport-sse.js';
import { WebSocketTransport } from './transport-ws.js';

/**
 * Where the connection is:
 * - `idle`: not connected yet (call `connect()`)
 * - `connecting`: the first connection is being made
 * - `open`: attached over WebSocket
 * - `reconnecting`: the connection was lost; retrying with backoff (or waiting to be online)
 * - `fallback`: attached over HTTP (SSE for events, POST for frames) because WebSocket failed
 * - `closed`: for good: `disconnect()`/`close()` was called, the session ended, or access was refused
 * @typedef {'idle' | 'connecting' | 'open' | 'reconnecting' | 'fallback' | 'closed'} ConnectionState
 */

/**
 * @typedef {object} HeartbeatOptions
 * @property {number} [intervalMs] send a `ping` after this long without any frame; default 15000
 * @property {number} [timeoutMs] drop the connection when nothing arrives this long after a ping; default 10000
 * @property {number} [streamIdleMs] on the SSE fallback: drop the stream after this long without data or keep-alive; default 45000
 */
/**
 * @typedef {object} FallbackOptions
 * @property {boolean} [enabled] fall back to SSE + POST when WebSocket fails; default true
 * @property {number} [afterFailures] WebSocket attempts that must fail before falling back; default 2
 * @property {number} [retryWebSocketMs] while on the fallback, try WebSocket again this often; default 30000
 */
/**
 * @typedef {object} ConnectionOptions
 * @property {'auto' | 'websocket' | 'sse'} [transport] `auto`: WebSocket, SSE when it fails; default `auto`
 * @property {BackoffOptions & { enabled?: boolean, stableMs?: number }} [reconnect] reconnect backoff; `enabled: false` closes
 *   on the first loss; the backoff starts again after a link that stayed attached `stableMs` (5000)
 * @property {HeartbeatOptions | false} [heartbeat] dead-socket detection; false to turn it off
 * @property {FallbackOptions} [fallback]
 * @property {number} [connectTimeoutMs] a connection that isn't attached in this time is dropped and retried; default 15000
 * @property {boolean} [watchNetwork] react to the browser's online/offline events; default true
 * @property {number} [maxFrameBytes] refuse (with `frame_too_large`) frames larger than this, as the
 *   gateway would, instead of sending them; default 1048576 (the gateway's `max_frame_bytes`)
 */
/**
 * Options of `open`: the profile and how to narrow it (fields of the `open` frame).
 * @typedef {Omit<OpenFrame, 'type' | 'id'>} OpenOptions
 */
/**
 * @typedef {ConnectionOptions & {
 *   sessionId?: string | null,
 *   open?: OpenOptions,
 *   after?: number,
 *   epoch?: string | null,
 *   chat?: boolean,
 * }} SessionOptions
 * `sessionId` attaches to an existing session (resuming after `after` in `epoch` when given);
 * without it a new session is opened with `open`. `chat: false` skips keeping `session.chat`.
 */

/**
 * @typedef {object} ConnectionStateChange
 * @property {ConnectionState} state
 * @property {ConnectionState} previous
 * @property {'websocket' | 'sse' | null} transport
 * @property {string | null} reason why it changed, when it's a loss or a close
 * @property {number | null} retryInMs when reconnecting: the delay before the next try
 */
/**
 * @typedef {object} CloseInfo
 * @property {string} code `disconnected` (the app left), `closed_by_client`, `session_closed`, `unauthorized`, `session_not_found`, or another gateway error code
 * @property {string} message
 */
/**
 * @typedef {object} SessionEvents
 * @property {[EventFrame]} event every event, once, in order
 * @property {[ConnectionStateChange]} connectionstate
 * @property {[AttachedFrame]} attached attached (again): replayed events follow
 * @property {[ResetFrame]} reset the cursor could not be served: state was rebuilt from a snapshot
 * @property {[ChatState]} chat the chat state changed
 * @property {[GatewayError]} error an error frame that answers no pending frame
 * @property {[ProtocolError]} protocolerror a frame that breaks the contract (ignored)
 * @property {[CloseInfo]} closed closed for good
 */
/**
 * @typedef {object} Cursor
 * @property {string | null} epoch
 * @property {number} seq the last event sequence number applied
 */
/**
 * @typedef {object} SessionStats
 * @property {number} attaches successful attaches (the first and every reconnect)
 * @property {number} resets resets with a snapshot
 * @property {number} duplicates events dropped because they were already applied
 * @property {number} gaps times events were missing and the session re-attached
 * @property {number} fallbacks times the session attached over SSE
 * @property {number} heartbeatTimeouts connections dropped because they went silent
 * @property {number} resent frames sent again after a reconnect
 */

/**
 * @typedef {object} Link One connection attempt over one transport.
 * @property {'websocket' | 'sse'} kind
 * @property {WebSocketTransport | SseTransport | null} transport
 * @property {boolean} attached
 * @property {number} attachedAt when it attached (ms); a link that stays up resets the backoff
 * @property {boolean} probe a WebSocket tried while on the fallback
 * @property {boolean} dead
 * @property {boolean} immediate reconnect without waiting when it drops
 * @property {number} lastReceived
 * @property {string | null} pingId
 * @property {number} pingSentAt
 * @property {ReturnType<typeof setTimeout> | null} connectTimer
 */
/**
 * @typedef {object} Pending A frame waiting for its ack.
 * @property {ClientFrame} frame
 * @property {string} text
 * @property {(result: JsonObject | null) => void} resolve
 * @property {(err: Error) => void} reject
 * @property {Link | null} sentOn
 * @property {boolean} inFlight an HTTP POST carrying it hasn't returned yet
 * @property {ReturnType<typeof setTimeout> | null} timer
 */

const DEFAULT_HEARTBEAT = { intervalMs: 15000, timeoutMs: 10000, streamIdleMs: 45000 };
const DEFAULT_FALLBACK = { enabled: true, afterFailures: 2, retryWebSocketMs: 30000 };
/** Close codes that mean "resume now": slow consumer, no answer to ping (the gateway's or ours), restart. @type {Set<number>} */
const RESUME_AT_ONCE = new Set([CloseCodes.SLOW_CONSUMER, CloseCodes.HEARTBEAT_TIMEOUT, CloseCodes.SERVICE_RESTART]);
/** @type {Set<string>} */
const FATAL_ATTACH = new Set([
  ErrorCodes.UNAUTHORIZED, ErrorCodes.SESSION_NOT_FOUND, ErrorCodes.SESSION_CLOSED, ErrorCodes.PROFILE_NOT_FOUND,
  ErrorCodes.FORBIDDEN_OPTION, ErrorCodes.MODEL_NOT_ALLOWED, ErrorCodes.MODE_NOT_ALLOWED, ErrorCodes.TOO_MANY_SESSIONS,
  ErrorCodes.BAD_FRAME, ErrorCodes.UNKNOWN_TYPE, ErrorCodes.NOT_FOUND,
]);

let instances = 0;

/**
 * The number of an event frame whose body didn't validate, read from its envelope alone.
 * @param {string} line @returns {{ epoch: string, seq: number } | null}
 */
function eventNumber(line) {
  try {
    const value = JSON.parse(line);
    if (value?.type === 'event' && typeof value.epoch === 'string' && Number.isInteger(value.seq)) return { epoch: value.epoch, seq: value.seq };
  } catch {
    // not JSON at all: nothing to number
  }
  return null;
}

/** @param {string} [prefix] */
function randomId(prefix = '') {
  const c = /** @type {{ crypto?: { randomUUID?: () => string } }} */ (globalThis).crypto;
  const raw = c && typeof c.randomUUID === 'function' ? c.randomUUID().replace(/-/g, '').slice(0, 12) : Math.random().toString(36).slice(2, 14);
  return prefix + raw;
}

/**
 * @extends {Emitter<SessionEvents>}
 */
export class GatewaySession extends Emitter {
  /**
   * Use `client.open()`, `client.attach()` or `client.session()` rather than this constructor.
   * @param {GatewayClient} client
   * @param {SessionOptions} [options]
   */
  constructor(client, options = {}) {
    super();
    this.client = client;
    const base = client.options;
    /** @type {Required<Omit<ConnectionOptions, 'heartbeat' | 'reconnect' | 'fallback'>> & { heartbeat: Required<HeartbeatOptions> | false, reconnect: Required<BackoffOptions> & { enabled: boolean, stableMs: number }, fallback: Required<FallbackOptions> }} */
    this.options = {
      transport: options.transport ?? base.transport ?? 'auto',
      connectTimeoutMs: options.connectTimeoutMs ?? base.connectTimeoutMs ?? 15000,
      watchNetwork: options.watchNetwork ?? base.watchNetwork ?? true,
      maxFrameBytes: options.maxFrameBytes ?? base.maxFrameBytes ?? 1048576,
      reconnect: { ...DEFAULT_BACKOFF, enabled: true, stableMs: 5000, ...base.reconnect, ...options.reconnect },
      heartbeat: (options.heartbeat ?? base.heartbeat) === false ? false : { ...DEFAULT_HEARTBEAT, ...base.heartbeat, ...options.heartbeat },
      fallback: { ...DEFAULT_FALLBACK, ...base.fallback, ...options.fallback },
    };
    /** The session id (null until `open` is answered). @type {string | null} */
    this.id = options.sessionId ?? null;
    /** What `open` asks for when there is no session yet. */
    this.openOptions = options.open ?? {};
    /** The session as of the last attach, kept current from events. @type {SessionInfo | null} */
    this.info = null;
    /** The gateway's id for the current connection. @type {string | null} */
    this.connectionId = null;
    /** @private @type {Cursor} */
    this._cursor = { epoch: options.epoch ?? null, seq: options.after ?? 0 };
    /** The chat folded from events (null with `chat: false`). @type {ChatState | null} */
    this.chat = options.chat === false ? null : new ChatState();
    /** @private @type {ConnectionState} */
    this._state = 'idle';
    /** @type {CloseInfo | null} */
    this.closeInfo = null;
    /** @type {SessionStats} */
    this.stats = { attaches: 0, resets: 0, duplicates: 0, gaps: 0, fallbacks: 0, heartbeatTimeouts: 0, resent: 0 };

    /** @private */ this._idBase = `${randomId()}${(++instances).toString(36)}`;
    /** @private */ this._idCount = 0;
    /** @private */ this._openId = this._newId('open');
    /** @private @type {Link | null} */ this._link = null;
    /** @private @type {Link | null} */ this._probe = null;
    /** @private @type {Map<string, Pending>} */ this._pending = new Map();
    /** @private @type {Emitter<Record<string, [any, EventFrame]>>} */ this._kinds = new Emitter();
    /** @private @type {Set<{ push: (f: EventFrame) => void, end: () => void }>} */ this._iterators = new Set();
    /** @private */ this._attempt = 0;
    /** @private @type {{ until: number, requests: import('./protocol.js').PendingRequest[] } | null} */ this._pendingAtAttach = null;
    /** @private */ this._wsFailures = 0;
    /** @private */ this._everAttached = false;
    /** @private */ this._offline = false;
    /** @private */ this._sessionEnded = false;
    /** @private */ this._closing = false;
    /** @private @type {ReturnType<typeof setTimeout> | null} */ this._retryTimer = null;
    /** @private @type {ReturnType<typeof setTimeout> | null} */ this._probeTimer = null;
    /** @private @type {ReturnType<typeof setInterval> | null} */ this._heartbeatTimer = null;
    /** @private @type {(() => void) | null} */ this._unwatchNetwork = null;
    /** @private @type {{ promise: Promise<GatewaySession>, resolve: (s: GatewaySession) => void, reject: (e: Error) => void } | null} */
    this._ready = null;
    /** @private @type {'websocket' | 'sse' | null} */ this._transportKind = null;
  }

  // ---- public state ----------------------------------------------------------------------

  /** @returns {ConnectionState} */
  get connectionState() {
    return this._state;
  }

  /** The transport in use: 'websocket', 'sse' (fallback) or null. */
  get transport() {
    return this._link?.attached ? this._link.kind : null;
  }

  /** The last event applied: resume from here (`client.attach(id, cursor)`). @returns {Cursor} */
  get cursor() {
    return { ...this._cursor };
  }

  /** Frames sent and not yet acknowledged. */
  get pendingFrames() {
    return this._pending.size;
  }

  // ---- connecting ------------------------------------------------------------------------

  /**
   * Connect (open or attach); resolves once attached. Rejects when the session can't be had
   * (unauthorized, not found, profile refused, ...); transient failures are retried.
   * @returns {Promise<GatewaySession>}
   */
  connect() {
    if (this._ready) return this._ready.promise;
    if (this._state === 'open' || this._state === 'fallback') return Promise.resolve(this);
    if (this._state === 'closed') {
      if (this.closeInfo && this.closeInfo.code !== 'disconnected') {
        return Promise.reject(new ClosedError(this.closeInfo.message, { code: this.closeInfo.code }));
      }
      this.closeInfo = null;
    }
    /** @type {(s: GatewaySession) => void} */ let resolve = () => {};
    /** @type {(e: Error) => void} */ let reject = () => {};
    const promise = new Promise((res, rej) => {
      resolve = res;
      reject = rej;
    });
    promise.catch(() => {}); // the caller may not await it; `closed` reports the failure too
    this._ready = { promise: /** @type {Promise<GatewaySession>} */ (promise), resolve, reject };
    if (this._state === 'idle' || this._state === 'closed') {
      this._watchNetwork();
      this._setState(this._everAttached ? 'reconnecting' : 'connecting');
      this._startAttempt();
    }
    return this._ready.promise;
  }

  /** Drop the connection now and reconnect (resuming from the cursor). */
  reconnect() {
    if (this._state === 'closed' || this._state === 'idle') return;
    this._attempt = 0;
    if (this._link) this._dropLink(this._link, 'reconnect requested', { immediate: true });
    else this._startAttempt();
  }

  /**
   * Leave the session without closing it (it keeps running; attach again later). Pending
   * frames are rejected.
   */
  disconnect() {
    this._finish({ code: 'disconnected', message: 'disconnected by the client' });
  }

  /**
   * Close the session on the gateway (its agent stops), then disconnect.
   * @returns {Promise<void>}
   */
  async close() {
    if (this._state === 'closed') return;
    this._closing = true;
    try {
      if (this.id || this._link?.attached) await this.send({ type: 'close' }, { timeoutMs: 10000 });
    } catch (err) {
      if (!(err instanceof ClosedError)) throw err;
    } finally {
      this._finish({ code: 'closed_by_client', message: 'the session was closed by this client' });
    }
  }

  // ---- sending ---------------------------------------------------------------------------

  /**
   * Send a session frame; resolves with the ack's `result` (null when it has none), rejects with
   * a GatewayError. While disconnected the frame waits, and it is re-sent (same id) after a
   * reconnect until acknowledged.
   * @param {SessionFrameInput} input
   * @param {{ timeoutMs?: number }} [options]
   * @returns {Promise<JsonObject | null>}
   */
  send(input, options = {}) {
    const frame = /** @type {ClientFrame} */ ({ ...input, id: input.id ?? this._newId(input.type) });
    let text;
    try {
      text = encodeClientFrame(frame);
    } catch (err) {
      return Promise.reject(err);
    }
    if (this._state === 'closed') return Promise.reject(new ClosedError('the session connection is closed', { code: this.closeInfo?.code }));
    const max = this.options.maxFrameBytes;
    if (text.length > max / 3 && new TextEncoder().encode(text).length > max) {
      // Sent, it would be refused (or close the socket), and re-sending after a reconnect would repeat that.
      return Promise.reject(new GatewayError(ErrorCodes.FRAME_TOO_LARGE, `frames are limited to ${max} bytes`, { frameId: frame.id }));
    }
    if (this._pending.has(frame.id)) return Promise.reject(new Error(`frame id ${frame.id} is already pending`));
    return new Promise((resolve, reject) => {
      /** @type {Pending} */
      const entry = { frame, text, resolve, reject, sentOn: null, inFlight: false, timer: null };
      if (options.timeoutMs) {
        entry.timer = setTimeout(() => {
          this._pending.delete(frame.id);
          reject(new GatewayError('timeout', `no answer to ${frame.type} ${frame.id} within ${options.timeoutMs} ms`, { frameId: frame.id }));
        }, options.timeoutMs);
      }
      this._pending.set(frame.id, entry);
      if (this._link?.attached) this._transmit(this._link, entry);
      else if (this._state === 'idle') this.connect();
    });
  }

  /**
   * Send a prompt. Resolves with `{ query_id, queued, position }`: `position` is 0 when the query
   * starts at once, else its place in the queue (1 runs next).
   * @param {string | import('./protocol.js').ContentBlock[]} prompt
   * @param {{ id?: string }} [options]
   */
  async query(prompt, options = {}) {
    const result = await this.send({ type: 'query', prompt, id: options.id });
    return /** @type {{ query_id: string, queued: boolean, position: number }} */ (/** @type {unknown} */ (result));
  }

  /**
   * Send a prompt and wait for its turn to end; resolves with the `result` event (every query gets
   * exactly one). The wait starts before the prompt is sent, so a result that arrives before the
   * ack (after a reconnect, say) is not missed; one that a reset skipped is taken from the snapshot.
   * @param {string | import('./protocol.js').ContentBlock[]} prompt
   * @param {{ id?: string, timeoutMs?: number }} [options]
   * @returns {Promise<import('./protocol.js').ResultEvent>}
   */
  async run(prompt, options = {}) {
    const id = options.id ?? this._newId('query');
    const mine = (/** @type {SessionEvent} */ e) => e.kind === 'result' && e.query_id === id;
    const stop = new AbortController();
    const live = this.waitFor(mine, { timeoutMs: options.timeoutMs, signal: stop.signal }).then((f) => f.event);
    live.catch(() => {});
    /** @type {Promise<SessionEvent>} */
    const skipped = new Promise((resolve) => {
      // Away longer than the log keeps: the reconnect is a reset, and its snapshot holds the result.
      const off = this.on('reset', (frame) => {
        const found = frame.snapshot.transcript.find(mine);
        if (found) resolve(found);
      });
      stop.signal.addEventListener('abort', off);
    });
    try {
      await this.query(prompt, { id });
      return /** @type {import('./protocol.js').ResultEvent} */ (await Promise.race([live, skipped]));
    } finally {
      stop.abort();
    }
  }

  /** Stop the running turn. Resolves with `{ interrupted }` (false when nothing was running). */
  async interrupt() {
    const result = await this.send({ type: 'interrupt' });
    return /** @type {{ interrupted: boolean }} */ (/** @type {unknown} */ (result));
  }

  /**
   * Allow a pending tool call, optionally with edited input or "always allow" suggestions.
   * @param {string} requestId
   * @param {{ updatedInput?: JsonObject, applySuggestions?: number[] }} [options]
   */
  async allow(requestId, options = {}) {
    /** @type {import('./protocol.js').PermissionResponseFrame} */
    const frame = { type: 'permission_response', id: this._newId('allow'), request_id: requestId, decision: 'allow' };
    if (options.updatedInput) frame.updated_input = options.updatedInput;
    if (options.applySuggestions?.length) frame.apply_suggestions = options.applySuggestions;
    await this.send(frame);
  }

  /**
   * Deny a pending tool call (or decline a question).
   * @param {string} requestId
   * @param {{ message?: string, interrupt?: boolean }} [options] `interrupt`: also stop the turn
   */
  async deny(requestId, options = {}) {
    /** @type {import('./protocol.js').PermissionResponseFrame} */
    const frame = { type: 'permission_response', id: this._newId('deny'), request_id: requestId, decision: 'deny' };
    if (options.message) frame.message = options.message;
    if (options.interrupt) frame.interrupt = true;
    await this.send(frame);
  }

  /**
   * Answer a question: question text -> chosen label, labels (multiSelect) or free text.
   * @param {string} requestId
   * @param {Record<string, string | string[]>} answers
   */
  async answer(requestId, answers) {
    await this.send({ type: 'question_response', request_id: requestId, answers });
  }

  /** @param {string} model */
  async setModel(model) {
    await this.send({ type: 'set_model', model });
  }

  /** @param {PermissionMode} mode */
  async setPermissionMode(mode) {
    await this.send({ type: 'set_permission_mode', mode });
  }

  /** Start a fresh conversation (soft: same agent process; hard: a new one). @param {'soft' | 'hard'} [mode] */
  async resetConversation(mode = 'soft') {
    await this.send({ type: 'reset_conversation', mode });
  }

  /**
   * Put the files the agent changed back as they were when query `queryId` was sent (profiles
   * with `enable_file_checkpointing`); everyone gets `files_rewound`.
   * @param {string} queryId
   */
  async rewindFiles(queryId) {
    await this.send({ type: 'rewind_files', query_id: queryId });
  }

  /**
   * Continue this conversation in a new session (same principal and settings): from now, or from
   * just before query `queryId` ("edit and resend", "try again"). Resolves with the new session's
   * id; open it with `client.attach(sessionId)`.
   * @param {string} [queryId]
   * @returns {Promise<string>}
   */
  async fork(queryId) {
    const result = await this.send(queryId ? { type: 'fork', query_id: queryId } : { type: 'fork' });
    return String(/** @type {{ session_id: string }} */ (/** @type {unknown} */ (result)).session_id);
  }

  /**
   * Run one of the slash commands the profile lists (`command` without the slash), as a query.
   * @param {string} command
   * @param {string} [args]
   * @returns {Promise<{ query_id: string, queued: boolean, position: number }>}
   */
  async runCommand(command, args) {
    const result = await this.send(args ? { type: 'run_command', command, args } : { type: 'run_command', command });
    return /** @type {{ query_id: string, queued: boolean, position: number }} */ (/** @type {unknown} */ (result));
  }

  /** The profile's MCP servers: status, server info and tools. @returns {Promise<import('./protocol.js').McpServerStatus[]>} */
  async getMcpStatus() {
    const result = /** @type {{ mcpServers?: import('./protocol.js').McpServerStatus[] } | null} */ (await this.send({ type: 'get_mcp_status' }));
    return result?.mcpServers ?? [];
  }

  /** @param {string} name one of the profile's MCP servers */
  async reconnectMcpServer(name) {
    await this.send({ type: 'reconnect_mcp_server', name });
  }

  /** Disable one of the profile's MCP servers (its tools go away) or enable it again. @param {string} name @param {boolean} enabled */
  async toggleMcpServer(name, enabled) {
    await this.send({ type: 'toggle_mcp_server', name, enabled });
  }

  /** Stop a running background task (one of `chat.tasks`); its `task` events follow. @param {string} taskId */
  async stopTask(taskId) {
    await this.send({ type: 'stop_task', task_id: taskId });
  }

  /**
   * How full the context window is, by category (works mid-turn too).
   * @returns {Promise<import('./protocol.js').ContextUsage>}
   */
  async getContextUsage() {
    return /** @type {import('./protocol.js').ContextUsage} */ (/** @type {unknown} */ (await this.send({ type: 'get_context_usage' })));
  }

  /**
   * Summarise the conversation to free context. It runs as a query: resolves like `query()` with
   * its `query_id`; its `result` event ends it.
   * @param {string} [instructions] what the summary should keep
   * @returns {Promise<{ query_id: string, queued: boolean, position: number }>}
   */
  async compact(instructions) {
    const result = await this.send(instructions ? { type: 'compact', instructions } : { type: 'compact' });
    return /** @type {{ query_id: string, queued: boolean, position: number }} */ (/** @type {unknown} */ (result));
  }

  // ---- receiving -------------------------------------------------------------------------

  /**
   * Listen to one event kind, typed: `session.onEvent('permission_request', (ev) => ...)`.
   * `'*'` listens to every kind. Returns a function that removes the listener.
   * @template {EventKind | '*'} K
   * @param {K} kind
   * @param {(event: K extends EventKind ? EventOfKind<K> : SessionEvent, frame: EventFrame) => void} listener
   * @returns {() => void}
   */
  onEvent(kind, listener) {
    return this._kinds.on(kind, /** @type {any} */ (listener));
  }

  /**
   * Events as an async iterator, from now on; it ends when the connection closes for good.
   * @param {{ kinds?: EventKind[], signal?: AbortSignal }} [options]
   * @returns {AsyncIterableIterator<EventFrame>}
   */
  events(options = {}) {
    /** @type {EventFrame[]} */
    const queue = [];
    /** @type {((r: IteratorResult<EventFrame>) => void) | null} */
    let waiting = null;
    let done = this._state === 'closed';
    const kinds = options.kinds ? new Set(options.kinds) : null;
    const sub = {
      /** @param {EventFrame} frame */
      push: (frame) => {
        if (done || (kinds && !kinds.has(frame.event.kind))) return;
        if (waiting) {
          const w = waiting;
          waiting = null;
          w({ value: frame, done: false });
        } else queue.push(frame);
      },
      end: () => {
        done = true;
        this._iterators.delete(sub);
        if (waiting) {
          const w = waiting;
          waiting = null;
          w({ value: undefined, done: true });
        }
      },
    };
    if (!done) this._iterators.add(sub);
    options.signal?.addEventListener('abort', () => sub.end(), { once: true });
    /** @type {AsyncIterableIterator<EventFrame>} */
    const iterator = {
      next: () => {
        if (queue.length) return Promise.resolve({ value: /** @type {EventFrame} */ (queue.shift()), done: false });
        if (done) return Promise.resolve({ value: undefined, done: true });
        return new Promise((resolve) => {
          waiting = resolve;
        });
      },
      return: () => {
        sub.end();
        queue.length = 0;
        return Promise.resolve({ value: undefined, done: true });
      },
      [Symbol.asyncIterator]() {
        return iterator;
      },
    };
    return iterator;
  }

  /** `for await (const frame of session)`: every event from now on. */
  [Symbol.asyncIterator]() {
    return this.events();
  }

  /**
   * Wait for the next event matching `predicate` (or of kind `predicate`). `signal` gives up the
   * wait (the promise rejects with the signal's reason).
   * @template {EventKind} K
   * @param {K | ((event: SessionEvent, frame: EventFrame) => boolean)} predicate
   * @param {{ timeoutMs?: number, signal?: AbortSignal }} [options]
   * @returns {Promise<EventFrame>}
   */
  waitFor(predicate, options = {}) {
    const test = typeof predicate === 'function' ? predicate : (/** @type {SessionEvent} */ e) => e.kind === predicate;
    const { signal } = options;
    return new Promise((resolve, reject) => {
      if (signal?.aborted) return reject(signal.reason);
      /** @type {ReturnType<typeof setTimeout> | null} */
      let timer = null;
      const abort = () => {
        cleanup();
        reject(signal?.reason);
      };
      const cleanup = () => {
        off();
        offClosed();
        signal?.removeEventListener('abort', abort);
        if (timer) clearTimeout(timer);
      };
      signal?.addEventListener('abort', abort);
      const off = this.on('event', (frame) => {
        if (test(frame.event, frame)) {
          cleanup();
          resolve(frame);
        }
      });
      const offClosed = this.on('closed', (info) => {
        cleanup();
        reject(new ClosedError(info.message, { code: info.code }));
      });
      if (options.timeoutMs) {
        timer = setTimeout(() => {
          cleanup();
          reject(new Error(`timed out after ${options.timeoutMs} ms waiting for an event`));
        }, options.timeoutMs);
      }
    });
  }

  /**
   * Wait until the session (the agent, not the connection) is in `state`; resolves at once when
   * it already is. Useful after `connect()`: `await session.waitForState('idle')`.
   * @param {import('./protocol.js').SessionState | import('./protocol.js').SessionState[]} state
   * @param {{ timeoutMs?: number }} [options]
   * @returns {Promise<void>}
   */
  async waitForState(state, options = {}) {
    const wanted = Array.isArray(state) ? state : [state];
    if (this.info && wanted.includes(this.info.state)) return;
    await this.waitFor((e) => e.kind === 'state' && wanted.includes(e.state), options);
  }

  // ---- internals: attempts ---------------------------------------------------------------

  /** @private @param {string} type */
  _newId(type) {
    return `${type}_${this._idBase}_${(++this._idCount).toString(36)}`;
  }

  /** @private @returns {'websocket' | 'sse'} */
  _chooseTransport() {
    const { transport, fallback } = this.options;
    if (transport === 'sse') return 'sse';
    if (!this.client.WebSocket) return transport === 'websocket' ? 'websocket' : 'sse';
    if (transport === 'websocket' || !fallback.enabled) return 'websocket';
    return this._wsFailures >= fallback.afterFailures ? 'sse' : 'websocket';
  }

  /** @private */
  _startAttempt() {
    this._clearTimer('_retryTimer');
    if (this._state === 'closed' || (this._link && !this._link.dead)) return;
    if (this._isOffline()) {
      this._setState(this._everAttached ? 'reconnecting' : 'connecting', 'offline');
      return; // the `online` event starts the next attempt
    }
    const kind = this._chooseTransport();
    if (kind === 'websocket') this._openWebSocket(false);
    else this._openSse();
  }

  /** @private @param {'websocket' | 'sse'} kind @param {boolean} probe @returns {Link} */
  _newLink(kind, probe) {
    return { kind, transport: null, attached: false, attachedAt: 0, probe, dead: false, immediate: false, lastReceived: Date.now(), pingId: null, pingSentAt: 0, connectTimer: null };
  }

  /** @private @param {boolean} probe */
  async _openWebSocket(probe) {
    const link = this._newLink('websocket', probe);
    if (probe) this._probe = link;
    else this._link = link;
    this._armConnectTimer(link);
    let auth;
    try {
      auth = await this.client.webSocketAuth();
    } catch (err) {
      if (err instanceof GatewayError && err.code === ErrorCodes.UNAUTHORIZED) return this._fatal(err.code, err.message);
      return this._onLinkClosed(link, { code: 1006, reason: `could not get a ticket: ${/** @type {Error} */ (err).message}`, opened: false, local: false });
    }
    if (link.dead) return;
    const WebSocketImpl = /** @type {import('./transport-ws.js').WebSocketConstructor} */ (this.client.WebSocket);
    link.transport = new WebSocketTransport({
      url: auth.url,
      protocols: auth.protocols,
      WebSocket: WebSocketImpl,
      onOpen: () => this._sendHandshake(link),
      onMessage: (text) => this._onMessage(link, text),
      onClose: (info) => this._onLinkClosed(link, info),
    });
  }

  /** @private */
  _openSse() {
    const link = this._newLink('sse', false);
    this._link = link;
    this._armConnectTimer(link);
    const transport = new SseTransport({
      client: this.client,
      sessionId: this.id,
      openFrame: this.id ? null : this._openFrame(),
      cursor: this._cursor,
      onOpen: () => {},
      onMessage: (text) => this._onMessage(link, text),
      onClose: (info) => this._onLinkClosed(link, info),
      onSessionId: (id) => {
        if (!this.id) this.id = id;
      },
    });
    link.transport = transport;
  }

  /** @private @param {Link} link */
  _armConnectTimer(link) {
    link.connectTimer = setTimeout(() => {
      link.connectTimer = null;
      if (!link.attached && !link.dead) this._dropLink(link, `not attached within ${this.options.connectTimeoutMs} ms`);
    }, this.options.connectTimeoutMs);
  }

  /** @private @returns {OpenFrame} */
  _openFrame() {
    /** @type {Record<string, unknown>} */
    const fields = {};
    for (const [k, v] of Object.entries(this.openOptions)) if (v !== undefined) fields[k] = v;
    return /** @type {OpenFrame} */ ({ ...fields, type: 'open', id: this._openId });
  }

  /** @private @param {Link} link */
  _sendHandshake(link) {
    /** @type {ClientFrame} */
    const frame = this.id
      ? { type: 'attach', id: this._newId('attach'), session_id: this.id, after: this._cursor.seq, epoch: this._cursor.epoch }
      : this._openFrame();
    if (frame.type === 'attach' && frame.epoch === null) delete frame.epoch;
    try {
      link.transport?.send(encodeClientFrame(frame));
    } catch (err) {
      if (err instanceof ProtocolError) return this._fatal(ErrorCodes.BAD_FRAME, err.message);
      this._dropLink(link, 'handshake could not be sent');
    }
  }

  /** @private @param {Link} link @param {string} text */
  _onMessage(link, text) {
    if (link.dead) return;
    link.lastReceived = Date.now();
    link.pingId = null;
    for (const line of text.split('\n')) {
      if (link.dead) return;
      if (!line.trim()) continue;
      let frame;
      try {
        frame = decodeServerFrame(line);
      } catch (err) {
        this.emit('protocolerror', /** @type {ProtocolError} */ (err));
        // An event whose body breaks the contract still takes its number: skipping it keeps the
        // cursor moving, where dropping it would look like a gap and replay it again, forever.
        const numbered = eventNumber(line);
        if (numbered && link === this._link && link.attached) this._advance(link, numbered.epoch, numbered.seq);
        continue;
      }
      this._onFrame(link, frame);
    }
  }

  /** @private @param {Link} link @param {ServerFrame} frame */
  _onFrame(link, frame) {
    switch (frame.type) {
      case 'attached':
      case 'reset':
        if (!link.attached) this._onAttached(link, frame);
        else if (frame.type === 'reset') this._applyReset(frame);
        return;
      case 'event':
        if (link.attached) this._onEvent(link, frame);
        return;
      case 'ack':
        this._settle(frame.id, frame, null);
        return;
      case 'error': {
        const err = new GatewayError(frame.code, frame.message, { frameId: frame.id ?? null });
        if (frame.id && this._pending.has(frame.id)) {
          this._settle(frame.id, null, err);
        } else if (!link.attached) {
          // The handshake was refused.
          if (FATAL_ATTACH.has(frame.code) || frame.id === this._openId) {
            if (link.probe) return this._dropLink(link, frame.message);
            return this._fatal(frame.code, frame.message);
          }
          this._dropLink(link, `${frame.code}: ${frame.message}`);
        } else {
          this.emit('error', err);
        }
        return;
      }
      case 'pong':
      default:
        return;
    }
  }

  /** @private @param {Link} link @param {AttachedFrame | ResetFrame} frame */
  _onAttached(link, frame) {
    link.attached = true;
    if (link.connectTimer) clearTimeout(link.connectTimer);
    link.connectTimer = null;
    if (link.probe) {
      // Back from the fallback: the WebSocket takes over; the SSE stream stops.
      const old = this._link;
      this._probe = null;
      this._link = link;
      if (old) this._retire(old);
    }
    if (link.kind === 'websocket') this._wsFailures = 0;
    link.attachedAt = Date.now();
    this._clearTimer('_retryTimer'); // a probe took over while the fallback's reconnect waited
    this._everAttached = true;
    this.stats.attaches++;
    this.connectionId = frame.connection ?? null;
    if (frame.type === 'attached') {
      const info = frame.session;
      this.id = info.session_id;
      if (this._cursor.epoch !== info.epoch) this._cursor = { epoch: info.epoch, seq: Math.min(this._cursor.seq, frame.after) };
      this.info = { ...info };
      this.chat?.setInfo(info);
      // Requests raised before `after` are in no replay: the chat takes them from `info` once the
      // replay (which may hold them, in their place) is in.
      this._pendingAtAttach = { until: info.last_seq, requests: info.pending };
      if (this._cursor.seq >= info.last_seq) this._notePendingAtAttach();
      this.emit('attached', frame);
      if (this.chat) this.emit('chat', this.chat);
    } else {
      this._applyReset(frame);
    }
    if (link.kind === 'sse') this.stats.fallbacks++;
    this._setState(link.kind === 'websocket' ? 'open' : 'fallback');
    this._startHeartbeat();
    if (link.kind === 'sse') this._scheduleProbe();
    else this._clearTimer('_probeTimer');
    for (const entry of [...this._pending.values()]) {
      if (entry.inFlight) continue; // its POST answers for it
      if (entry.sentOn && entry.sentOn !== link) this.stats.resent++;
      this._transmit(link, entry);
    }
    if (this._ready) {
      const ready = this._ready;
      this._ready = null;
      ready.resolve(this);
    }
  }

  /** @private @param {ResetFrame} frame */
  _applyReset(frame) {
    const snapshot = frame.snapshot;
    this.stats.resets++;
    this.id = snapshot.session.session_id;
    this._cursor = { epoch: snapshot.session.epoch, seq: snapshot.session.last_seq };
    this.info = { ...snapshot.session };
    this.chat?.applySnapshot(snapshot);
    this.emit('reset', frame);
    if (this.chat) this.emit('chat', this.chat);
  }

  /** @private @param {Link} link @param {EventFrame} frame */
  _onEvent(link, frame) {
    if (link !== this._link || !this._advance(link, frame.epoch, frame.seq)) return;
    this._updateInfo(frame);
    this.chat?.applyFrame(frame);
    if (this._pendingAtAttach && frame.seq >= this._pendingAtAttach.until) this._notePendingAtAttach();
    this.emit('event', frame);
    this._kinds.emit(frame.event.kind, frame.event, frame);
    this._kinds.emit('*', frame.event, frame);
    for (const sub of [...this._iterators]) sub.push(frame);
    if (this.chat) this.emit('chat', this.chat);
  }

  /**
   * Move the cursor to the event numbered (`epoch`, `seq`) when it is the next one; false for a
   * duplicate, or for a gap or another epoch (then the link is dropped to re-attach).
   * @private @param {Link} link @param {string} epoch @param {number} seq @returns {boolean}
   */
  _advance(link, epoch, seq) {
    const cursor = this._cursor;
    if (cursor.epoch !== null && epoch !== cursor.epoch) {
      // The log was replaced under us: re-attach; the gateway answers with a reset.
      this.stats.gaps++;
      this._dropLink(link, 'epoch changed', { immediate: true });
      return false;
    }
    if (seq <= cursor.seq) {
      this.stats.duplicates++;
      return false;
    }
    if (seq !== cursor.seq + 1) {
      this.stats.gaps++;
      this._dropLink(link, `missing events ${cursor.seq + 1}..${seq - 1}`, { immediate: true });
      return false;
    }
    this._cursor = { epoch, seq };
    return true;
  }

  /** @private */
  _notePendingAtAttach() {
    this.chat?.notePending(this._pendingAtAttach?.requests ?? []);
    this._pendingAtAttach = null;
  }

  /** @private @param {EventFrame} frame */
  _updateInfo(frame) {
    const e = frame.event;
    if (e.kind === 'state' && e.state === 'closed') this._sessionEnded = true;
    const info = this.info;
    if (!info || frame.seq <= info.last_seq) return; // a replayed event: `info` already counts it
    info.last_seq = frame.seq;
    info.last_activity = frame.ts;
    if (e.kind === 'state') info.state = e.state;
    else if (e.kind === 'model_changed') info.model = e.model;
    else if (e.kind === 'permission_mode_changed') info.permission_mode = e.mode;
    else if (e.kind === 'result' && !GATEWAY_RESULTS.has(e.subtype)) info.turns += 1; // as SessionInfo counts
  }

  /**
   * @param {string} id
   * @param {AckFrame | null} ack
   * @param {Error | null} error
   * @private
   */
  _settle(id, ack, error) {
    const entry = this._pending.get(id);
    if (!entry) return;
    this._pending.delete(id);
    if (entry.timer) clearTimeout(entry.timer);
    if (error) entry.reject(error);
    else entry.resolve(ack?.result ?? null);
  }

  /** @private @param {Link} link @param {Pending} entry */
  _transmit(link, entry) {
    entry.sentOn = link;
    if (link.kind === 'websocket') {
      try {
        link.transport?.send(entry.text);
      } catch {
        entry.sentOn = null; // sent again after the reconnect
      }
      return;
    }
    const transport = /** @type {SseTransport} */ (link.transport);
    entry.inFlight = true;
    transport.post(entry.frame).then(
      (reply) => {
        entry.inFlight = false;
        if (reply.type === 'ack') this._settle(reply.id, reply, null);
        else if (reply.type === 'error') this._settle(entry.frame.id, null, new GatewayError(reply.code, reply.message, { frameId: entry.frame.id }));
      },
      (err) => {
        entry.inFlight = false;
        if (err instanceof GatewayError || err instanceof ProtocolError) return this._settle(entry.frame.id, null, err);
        if (!this._pending.has(entry.frame.id)) return;
        entry.sentOn = null;
        // Not known to have arrived: send it again (same id, so it runs at most once).
        if (this._link && this._link.attached && this._link !== link) this._transmit(this._link, entry);
        else if (this._link === link) this._dropLink(link, `POST failed: ${/** @type {Error} */ (err).message}`);
      },
    );
  }

  /**
   * @param {Link} link
   * @param {TransportClose} info
   * @private
   */
  _onLinkClosed(link, info) {
    if (link.dead) return;
    link.dead = true;
    if (link.connectTimer) clearTimeout(link.connectTimer);
    if (link === this._probe) {
      this._probe = null;
      if (!link.attached) this._scheduleProbe();
      return;
    }
    if (link !== this._link) return;
    this._link = null;
    this._stopHeartbeat();
    // The backoff starts again only after a link that stayed up: one dropped at once (a gateway
    // failing right after attach, a replay it can't get past) backs off like a failed attempt.
    if (link.attached && Date.now() - link.attachedAt >= this.options.reconnect.stableMs) this._attempt = 0;
    if (this._state === 'closed') return;
    if (info.code === CloseCodes.UNAUTHORIZED) return this._fatal(ErrorCodes.UNAUTHORIZED, info.reason || 'unauthorized');
    if (info.error && FATAL_ATTACH.has(info.error.code)) {
      if (this._closing && info.error.code === ErrorCodes.SESSION_CLOSED) {
        return this._finish({ code: 'closed_by_client', message: 'the session was closed by this client' });
      }
      return this._fatal(info.error.code, info.error.message);
    }
    if (this._closing && (info.code === CloseCodes.SESSION_CLOSED || this._sessionEnded)) {
      return this._finish({ code: 'closed_by_client', message: 'the session was closed by this client' });
    }
    if (info.code === CloseCodes.SESSION_CLOSED || this._sessionEnded) return this._fatal(ErrorCodes.SESSION_CLOSED, info.reason || 'the session is closed');
    if (link.kind === 'websocket' && !link.attached) this._wsFailures++;
    if (!this.options.reconnect.enabled) return this._fatal('connection_lost', info.reason || 'the connection was lost');
    if (link.immediate) return this._scheduleReconnect(info.reason || 'reconnecting', 'now');
    const quick = RESUME_AT_ONCE.has(info.code);
    this._scheduleReconnect(info.reason || `connection closed (${info.code})`, quick ? 'quick' : 'backoff');
  }

  /**
   * @param {string} reason
   * @param {'backoff' | 'quick' | 'now'} [pace] quick: no wait on the first retry; now: no wait at all
   * @private
   */
  _scheduleReconnect(reason, pace = 'backoff') {
    if (this._state === 'closed') return;
    this._clearTimer('_retryTimer');
    const state = this._everAttached ? 'reconnecting' : 'connecting';
    if (this._isOffline()) {
      this._setState(state, 'offline');
      return;
    }
    const delay = pace !== 'backoff' && this._attempt === 0 ? 0 : backoffDelay(this._attempt, this.options.reconnect);
    this._attempt++;
    this._setState(state, reason, delay);
    this._retryTimer = setTimeout(() => this._startAttempt(), delay);
  }

  /**
   * Abandon a link (dead socket, gap, timeout) and reconnect.
   * @param {Link | null} link
   * @param {string} reason
   * @param {{ immediate?: boolean, code?: number }} [options]
   * @private
   */
  _dropLink(link, reason, options = {}) {
    if (!link || link.dead) return;
    link.immediate = Boolean(options.immediate);
    // The transport reports the close synchronously, which schedules the reconnect.
    link.transport?.close(options.code ?? 4000, reason);
    if (!link.dead) this._onLinkClosed(link, { code: 1006, reason, opened: false, local: true });
  }

  /** @private Close a link that was replaced, without reporting a loss. @param {Link} link */
  _retire(link) {
    link.dead = true;
    if (link.connectTimer) clearTimeout(link.connectTimer);
    link.transport?.close(1000, 'replaced');
  }

  /** @private */
  _scheduleProbe() {
    this._clearTimer('_probeTimer');
    if (this.options.transport !== 'auto' || !this.client.WebSocket || this._state === 'closed') return;
    this._probeTimer = setTimeout(() => {
      this._probeTimer = null;
      if (this._link?.kind === 'sse' && this._link.attached && !this._probe && !this._isOffline()) this._openWebSocket(true);
    }, this.options.fallback.retryWebSocketMs);
  }

  // ---- internals: heartbeat and network ---------------------------------------------------

  /** @private */
  _startHeartbeat() {
    this._stopHeartbeat();
    const hb = this.options.heartbeat;
    if (!hb) return;
    const tick = Math.max(50, Math.min(hb.intervalMs, hb.timeoutMs) / 4);
    this._heartbeatTimer = setInterval(() => this._heartbeat(hb), tick);
  }

  /** @private @param {Required<HeartbeatOptions>} hb */
  _heartbeat(hb) {
    const link = this._link;
    if (!link || !link.attached || link.dead) return;
    const now = Date.now();
    if (link.kind === 'sse') {
      // The SSE stream carries keep-alive comments; silence means it is dead.
      if (now - link.lastReceived > hb.streamIdleMs) {
        this.stats.heartbeatTimeouts++;
        this._dropLink(link, 'event stream went silent');
      }
      return;
    }
    if (link.pingId) {
      if (now - link.pingSentAt > hb.timeoutMs) {
        this.stats.heartbeatTimeouts++;
        this._dropLink(link, 'no answer to ping', { code: CloseCodes.HEARTBEAT_TIMEOUT });
      }
      return;
    }
    if (now - link.lastReceived >= hb.intervalMs) {
      const id = this._newId('ping');
      link.pingId = id;
      link.pingSentAt = now;
      try {
        link.transport?.send(JSON.stringify({ type: 'ping', id }));
      } catch {
        this._dropLink(link, 'ping could not be sent');
      }
    }
  }

  /** @private */
  _stopHeartbeat() {
    if (this._heartbeatTimer) clearInterval(this._heartbeatTimer);
    this._heartbeatTimer = null;
  }

  /** @private */
  _isOffline() {
    if (!this.options.watchNetwork) return false;
    if (this._offline) return true;
    const nav = /** @type {{ navigator?: { onLine?: boolean } }} */ (globalThis).navigator;
    return Boolean(nav && nav.onLine === false && typeof (/** @type {any} */ (globalThis).addEventListener) === 'function');
  }

  /** @private */
  _watchNetwork() {
    if (!this.options.watchNetwork || this._unwatchNetwork) return;
    const target = /** @type {{ addEventListener?: Function, removeEventListener?: Function }} */ (globalThis);
    if (typeof target.addEventListener !== 'function' || typeof target.removeEventListener !== 'function') return;
    const onOffline = () => {
      this._offline = true;
      this._clearTimer('_retryTimer');
      if (this._probe) this._dropLink(this._probe, 'offline');
      if (this._link) this._dropLink(this._link, 'offline');
      else if (this._state !== 'closed') this._setState(this._everAttached ? 'reconnecting' : 'connecting', 'offline');
    };
    const onOnline = () => {
      this._offline = false;
      if (this._state === 'closed' || this._link) return;
      this._attempt = 0;
      this._startAttempt();
    };
    target.addEventListener('offline', onOffline);
    target.addEventListener('online', onOnline);
    this._unwatchNetwork = () => {
      target.removeEventListener?.('offline', onOffline);
      target.removeEventListener?.('online', onOnline);
    };
  }

  // ---- internals: state and closing -------------------------------------------------------

  /**
   * @param {ConnectionState} state
   * @param {string | null} [reason]
   * @param {number | null} [retryInMs]
   * @private
   */
  _setState(state, reason = null, retryInMs = null) {
    const previous = this._state;
    const transport = this._link?.attached ? this._link.kind : null;
    if (previous === state && state !== 'reconnecting' && state !== 'connecting') return;
    this._state = state;
    this._transportKind = transport;
    this.emit('connectionstate', { state, previous, transport, reason, retryInMs });
  }

  /** @private @param {string} code @param {string} message */
  _fatal(code, message) {
    this._finish({ code, message });
  }

  /** @private @param {CloseInfo} info */
  _finish(info) {
    if (this._state === 'closed') return;
    this.closeInfo = info;
    this._clearTimer('_retryTimer');
    this._clearTimer('_probeTimer');
    this._stopHeartbeat();
    this._unwatchNetwork?.();
    this._unwatchNetwork = null;
    for (const link of [this._link, this._probe]) if (link) this._retire(link);
    this._link = this._probe = null;
    const error = new ClosedError(info.message, { code: info.code });
    for (const entry of this._pending.values()) {
      if (entry.timer) clearTimeout(entry.timer);
      entry.reject(error);
    }
    this._pending.clear();
    this._setState('closed', info.message);
    for (const sub of [...this._iterators]) sub.end();
    if (this._ready) {
      const ready = this._ready;
      this._ready = null;
      ready.reject(error);
    }
    try {
      this.emit('closed', info);
    } catch (err) {
      reportListenerError(err);
    }
  }

  /** @private @param {'_retryTimer' | '_probeTimer'} name */
  _clearTimer(name) {
    const timer = this[name];
    if (timer) clearTimeout(timer);
    this[name] = null;
  }
}
