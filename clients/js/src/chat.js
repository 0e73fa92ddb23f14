// Folding the event stream into a chat: messages with streamed text, tool calls with their
// results, approvals and questions, per-turn cost. UIs render `chat.items` and `chat.pending`.
//
// Items are immutable snapshots: an item that changes is replaced by a new object, and
// `chat.items` is a new array after every change, so identity comparison (React memo, keyed DOM
// updates) tells what to redraw. `chat.version` increases with every change.

/**
 * @import {SessionEvent, SessionInfo, Snapshot, EventFrame, Actor, ContentBlock, QuestionItem as WireQuestion,
 *   JsonObject, RequestOutcome, SessionState, PendingRequest} from './protocol.js'
 */

/**
 * @typedef {object} UserItem A prompt someone sent (from `user_query`).
 * @property {'user'} type
 * @property {string} key
 * @property {string} queryId
 * @property {string} text the prompt's text (text blocks joined)
 * @property {string | ContentBlock[]} prompt the prompt as sent
 * @property {Actor} by
 * @property {boolean} queued waiting for an earlier turn to finish
 * @property {number | null} ts unix ms
 */
/**
 * @typedef {object} TextItem Assistant text; `streaming` while deltas still arrive.
 * @property {'text'} type
 * @property {string} key
 * @property {string | null} messageId
 * @property {string} text
 * @property {boolean} streaming
 * @property {string | null} parentToolUseId set for a subagent's text
 */
/**
 * @typedef {object} ThinkingItem
 * @property {'thinking'} type
 * @property {string} key
 * @property {string | null} messageId
 * @property {string} text
 * @property {boolean} streaming
 * @property {string | null} parentToolUseId
 */
/**
 * @typedef {'pending' | 'awaiting_approval' | 'running' | 'done' | 'error' | 'denied' | 'cancelled'} ToolStatus
 */
/**
 * @typedef {object} ToolResult
 * @property {string} text the result's text content
 * @property {ContentBlock[]} blocks the result's content blocks
 * @property {boolean} isError
 * @property {unknown} data the tool's structured result (`tool_use_result`), when given
 */
/**
 * @typedef {object} ToolItem A tool call and, once it ran, its result.
 * @property {'tool'} type
 * @property {string} key
 * @property {string} toolUseId
 * @property {string} name
 * @property {JsonObject | null} input null while the input still streams
 * @property {string} inputText the input's JSON text as streamed so far
 * @property {boolean} streaming the input is still streaming
 * @property {ToolStatus} status
 * @property {ToolResult | null} result
 * @property {string | null} requestId the approval or question that gates it
 * @property {string | null} parentToolUseId
 */
/**
 * @typedef {object} ApprovalItem A tool waiting for (or given) permission (`permission_request`).
 * @property {'approval'} type
 * @property {string} key
 * @property {string} requestId
 * @property {string} toolName
 * @property {JsonObject} input
 * @property {string | null} toolUseId
 * @property {string | null} title
 * @property {string | null} displayName
 * @property {string | null} description
 * @property {string | null} decisionReason
 * @property {JsonObject[]} suggestions
 * @property {number} expiresAt unix ms
 * @property {'pending' | RequestOutcome} status
 * @property {Actor | null} resolvedBy
 * @property {string | null} message the deny message or expiry reason
 * @property {JsonObject | null} updatedInput
 */
/**
 * @typedef {object} QuestionCardItem A question for the user (`question`, from AskUserQuestion).
 * @property {'question'} type
 * @property {string} key
 * @property {string} requestId
 * @property {WireQuestion[]} questions
 * @property {string | null} toolUseId
 * @property {number} expiresAt unix ms
 * @property {'pending' | RequestOutcome} status
 * @property {Actor | null} resolvedBy
 * @property {{ [question: string]: string | string[] } | null} answers
 * @property {string | null} message
 */
/**
 * @typedef {object} ResultItem The end of a turn, with its cost and usage.
 * @property {'result'} type
 * @property {string} key
 * @property {string | null} queryId
 * @property {string} subtype 'success', 'error_during_execution', 'error_max_turns', ...
 * @property {boolean} isError
 * @property {boolean} interrupted
 * @property {number} durationMs
 * @property {number} durationApiMs
 * @property {number} numTurns
 * @property {number | null} costUsd this turn's cost
 * @property {number} totalCostUsd the session's cost after this turn
 * @property {JsonObject | null} usage this turn's token usage
 * @property {string | null} result the final text
 * @property {string[]} errors
 * @property {unknown} structuredOutput the agent's JSON, when the session has an `output_format`
 * @property {{ [model: string]: import('./protocol.js').ModelUsage } | null} modelUsage per model, with its `contextWindow`
 * @property {number | null} contextPercent how full the context window was at this turn's last request (0-100), when known
 */
/**
 * @typedef {object} NoticeItem Something to show between messages (errors, model changes, resets, ...).
 * @property {'notice'} type
 * @property {string} key
 * @property {'info' | 'warning' | 'error'} level
 * @property {string} code 'interrupted', 'model_changed', 'permission_mode_changed', 'conversation_reset', 'error', ...
 * @property {string} text
 */
/**
 * @typedef {UserItem | TextItem | ThinkingItem | ToolItem | ApprovalItem | QuestionCardItem | ResultItem | NoticeItem} ChatItem
 */
/** @typedef {ApprovalItem | QuestionCardItem} PendingItem */

/** A task with one of these statuses has ended. */
const TERMINAL_TASK_STATUSES = new Set(['completed', 'failed', 'stopped', 'killed']);
/**
 * How full the context was at a turn's last model request: that request's input tokens (fresh,
 * cached and cache-written; a result's own usage sums every request of the turn) over the model's
 * window. Null without both.
 * @param {JsonObject | null} requestUsage
 * @param {{ [model: string]: import('./protocol.js').ModelUsage } | null | undefined} modelUsage
 * @returns {number | null}
 */
function contextPercent(requestUsage, modelUsage) {
  const usage = /** @type {any} */ (requestUsage ?? {});
  const models = Object.values(modelUsage ?? {});
  const window = Math.max(0, ...models.map((m) => m.contextWindow ?? 0));
  if (!window || typeof usage.input_tokens !== 'number') return null;
  const used = usage.input_tokens + (usage.cache_read_input_tokens ?? 0) + (usage.cache_creation_input_tokens ?? 0);
  return Math.min(100, Math.round((used / window) * 1000) / 10);
}

const BUSY = new Set(['running', 'awaiting_approval', 'interrupted']);
const INTERRUPT_MARK = '[Request interrupted by user';

/**
 * @param {string | ContentBlock[] | null | undefined} content
 * @returns {string}
 */
export function contentText(content) {
  if (content == null) return '';
  if (typeof content === 'string') return content;
  return content
    .map((b) => (b && b.type === 'text' && typeof b.text === 'string' ? b.text : ''))
    .filter(Boolean)
    .join('\n');
}

/** Subtypes of the `result`s the gateway makes for queries the agent gave none (not turns it ran). */
export const GATEWAY_RESULTS = new Set(['cancelled', 'agent_exited', 'agent_unavailable', 'agent_unresponsive', 'message_too_large']);

/** @param {unknown} v @returns {v is JsonObject} */
function isObject(v) {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}

/**
 * @typedef {object} StreamBlocks
 * @property {string} messageId
 * @property {Map<number, string>} blocks index -> item key
 */

export class ChatState {
  constructor() {
    /** @type {string | null} */ this.sessionId = null;
    /** @type {string | null} */ this.profile = null;
    /** @type {string | null} */ this.model = null;
    /** @type {string | null} */ this.permissionMode = null;
    /** @type {string[] | null} null: any model */ this.allowedModels = null;
    /** @type {string[]} */ this.allowedModes = [];
    /** @type {SessionState | null} */ this.sessionState = null;
    /** Turns finished (results seen; after a snapshot, the session's count). */ this.turns = 0;
    /** The session's cost so far (USD). */ this.totalCostUsd = 0;
    /** @type {string | null} the query whose turn is running */ this.currentQueryId = null;
    /** @type {ResultItem | null} */ this.lastResult = null;
    /** @type {import('./protocol.js').RateLimitInfo | null} the latest rate-limit report */ this.rateLimit = null;
    /** @type {Map<string, import('./protocol.js').TaskInfo>} background tasks still running, by id */ this.tasks = new Map();
    /** Increases on every change. */ this.version = 0;
    /** @private @type {ChatItem[]} */ this._items = [];
    /** @private @type {Map<string, number>} */ this._index = new Map();
    /** @private @type {ChatItem[]} */ this._itemsCache = [];
    /** @private */ this._itemsVersion = -1;
    /** @private @type {Map<string, StreamBlocks>} parent tool use id ('' for top level) -> current message */
    this._streams = new Map();
    /** @private @type {Set<string>} text/thinking items whose final text arrived */
    this._final = new Set();
    /** @private @type {JsonObject | null} the usage of the latest top-level model request (its input is the context) */
    this._requestUsage = null;
    /** @private */ this._interrupted = false;
    /** @private */ this._seqKey = 0;
  }

  // ---- reading ---------------------------------------------------------------------------

  /** Every item in order (a new array after each change). @returns {readonly ChatItem[]} */
  get items() {
    if (this._itemsVersion !== this.version) {
      this._itemsCache = this._items.slice();
      this._itemsVersion = this.version;
    }
    return this._itemsCache;
  }

  /** Approvals and questions still waiting for an answer. @returns {PendingItem[]} */
  get pending() {
    return /** @type {PendingItem[]} */ (this._items.filter((i) => (i.type === 'approval' || i.type === 'question') && i.status === 'pending'));
  }

  /** A turn is running (the interrupt button should show). */
  get busy() {
    return this.sessionState !== null && BUSY.has(this.sessionState);
  }

  /** Some text is still streaming. */
  get streaming() {
    return this._items.some((i) => (i.type === 'text' || i.type === 'thinking') && i.streaming);
  }

  /** @param {string} key @returns {ChatItem | undefined} */
  get(key) {
    const i = this._index.get(key);
    return i === undefined ? undefined : this._items[i];
  }

  /** @param {string} toolUseId @returns {ToolItem | undefined} */
  tool(toolUseId) {
    return /** @type {ToolItem | undefined} */ (this.get(`tool:${toolUseId}`));
  }

  // ---- writing ---------------------------------------------------------------------------

  /** Forget everything (a new session). */
  clear() {
    const fresh = new ChatState();
    Object.assign(this, fresh, { version: this.version + 1 });
  }

  /** Take the session's settings from `attached` or a snapshot. @param {SessionInfo} info */
  setInfo(info) {
    this.sessionId = info.session_id;
    this.profile = info.profile;
    this.model = info.model;
    this.permissionMode = info.permission_mode;
    this.allowedModels = info.allowed_models;
    this.allowedModes = info.allowed_modes;
    this.sessionState = info.state;
    if (info.rate_limit) this.rateLimit = info.rate_limit; // the replay's own `rate_limit` events may be gone
    this.tasks = new Map((info.tasks ?? []).map((t) => [t.task_id, t]));
    // `turns` is not taken from here: the replay that follows an attach counts its results.
    this.version++;
  }

  /**
   * Requests still open that this chat hasn't seen: it began after them (from a saved cursor),
   * or a snapshot's transcript no longer reaches back to them.
   * @param {PendingRequest[]} requests
   */
  notePending(requests) {
    for (const request of requests) {
      if (!this._index.has(`a:${request.request_id}`)) this.apply(request);
    }
  }

  /**
   * Keep `tasks` as the gateway keeps `session.tasks`: in from the start, out at a terminal status.
   * @param {import('./protocol.js').TaskEvent} event
   * @private
   */
  _task(event) {
    const tasks = new Map(this.tasks);
    if (event.status && TERMINAL_TASK_STATUSES.has(event.status)) {
      tasks.delete(event.task_id);
    } else if (event.subtype === 'task_started') {
      tasks.set(event.task_id, {
        task_id: event.task_id, description: event.description, task_type: event.task_type, tool_use_id: event.tool_use_id,
      });
    } else if (event.subtype === 'task_progress' && tasks.has(event.task_id)) {
      tasks.set(event.task_id, { ...tasks.get(event.task_id), task_id: event.task_id, last_tool_name: event.last_tool_name });
    } else {
      return;
    }
    this.tasks = tasks;
    this.version++;
  }

  /**
   * Rebuild from a `reset` frame's snapshot: the transcript, then the thinking and text still streaming.
   * @param {Snapshot} snapshot
   */
  applySnapshot(snapshot) {
    const version = this.version;
    this.clear();
    this.version = version + 1;
    this.setInfo(snapshot.session);
    for (const event of snapshot.transcript) this.apply(event);
    this.notePending(snapshot.session.pending);
    // The block still being written continues with the deltas that follow (see `_stream`).
    for (const [type, text] of /** @type {const} */ ([['thinking', snapshot.streaming_thinking], ['text', snapshot.streaming_text]])) {
      if (!text) continue;
      const key = `${type === 'text' ? 't' : 'th'}:snapshot:${snapshot.session.last_seq}`;
      this._add({ type, key, messageId: null, text, streaming: true, parentToolUseId: null });
      this._streams.set('', { messageId: '', blocks: new Map([[-1, key]]) });
    }
    this.sessionState = snapshot.session.state;
    this.turns = snapshot.session.turns;
    this.totalCostUsd = snapshot.session.total_cost_usd;
    this.version++;
  }

  /** Apply one event frame. @param {EventFrame} frame */
  applyFrame(frame) {
    this.apply(frame.event, frame);
  }

  /**
   * Apply one event body.
   * @param {SessionEvent} event
   * @param {{ seq?: number, ts?: number }} [meta]
   */
  apply(event, meta = {}) {
    switch (event.kind) {
      case 'state':
        this.sessionState = event.state;
        if (event.state === 'interrupted') this._interrupted = true;
        if (!BUSY.has(event.state)) this._finishStreaming();
        break;
      case 'user_query':
        this._add({
          type: 'user', key: `q:${event.query_id}`, queryId: event.query_id, text: contentText(event.prompt),
          prompt: event.prompt, by: event.by, queued: Boolean(event.queued), ts: meta.ts ?? null,
        });
        break;
      case 'turn_started': {
        this.currentQueryId = event.query_id;
        const item = this.get(`q:${event.query_id}`);
        if (item && item.type === 'user' && item.queued) this._replace({ ...item, queued: false });
        break;
      }
      case 'stream':
        this._stream(event.event, event.parent_tool_use_id ?? null);
        break;
      case 'assistant_message':
        this._assistant(event.content, event.message_id ?? null, event.parent_tool_use_id ?? null);
        if (!event.parent_tool_use_id && event.usage) this._requestUsage = event.usage;
        if (event.error) this._notice('error', 'assistant_error', `The model reported an error: ${event.error}`);
        break;
      case 'user_message':
        this._userMessage(event.content, event.tool_use_result);
        break;
      case 'result':
        this._result(event, meta);
        break;
      case 'permission_request': {
        this._add({
          type: 'approval', key: `a:${event.request_id}`, requestId: event.request_id, toolName: event.tool_name,
          input: event.input, toolUseId: event.tool_use_id ?? null, title: event.title ?? null,
          displayName: event.display_name ?? null, description: event.description ?? null,
          decisionReason: event.decision_reason ?? null, suggestions: event.suggestions ?? [], expiresAt: event.expires_at,
          status: 'pending', resolvedBy: null, message: null, updatedInput: null,
        });
        this._gateTool(event.tool_use_id, event.request_id);
        break;
      }
      case 'question':
        this._add({
          type: 'question', key: `a:${event.request_id}`, requestId: event.request_id, questions: event.questions,
          toolUseId: event.tool_use_id ?? null, expiresAt: event.expires_at, status: 'pending', resolvedBy: null,
          answers: null, message: null,
        });
        this._gateTool(event.tool_use_id, event.request_id);
        break;
      case 'request_resolved': {
        const item = this.get(`a:${event.request_id}`);
        if (item && (item.type === 'approval' || item.type === 'question')) {
          const common = { status: event.outcome, resolvedBy: event.by ?? null, message: event.message ?? null };
          if (item.type === 'approval') this._replace({ ...item, ...common, updatedInput: event.updated_input ?? null });
          else this._replace({ ...item, ...common, answers: event.answers ?? null });
          const tool = item.toolUseId ? this.tool(item.toolUseId) : undefined;
          if (tool && tool.status === 'awaiting_approval') {
            /** @type {ToolStatus} */
            const status = event.outcome === 'allowed' || event.outcome === 'answered' ? 'running' : event.outcome === 'cancelled' ? 'cancelled' : 'denied';
            this._replace({ ...tool, status, input: event.updated_input ?? tool.input });
          }
        }
        break;
      }
      case 'model_changed':
        this.model = event.model;
        this._notice('info', 'model_changed', `Model changed to ${event.model}`);
        break;
      case 'permission_mode_changed':
        this.permissionMode = event.mode;
        this._notice('info', 'permission_mode_changed', `Permission mode changed to ${event.mode}`);
        break;
      case 'files_rewound': {
        const asked = this.get(`q:${event.query_id}`);
        const text = asked && asked.type === 'user' ? asked.text.replace(/\s+/g, ' ').trim() : '';
        const which = text ? `“${text.length > 60 ? `${text.slice(0, 60)}…` : text}”` : 'that message';
        this._notice('info', 'files_rewound', `Files put back as they were before ${which} (by ${event.by.principal})`);
        break;
      }
      case 'conversation_reset': {
        // The gateway starts the transcript again here, keeping only the queries sent while the
        // reset ran (still queued: they run next, in the new conversation); so does the chat, so
        // a live chat and one rebuilt from a snapshot look the same.
        const waiting = this._items.filter((i) => i.type === 'user' && i.queued);
        this._items = [];
        this._index.clear();
        this._final.clear();
        this._streams.clear();
        this._requestUsage = null;
        for (const item of waiting) this._add(item);
        this._notice('info', 'conversation_reset', event.mode === 'hard' ? 'New conversation (agent restarted)' : 'New conversation');
        break;
      }
      case 'error':
        this._notice(event.recoverable === false ? 'error' : 'warning', event.code, event.message);
        break;
      case 'rate_limit':
        this.rateLimit = event.info;
        break;
      case 'task':
        this._task(event);
        break;
      case 'system':
        if (event.subtype === 'compact_boundary') this._notice('info', 'compacted', 'Earlier messages were summarised to save context');
        break;
      default:
        // `task` progress and kinds a newer gateway adds: nothing to show in a chat.
        return;
    }
    this.version++;
  }

  // ---- internals -------------------------------------------------------------------------

  /** @private @param {ChatItem} item */
  _add(item) {
    const at = this._index.get(item.key);
    if (at !== undefined) {
      this._items[at] = item;
      return;
    }
    this._index.set(item.key, this._items.length);
    this._items.push(item);
  }

  /** @private @param {ChatItem} item */
  _replace(item) {
    const at = this._index.get(item.key);
    if (at === undefined) this._add(item);
    else this._items[at] = item;
  }

  /** @private @param {NoticeItem['level']} level @param {string} code @param {string} text */
  _notice(level, code, text) {
    this._add({ type: 'notice', key: `n:${++this._seqKey}`, level, code, text });
  }

  /** @private @param {string | null | undefined} toolUseId @param {string} requestId */
  _gateTool(toolUseId, requestId) {
    const tool = toolUseId ? this.tool(toolUseId) : undefined;
    if (tool) this._replace({ ...tool, status: 'awaiting_approval', requestId });
  }

  /** @private */
  _finishStreaming() {
    for (const item of this._items) {
      if ((item.type === 'text' || item.type === 'thinking') && item.streaming) this._replace({ ...item, streaming: false });
      if (item.type === 'tool' && item.streaming) this._replace({ ...item, streaming: false });
    }
  }

  /**
   * @param {import('./protocol.js').AnthropicStreamEvent} raw
   * @param {string | null} parent
   * @private
   */
  _stream(raw, parent) {
    const lane = parent ?? '';
    const e = /** @type {any} */ (raw);
    switch (e.type) {
      case 'message_start':
        this._streams.set(lane, { messageId: String(e.message?.id ?? `m${++this._seqKey}`), blocks: new Map() });
        return;
      case 'content_block_start': {
        const stream = this._lane(lane);
        const block = e.content_block ?? {};
        const key = this._blockKey(stream, e.index, block);
        if (!key) return;
        stream.blocks.set(e.index, key);
        if (block.type === 'text') {
          this._add({ type: 'text', key, messageId: stream.messageId, text: String(block.text ?? ''), streaming: true, parentToolUseId: parent });
        } else if (block.type === 'thinking') {
          this._add({ type: 'thinking', key, messageId: stream.messageId, text: String(block.thinking ?? ''), streaming: true, parentToolUseId: parent });
        } else if (block.type === 'tool_use' || block.type === 'server_tool_use') {
          if (!this._index.has(key)) {
            this._add(this._newTool(String(block.id), String(block.name ?? 'tool'), null, parent, true));
          }
        }
        return;
      }
      case 'content_block_delta': {
        const d = e.delta ?? {};
        let key = this._lane(lane).blocks.get(e.index);
        if (!key && (d.type === 'text_delta' || d.type === 'thinking_delta')) {
          // A block that started before this client attached (after a snapshot, say): reuse the
          // snapshot's streaming text when there is one, else start an item here.
          const stream = this._lane(lane);
          const type = d.type === 'text_delta' ? 'text' : 'thinking';
          const resumed = stream.blocks.get(-1);
          key = resumed && this.get(resumed)?.type === type ? resumed : `t:${stream.messageId || 'late'}:${e.index}:${++this._seqKey}`;
          stream.blocks.delete(-1);
          stream.blocks.set(e.index, key);
          if (!this._index.has(key)) {
            this._add({ type, key, messageId: stream.messageId || null, text: '', streaming: true, parentToolUseId: parent });
          }
        }
        const item = key ? this.get(key) : undefined;
        if (!item) return;
        if (d.type === 'text_delta' && item.type === 'text' && !this._final.has(key ?? '')) {
          this._replace({ ...item, text: item.text + String(d.text ?? ''), streaming: true });
        } else if (d.type === 'thinking_delta' && item.type === 'thinking' && !this._final.has(key ?? '')) {
          this._replace({ ...item, text: item.text + String(d.thinking ?? ''), streaming: true });
        } else if (d.type === 'input_json_delta' && item.type === 'tool' && item.streaming) {
          this._replace({ ...item, inputText: item.inputText + String(d.partial_json ?? '') });
        }
        return;
      }
      case 'content_block_stop': {
        const key = this._lane(lane).blocks.get(e.index);
        const item = key ? this.get(key) : undefined;
        if (!item) return;
        if (item.type === 'text' || item.type === 'thinking') {
          if (item.streaming) this._replace({ ...item, streaming: false });
        } else if (item.type === 'tool' && item.streaming) {
          let input = item.input;
          try {
            const parsed = JSON.parse(item.inputText || '{}');
            if (isObject(parsed)) input = parsed;
          } catch {
            // keep the streamed text; the assistant_message brings the real input
          }
          this._replace({ ...item, input, streaming: false });
        }
        return;
      }
      default:
        return;
    }
  }

  /** @private @param {string} lane @returns {StreamBlocks} */
  _lane(lane) {
    let stream = this._streams.get(lane);
    if (!stream) this._streams.set(lane, (stream = { messageId: '', blocks: new Map() }));
    return stream;
  }

  /**
   * @param {StreamBlocks} stream
   * @param {number} index
   * @param {{ type?: unknown, id?: unknown }} block
   * @returns {string | null}
   * @private
   */
  _blockKey(stream, index, block) {
    if (block.type === 'tool_use' || block.type === 'server_tool_use') return `tool:${block.id}`;
    if (block.type === 'text' || block.type === 'thinking') return `t:${stream.messageId}:${index}`;
    return null;
  }

  /**
   * @param {string} id @param {string} name @param {JsonObject | null} input @param {string | null} parent @param {boolean} streaming
   * @returns {ToolItem}
   * @private
   */
  _newTool(id, name, input, parent, streaming) {
    return {
      type: 'tool', key: `tool:${id}`, toolUseId: id, name, input, inputText: input ? JSON.stringify(input) : '',
      streaming, status: 'pending', result: null, requestId: null, parentToolUseId: parent,
    };
  }

  /**
   * A complete assistant message (the CLI sends one per content block): final text and tool inputs.
   * @param {ContentBlock[]} content @param {string | null} messageId @param {string | null} parent
   * @private
   */
  _assistant(content, messageId, parent) {
    const lane = this._streams.get(parent ?? '');
    content.forEach((block, n) => {
      if (block.type === 'text' || block.type === 'thinking') {
        const type = block.type;
        const text = String((type === 'text' ? block.text : block.thinking) ?? '');
        // The streamed block this message completes: the first unfinished one of the same type.
        let key = null;
        if (lane && (!lane.messageId || lane.messageId === messageId || !messageId)) {
          for (const k of [...lane.blocks.entries()].sort((a, b) => a[0] - b[0]).map(([, k]) => k)) {
            const item = this.get(k);
            if (item && item.type === type && !this._final.has(k)) {
              key = k;
              break;
            }
          }
        }
        if (!key) key = `t:${messageId ?? `seq${++this._seqKey}`}:final${n}:${++this._seqKey}`;
        this._final.add(key);
        const item = this.get(key);
        this._replace({ type, key, messageId: messageId ?? (item && 'messageId' in item ? item.messageId : null), text, streaming: false, parentToolUseId: parent });
      } else if (block.type === 'tool_use' || block.type === 'server_tool_use') {
        const id = String(block.id);
        const input = isObject(block.input) ? block.input : {};
        const tool = this.tool(id);
        if (tool) {
          this._replace({
            ...tool, name: String(block.name ?? tool.name), input, inputText: JSON.stringify(input), streaming: false,
            status: tool.status === 'pending' ? 'running' : tool.status,
          });
        } else {
          this._add({ ...this._newTool(id, String(block.name ?? 'tool'), input, parent, false), status: 'running' });
        }
      }
    });
  }

  /** @private @param {string | ContentBlock[]} content @param {unknown} toolUseResult */
  _userMessage(content, toolUseResult) {
    if (typeof content === 'string') {
      if (content.startsWith(INTERRUPT_MARK)) this._notice('warning', 'interrupted', 'Interrupted');
      return;
    }
    const results = content.filter((b) => b.type === 'tool_result');
    for (const block of results) {
      const tool = this.tool(String(block.tool_use_id));
      /** @type {ContentBlock[]} */
      const blocks = typeof block.content === 'string' ? [{ type: 'text', text: block.content }] : Array.isArray(block.content) ? block.content : [];
      const isError = block.is_error === true;
      /** @type {ToolResult} */
      const result = { text: contentText(blocks), blocks, isError, data: results.length === 1 ? toolUseResult ?? null : null };
      if (tool) {
        /** @type {ToolStatus} */
        const status = tool.status === 'denied' || tool.status === 'cancelled' ? tool.status : isError ? 'error' : 'done';
        this._replace({ ...tool, status, result, streaming: false });
      }
    }
    if (!results.length && content.some((b) => b.type === 'text' && typeof b.text === 'string' && b.text.startsWith(INTERRUPT_MARK))) {
      this._notice('warning', 'interrupted', 'Interrupted');
    }
  }

  /** @private @param {import('./protocol.js').ResultEvent} event @param {{ seq?: number }} meta */
  _result(event, meta) {
    this._finishStreaming();
    const asked = this.get(`q:${event.query_id}`); // queued, and never started (or `turn_started` isn't in a snapshot)
    if (asked && asked.type === 'user' && asked.queued) this._replace({ ...asked, queued: false });
    for (const item of this._items) {
      if (item.type === 'tool' && (item.status === 'pending' || item.status === 'running' || item.status === 'awaiting_approval')) {
        this._replace({ ...item, status: 'cancelled' });
      }
    }
    const cost = typeof event.cost_usd === 'number' ? event.cost_usd : null;
    if (typeof event.total_cost_usd === 'number') this.totalCostUsd = event.total_cost_usd;
    // `aborted_*` terminal reasons mean interrupted; the `interrupted` state (not in snapshots) says so too.
    const interrupted = this._interrupted || /^aborted_/.test(event.terminal_reason ?? '');
    this._interrupted = false;
    /** @type {ResultItem} */
    const item = {
      type: 'result', key: `r:${event.query_id ?? `seq${meta.seq ?? ++this._seqKey}`}`, queryId: event.query_id,
      subtype: event.subtype, isError: event.is_error, interrupted, durationMs: event.duration_ms, durationApiMs: event.duration_api_ms,
      numTurns: event.num_turns, costUsd: cost, totalCostUsd: this.totalCostUsd, usage: event.usage ?? null,
      result: event.result ?? null, errors: event.errors ?? [],
      structuredOutput: event.structured_output ?? null, modelUsage: event.model_usage ?? null,
      contextPercent: contextPercent(this._requestUsage, event.model_usage),
    };
    this._add(item);
    this.lastResult = item;
    if (!GATEWAY_RESULTS.has(event.subtype)) this.turns += 1; // as the session counts them
    if (this.currentQueryId === event.query_id) this.currentQueryId = null;
    this._streams.clear();
  }
}

/**
 * Fold a list of event frames (or bodies) into a new ChatState.
 * @param {Iterable<EventFrame | SessionEvent>} events
 * @param {SessionInfo} [info]
 * @returns {ChatState}
 */
export function foldChat(events, info) {
  const chat = new ChatState();
  if (info) chat.setInfo(info);
  for (const e of events) {
    if ('kind' in e) chat.apply(e);
    else chat.applyFrame(e);
  }
  return chat;
}

/**
 * The answers object for `question_response` from the options a user picked.
 * @param {WireQuestion[]} questions
 * @param {Record<string, string | string[]>} picked question text (or index as a string) -> label(s)
 * @returns {Record<string, string | string[]>}
 */
export function buildAnswers(questions, picked) {
  /** @type {Record<string, string | string[]>} */
  const out = {};
  questions.forEach((q, i) => {
    const value = picked[q.question] ?? picked[String(i)];
    if (value !== undefined) out[q.question] = value;
  });
  return out;
}

/** @param {PendingRequest} request @returns {request is import('./protocol.js').QuestionEvent} */
export function isQuestion(request) {
  return request.kind === 'question';
}
