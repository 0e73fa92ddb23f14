// The chat page: everything goes through the JavaScript client in ./client/ (a symlink to
// clients/js/src, no build step). The session id is kept in localStorage, so a reload attaches
// to the same session and replays its history.

import { GatewayClient, renderMarkdown } from './client/index.js';

/** @typedef {import('./client/chat.js').ChatItem} ChatItem */

const STORE = { token: 'agent-gateway.token', session: 'agent-gateway.session' };
const $ = (/** @type {string} */ id) => /** @type {HTMLElement} */ (document.getElementById(id));
const ui = {
  timeline: $('timeline'), items: $('items'), sending: $('sending'), empty: $('empty'),
  prompt: /** @type {HTMLTextAreaElement} */ ($('prompt')), send: /** @type {HTMLButtonElement} */ ($('send')),
  stop: /** @type {HTMLButtonElement} */ ($('stop')), composer: /** @type {HTMLFormElement} */ ($('composer')),
  model: /** @type {HTMLSelectElement} */ ($('model-picker')), mode: /** @type {HTMLSelectElement} */ ($('mode-picker')),
  profile: /** @type {HTMLSelectElement} */ ($('profile-picker')), profileLabel: $('profile-label'),
  conn: $('conn'), connLabel: $('conn-label'), sessionMeta: $('session-meta'), newChat: $('new-chat'),
  banner: $('banner'), bannerText: $('banner-text'), bannerAction: /** @type {HTMLButtonElement} */ ($('banner-action')),
  agentState: $('agent-state'), totals: $('totals'), toasts: $('toasts'),
  tokenDialog: /** @type {HTMLDialogElement} */ ($('token-dialog')), tokenForm: $('token-form'),
  tokenInput: /** @type {HTMLInputElement} */ ($('token-input')), tokenError: $('token-error'),
};

/** Options a test (or a curious developer) can set in the query string. */
const params = new URLSearchParams(location.search);
const connectionOptions = {
  transport: /** @type {'auto' | 'websocket' | 'sse'} */ (params.get('transport') ?? 'auto'),
  fallback: params.has('retry_ws_ms') ? { retryWebSocketMs: Number(params.get('retry_ws_ms')) } : undefined,
  heartbeat: params.has('heartbeat_ms') ? { intervalMs: Number(params.get('heartbeat_ms')), timeoutMs: Number(params.get('heartbeat_ms')) } : undefined,
  reconnect: params.has('max_backoff_ms') ? { maxDelayMs: Number(params.get('max_backoff_ms')) } : undefined,
};

/** @type {GatewayClient | null} */ let client = null;
/** @type {import('./client/session.js').GatewaySession | null} */ let session = null;
/** @type {(() => void)[]} */ let unsubscribe = [];
/** key -> rendered element and the item it shows */
/** @type {Map<string, { item: ChatItem, el: HTMLElement }>} */ const nodes = new Map();
/** Prompts sent but not yet in the timeline: frame id -> bubble. @type {Map<string, HTMLElement>} */ const sending = new Map();
/** Requests with an answer on its way (buttons stay disabled). @type {Set<string>} */ const answering = new Set();
/** @type {Map<string, string>} profile name -> description */ let profileInfo = new Map();
/** @type {Promise<void> | null} */ let profilesLoaded = null;
let renderQueued = false;
let stickToBottom = true;

// ---- start ---------------------------------------------------------------------------------

/** Take `#token=` and `#session=` from the URL (into localStorage); true when there were any. */
function readHash() {
  const hash = new URLSearchParams(location.hash.slice(1));
  let changed = false;
  for (const [name, key] of /** @type {const} */ ([['token', STORE.token], ['session', STORE.session]])) {
    const value = hash.get(name);
    if (value) {
      localStorage.setItem(key, value);
      hash.delete(name);
      changed = true;
    }
  }
  if (changed) history.replaceState(null, '', location.pathname + location.search + (hash.toString() ? `#${hash}` : ''));
  return changed;
}

function start() {
  readHash();
  if (!localStorage.getItem(STORE.token)) return askForToken();
  if (ui.tokenDialog.open) ui.tokenDialog.close();
  session?.disconnect();
  client = new GatewayClient({ token: () => localStorage.getItem(STORE.token), ...connectionOptions });
  profilesLoaded = client.profiles().then(
    (profiles) => {
      profileInfo = new Map(profiles.map((p) => [p.name, p.description ?? '']));
      const names = [...profileInfo.keys()];
      ui.profile.replaceChildren(...names.map((n) => {
        const option = new Option(n, n);
        option.title = profileInfo.get(n) ?? '';
        return option;
      }));
      ui.profile.value = names.includes('default') ? 'default' : names[0] ?? 'default';
      ui.profileLabel.hidden = names.length < 2;
      renderMeta();
    },
    () => {}, // no profile list: open `default`
  );
  const saved = localStorage.getItem(STORE.session);
  if (saved) connect(saved);
  else profilesLoaded.then(() => connect(null));
}

/** The profile new chats use. */
function chosenProfile() {
  return ui.profile.value || 'default';
}

/** @param {string} [error] */
function askForToken(error) {
  ui.tokenError.hidden = !error;
  ui.tokenError.textContent = error ?? '';
  if (!ui.tokenDialog.open) ui.tokenDialog.showModal();
  ui.tokenInput.focus();
}

// A link with #token= or #session= followed while the page is open.
window.addEventListener('hashchange', () => {
  if (readHash()) start();
});

ui.tokenForm.addEventListener('submit', () => {
  const token = ui.tokenInput.value.trim();
  if (!token) return;
  localStorage.setItem(STORE.token, token);
  ui.tokenInput.value = '';
  start();
});

/** Attach to `sessionId`, or open a new session. @param {string | null} sessionId */
function connect(sessionId) {
  if (!client) return;
  for (const off of unsubscribe) off();
  unsubscribe = [];
  nodes.clear();
  ui.items.replaceChildren();
  ui.sending.replaceChildren();
  sending.clear();
  answering.clear();
  hideBanner();
  const s = client.session(sessionId ? { sessionId } : { open: { profile: chosenProfile() } });
  session = s;
  unsubscribe.push(
    s.on('connectionstate', (change) => renderConnection(change)),
    s.on('chat', () => scheduleRender()),
    s.on('attached', () => rememberSession()),
    s.on('reset', () => rememberSession()),
    s.on('error', (err) => toast(err.message)),
    s.on('closed', (info) => onClosed(info)),
  );
  /** @type {any} */ (window).agw = { client, session: s, get chat() { return s.chat; } };
  s.connect().catch(() => {}); // failures arrive as `closed`
  scheduleRender();
}

function rememberSession() {
  if (session?.id) localStorage.setItem(STORE.session, session.id);
  renderMeta();
  scheduleRender();
}

/** @param {{ code: string, message: string }} info */
function onClosed(info) {
  if (info.code === 'unauthorized') {
    localStorage.removeItem(STORE.token);
    askForToken('The gateway refused this token.');
  } else if (info.code === 'session_not_found') {
    localStorage.removeItem(STORE.session);
    toast('That session no longer exists; started a new chat.');
    connect(null);
  } else if (info.code === 'session_closed') {
    showBanner('This session has ended.', 'error', 'New chat', () => newChat());
  } else if (info.code !== 'disconnected' && info.code !== 'closed_by_client') {
    showBanner(`Disconnected: ${info.message}`, 'error', 'New chat', () => newChat());
  }
  scheduleRender();
}

async function newChat() {
  const old = session;
  localStorage.removeItem(STORE.session);
  if (old && old.connectionState !== 'closed') {
    // Close it so it doesn't count against this user's session limit; don't wait long if offline.
    await Promise.race([old.close().catch(() => {}), new Promise((r) => setTimeout(r, 3000))]);
    old.disconnect();
  }
  connect(null);
  ui.prompt.focus();
}

// ---- connection indicator and banner -------------------------------------------------------

/** @param {import('./client/session.js').ConnectionStateChange} change */
function renderConnection(change) {
  const { state, reason, retryInMs } = change;
  const offline = reason === 'offline' || navigator.onLine === false;
  const labels = {
    idle: 'Not connected', connecting: 'Connecting…', open: 'Live', fallback: 'Live · HTTP',
    reconnecting: offline ? 'Offline' : 'Reconnecting…', closed: 'Disconnected',
  };
  ui.conn.dataset.state = state;
  ui.connLabel.textContent = labels[state];
  ui.conn.title = state === 'fallback'
    ? 'WebSockets are unavailable: events stream over HTTP (SSE). WebSocket is retried in the background.'
    : state === 'open' ? 'Connected over WebSocket' : reason ?? '';
  if (state === 'reconnecting') {
    const when = retryInMs && retryInMs >= 1000 ? ` Retrying in ${Math.round(retryInMs / 1000)} s.` : '';
    showBanner(offline ? 'You are offline. Messages you send now go out when the connection is back.' : `Connection lost; reconnecting.${when}`, 'warn');
  } else if (state === 'open' || state === 'fallback') {
    hideBanner();
  }
  scheduleRender();
}

/**
 * @param {string} text
 * @param {'warn' | 'error' | 'info'} level
 * @param {string} [action]
 * @param {() => void} [onAction]
 */
function showBanner(text, level, action, onAction) {
  ui.banner.hidden = false;
  ui.banner.dataset.level = level;
  ui.bannerText.textContent = text;
  ui.bannerAction.hidden = !action;
  ui.bannerAction.textContent = action ?? '';
  ui.bannerAction.onclick = onAction ?? null;
}

function hideBanner() {
  ui.banner.hidden = true;
}

/** @param {string} text */
function toast(text) {
  const el = document.createElement('div');
  el.className = 'toast';
  el.textContent = text;
  ui.toasts.append(el);
  setTimeout(() => el.remove(), 6000);
}

// ---- rendering ---------------------------------------------------------------------------

function scheduleRender() {
  if (renderQueued) return;
  renderQueued = true;
  requestAnimationFrame(() => {
    renderQueued = false;
    render();
  });
}

ui.timeline.addEventListener('scroll', () => {
  const { scrollTop, scrollHeight, clientHeight } = ui.timeline;
  stickToBottom = scrollHeight - scrollTop - clientHeight < 80;
});

function render() {
  const chat = session?.chat;
  if (!session || !chat) return;
  const items = chat.items.filter(visible);
  /** @type {Set<string>} */
  const seen = new Set();
  /** @type {Element | null} */
  let previous = null;
  for (const item of items) {
    seen.add(item.key);
    let node = nodes.get(item.key);
    if (!node) {
      node = { item, el: create(item) };
      node.el.dataset.key = item.key;
      nodes.set(item.key, node);
      update(node.el, item);
    } else if (node.item !== item) {
      node.item = item;
      update(node.el, item);
    }
    const el = node.el;
    const expected = previous ? previous.nextElementSibling : ui.items.firstElementChild;
    if (expected !== el) {
      if (previous) previous.after(el);
      else ui.items.prepend(el);
    }
    previous = el;
  }
  for (const [key, node] of nodes) {
    if (!seen.has(key)) {
      node.el.remove();
      nodes.delete(key);
    }
  }
  for (const [id, el] of sending) {
    if (chat.get(`q:${id}`)) {
      el.remove();
      sending.delete(id);
    }
  }
  ui.empty.hidden = items.length > 0 || sending.size > 0;
  renderControls();
  if (stickToBottom) ui.timeline.scrollTop = ui.timeline.scrollHeight;
}

/** @param {ChatItem} item */
function visible(item) {
  if (item.type === 'tool' && item.name === 'AskUserQuestion') return false; // the question card shows it
  if ((item.type === 'text' || item.type === 'thinking') && !item.text.trim() && !item.streaming) return false;
  if (item.type === 'notice' && item.code === 'interrupted') return false; // the turn's result line says so
  return true;
}

function renderControls() {
  const chat = session?.chat;
  if (!session || !chat) return;
  const attached = session.connectionState === 'open' || session.connectionState === 'fallback';
  ui.stop.hidden = !chat.busy;
  ui.stop.disabled = chat.sessionState === 'interrupted';
  ui.send.disabled = !ui.prompt.value.trim() || session.connectionState === 'closed';
  fillSelect(ui.model, chat.allowedModels ?? (chat.model ? [chat.model] : []), chat.model);
  fillSelect(ui.mode, chat.allowedModes, chat.permissionMode);
  ui.model.disabled = !attached || (chat.allowedModels?.length ?? 0) < 2;
  ui.mode.disabled = !attached || chat.allowedModes.length < 2;
  const states = {
    starting: 'Starting the agent…', idle: 'Ready', running: 'Working…', awaiting_approval: 'Waiting for you',
    interrupted: 'Stopping…', closed: 'Session closed', failed: 'The agent failed to start; send again to retry',
  };
  ui.agentState.textContent = chat.sessionState ? states[chat.sessionState] : '';
  ui.agentState.dataset.state = chat.sessionState ?? '';
  const turns = `${chat.turns} turn${chat.turns === 1 ? '' : 's'}`;
  ui.totals.textContent = chat.turns ? `${turns} · ${money(chat.totalCostUsd)} total` : '';
  renderMeta();
}

function renderMeta() {
  const chat = session?.chat;
  if (!session?.id) {
    ui.sessionMeta.textContent = session?.connectionState === 'connecting' ? 'opening a session…' : 'no session';
    return;
  }
  const profile = chat?.profile ?? '';
  ui.sessionMeta.textContent = `${session.id}${profile ? ` · ${profile}` : ''}`;
  ui.sessionMeta.title = profileInfo.get(profile) ?? '';
}

/** @param {HTMLSelectElement} select @param {string[]} values @param {string | null} current */
function fillSelect(select, values, current) {
  const all = current && !values.includes(current) ? [current, ...values] : values;
  const signature = all.join('\n');
  if (select.dataset.values !== signature) {
    select.replaceChildren(...all.map((v) => new Option(v, v)));
    select.dataset.values = signature;
  }
  if (current && select.value !== current && document.activeElement !== select) select.value = current;
}

// ---- items -------------------------------------------------------------------------------

/**
 * @param {string} tag
 * @param {string} [className]
 * @param {string} [text]
 * @returns {HTMLElement}
 */
function h(tag, className, text) {
  const el = document.createElement(tag);
  if (className) el.className = className;
  if (text !== undefined) el.textContent = text;
  return el;
}

/** @param {HTMLElement} root @param {string} selector */
function q(root, selector) {
  return /** @type {HTMLElement} */ (root.querySelector(selector));
}

/** @param {ChatItem} item @returns {HTMLElement} */
function create(item) {
  switch (item.type) {
    case 'user': {
      const el = h('div', 'msg-user');
      const bubble = h('div', 'bubble');
      bubble.append(h('span', 'text'), h('span', 'badge'));
      el.append(bubble);
      return el;
    }
    case 'text': {
      const el = h('div', 'msg-assistant');
      el.append(h('div', 'md'));
      return el;
    }
    case 'thinking': {
      const el = h('details', 'thinking');
      el.append(h('summary'), h('div', 'md'));
      return el;
    }
    case 'tool': {
      const el = h('details', 'tool');
      const summary = h('summary');
      summary.append(h('span', 'tool-icon'), h('span', 'tool-name'), h('span', 'tool-brief'), h('span', 'badge'));
      const body = h('div', 'tool-body');
      body.append(h('div', 'label', 'Input'), h('pre', 'tool-input'), h('div', 'label result-label', 'Result'), h('pre', 'tool-result'));
      el.append(summary, body);
      return el;
    }
    case 'approval':
      return createApproval(item);
    case 'question':
      return createQuestion(item);
    case 'result':
      return h('div', 'result');
    case 'notice':
    default:
      return h('div', 'notice');
  }
}

/** @param {HTMLElement} el @param {ChatItem} item */
function update(el, item) {
  switch (item.type) {
    case 'user': {
      q(el, '.text').textContent = item.text || '(attachment)';
      const badge = q(el, '.badge');
      badge.hidden = !item.queued;
      badge.textContent = 'queued';
      return;
    }
    case 'text':
      q(el, '.md').innerHTML = renderMarkdown(item.text);
      el.classList.toggle('streaming', item.streaming);
      el.classList.toggle('sub', Boolean(item.parentToolUseId));
      return;
    case 'thinking':
      q(el, 'summary').textContent = item.streaming ? 'Thinking…' : 'Thought process';
      q(el, '.md').innerHTML = renderMarkdown(item.text);
      el.classList.toggle('sub', Boolean(item.parentToolUseId));
      return;
    case 'tool':
      return updateTool(el, item);
    case 'approval':
      return updateApproval(el, item);
    case 'question':
      return updateQuestion(el, item);
    case 'result':
      return updateResult(el, item);
    case 'notice':
      el.textContent = item.text;
      el.dataset.level = item.level;
      el.dataset.code = item.code;
      return;
  }
}

/** A one-line summary of a tool's input. @param {string} name @param {Record<string, unknown> | null} input */
function toolBrief(name, input) {
  if (!input) return '';
  const keys = name === 'Bash' ? ['command'] : ['file_path', 'path', 'pattern', 'url', 'query', 'command', 'description', 'prompt'];
  for (const k of keys) if (typeof input[k] === 'string') return /** @type {string} */ (input[k]);
  const first = Object.values(input).find((v) => typeof v === 'string');
  return typeof first === 'string' ? first : '';
}

const STATUS_TEXT = {
  pending: 'preparing', awaiting_approval: 'needs approval', running: 'running', done: 'done', error: 'error',
  denied: 'denied', cancelled: 'cancelled', allowed: 'allowed', answered: 'answered', expired: 'expired',
};

/** @param {HTMLElement} el @param {import('./client/chat.js').ToolItem} item */
function updateTool(el, item) {
  el.classList.toggle('sub', Boolean(item.parentToolUseId));
  el.dataset.status = item.status;
  q(el, '.tool-icon').textContent = item.name.slice(0, 2);
  q(el, '.tool-name').textContent = item.name;
  q(el, '.tool-brief').textContent = toolBrief(item.name, item.input) || (item.streaming ? item.inputText : '');
  const badge = q(el, '.badge');
  badge.dataset.status = item.status;
  badge.textContent = STATUS_TEXT[item.status];
  q(el, '.tool-input').textContent = item.input ? JSON.stringify(item.input, null, 2) : item.inputText;
  const result = q(el, '.tool-result');
  const hasResult = Boolean(item.result);
  q(el, '.result-label').hidden = !hasResult;
  result.hidden = !hasResult;
  if (item.result) {
    result.textContent = item.result.text || '(no output)';
    result.classList.toggle('error', item.result.isError);
  }
}

/** @param {import('./client/chat.js').ApprovalItem} item */
function createApproval(item) {
  const el = h('div', 'card approval');
  const head = h('div', 'card-head');
  head.append(h('span', 'card-icon', '!'), h('div', 'card-title'), h('span', 'badge'));
  const desc = h('div', 'card-desc');
  const input = h('pre', 'approval-input');
  const edit = /** @type {HTMLTextAreaElement} */ (h('textarea', 'approval-edit'));
  edit.hidden = true;
  edit.spellcheck = false;
  edit.setAttribute('aria-label', 'Tool input (JSON)');
  const error = h('p', 'error');
  error.hidden = true;
  const actions = h('div', 'card-actions');
  const allow = h('button', 'btn btn-ok allow', 'Allow');
  const always = h('button', 'btn always', 'Always allow');
  const deny = h('button', 'btn btn-danger deny', 'Deny');
  const editToggle = h('button', 'btn btn-ghost edit-toggle', 'Edit input');
  for (const b of [allow, always, deny, editToggle]) b.setAttribute('type', 'button');
  actions.append(allow, always, deny, h('span', 'spacer'), editToggle, h('span', 'expires'));
  const resolution = h('div', 'resolution');
  el.append(head, desc, input, edit, error, actions, resolution);

  const requestId = item.requestId;
  /** @param {() => Promise<unknown>} act */
  const answer = async (act) => {
    answering.add(requestId);
    scheduleRender();
    setDisabled(el, true);
    try {
      await act();
    } catch (err) {
      toast(/** @type {Error} */ (err).message);
    } finally {
      answering.delete(requestId);
      setDisabled(el, false);
      scheduleRender();
    }
  };
  allow.addEventListener('click', () => {
    if (!edit.hidden) {
      let updated;
      try {
        updated = JSON.parse(edit.value);
        if (typeof updated !== 'object' || updated === null || Array.isArray(updated)) throw new Error('the input must be a JSON object');
      } catch (err) {
        error.hidden = false;
        error.textContent = `Not valid JSON: ${/** @type {Error} */ (err).message}`;
        return;
      }
      error.hidden = true;
      answer(() => /** @type {NonNullable<typeof session>} */ (session).allow(requestId, { updatedInput: updated }));
    } else {
      answer(() => /** @type {NonNullable<typeof session>} */ (session).allow(requestId));
    }
  });
  always.addEventListener('click', () => {
    const current = /** @type {import('./client/chat.js').ApprovalItem} */ (nodes.get(item.key)?.item ?? item);
    answer(() => /** @type {NonNullable<typeof session>} */ (session).allow(requestId, { applySuggestions: current.suggestions.map((_, i) => i) }));
  });
  deny.addEventListener('click', () => answer(() => /** @type {NonNullable<typeof session>} */ (session).deny(requestId, { message: 'The user denied this.' })));
  editToggle.addEventListener('click', () => {
    const current = /** @type {import('./client/chat.js').ApprovalItem} */ (nodes.get(item.key)?.item ?? item);
    const editing = edit.hidden;
    edit.hidden = !editing;
    input.hidden = editing;
    error.hidden = true;
    if (editing) {
      edit.value = JSON.stringify(current.input, null, 2);
      edit.focus();
    }
    editToggle.textContent = editing ? 'Cancel edit' : 'Edit input';
    allow.textContent = editing ? 'Allow with changes' : 'Allow';
  });
  return el;
}

/** @param {HTMLElement} el @param {boolean} disabled */
function setDisabled(el, disabled) {
  for (const b of el.querySelectorAll('button, textarea, input')) /** @type {HTMLButtonElement} */ (b).disabled = disabled;
}

/** @param {HTMLElement} el @param {import('./client/chat.js').ApprovalItem} item */
function updateApproval(el, item) {
  const pending = item.status === 'pending';
  el.classList.toggle('pending', pending);
  const name = item.displayName || item.toolName;
  q(el, '.card-title').textContent = pending ? `Allow ${name}?` : `${name}`;
  const badge = q(el, '.badge');
  badge.dataset.status = item.status;
  badge.textContent = pending ? 'waiting for you' : STATUS_TEXT[item.status];
  const desc = q(el, '.card-desc');
  desc.textContent = [item.title, item.description ?? (typeof item.input.description === 'string' ? item.input.description : null), item.decisionReason]
    .filter(Boolean).join(' · ');
  desc.hidden = !desc.textContent;
  const input = q(el, '.approval-input');
  const shown = item.updatedInput ?? item.input;
  input.textContent = item.toolName === 'Bash' && typeof shown.command === 'string' ? `$ ${shown.command}` : JSON.stringify(shown, null, 2);
  q(el, '.card-actions').hidden = !pending;
  q(el, '.always').hidden = !item.suggestions.length;
  if (!pending) {
    q(el, '.approval-edit').hidden = true;
    input.hidden = false;
  }
  q(el, '.expires').textContent = pending ? `answer by ${new Date(item.expiresAt).toLocaleTimeString()}` : '';
  const resolution = q(el, '.resolution');
  resolution.hidden = pending;
  if (!pending) resolution.textContent = resolutionText(item.status, item.resolvedBy, item.message, Boolean(item.updatedInput));
}

/**
 * @param {string} status
 * @param {{ principal: string, connection?: string | null } | null} by
 * @param {string | null} message
 * @param {boolean} edited
 */
function resolutionText(status, by, message, edited) {
  const who = by ? ` by ${by.principal}` : '';
  switch (status) {
    case 'allowed': return `Allowed${edited ? ' with edited input' : ''}${who}.`;
    case 'denied': return `Denied${who}${message ? `: ${message}` : '.'}`;
    case 'answered': return `Answered${who}.`;
    case 'expired': return 'Expired: nobody answered in time.';
    case 'cancelled': return 'Cancelled: the turn ended before an answer.';
    default: return status;
  }
}

/** @param {import('./client/chat.js').QuestionCardItem} item */
function createQuestion(item) {
  const el = h('div', 'card question');
  const head = h('div', 'card-head');
  head.append(h('span', 'card-icon', '?'), h('div', 'card-title', 'The agent asks'), h('span', 'badge'));
  el.append(head);
  /** @type {Record<string, string[]>} */
  const picked = {};
  /** @type {Record<string, string>} */
  const other = {};
  const requestId = item.requestId;
  const single = item.questions.length === 1 && !item.questions[0].multiSelect;
  const submit = /** @type {HTMLButtonElement} */ (h('button', 'btn btn-primary submit', 'Send answers'));
  submit.type = 'button';
  const send = async () => {
    /** @type {Record<string, string | string[]>} */
    const answers = {};
    for (const question of item.questions) {
      const text = other[question.question]?.trim();
      const labels = picked[question.question] ?? [];
      if (text) answers[question.question] = question.multiSelect ? [...labels, text] : text;
      else if (labels.length) answers[question.question] = question.multiSelect ? labels : labels[0];
    }
    answering.add(requestId);
    setDisabled(el, true);
    try {
      await /** @type {NonNullable<typeof session>} */ (session).answer(requestId, answers);
    } catch (err) {
      toast(/** @type {Error} */ (err).message);
      setDisabled(el, false);
    } finally {
      answering.delete(requestId);
      scheduleRender();
    }
  };
  const ready = () => item.questions.every((qq) => (picked[qq.question]?.length ?? 0) > 0 || Boolean(other[qq.question]?.trim()));
  item.questions.forEach((question) => {
    const block = h('div', 'q-block');
    if (question.header) block.append(h('div', 'card-desc', String(question.header)));
    block.append(h('div', 'q-text', question.question));
    const options = h('div', 'options');
    for (const option of question.options ?? []) {
      const button = h('button', 'option');
      button.setAttribute('type', 'button');
      button.setAttribute('aria-pressed', 'false');
      button.dataset.label = option.label;
      button.append(h('b', '', option.label));
      if (option.description) button.append(h('span', '', String(option.description)));
      button.addEventListener('click', () => {
        const list = picked[question.question] ?? [];
        if (question.multiSelect) {
          picked[question.question] = list.includes(option.label) ? list.filter((l) => l !== option.label) : [...list, option.label];
        } else {
          picked[question.question] = [option.label];
          other[question.question] = '';
        }
        for (const b of options.querySelectorAll('.option')) {
          b.setAttribute('aria-pressed', String((picked[question.question] ?? []).includes(/** @type {HTMLElement} */ (b).dataset.label ?? '')));
        }
        if (single) send();
        else submit.disabled = !ready();
      });
      options.append(button);
    }
    const otherRow = h('div', 'other');
    const input = /** @type {HTMLInputElement} */ (h('input'));
    input.placeholder = 'Or type an answer…';
    input.addEventListener('input', () => {
      other[question.question] = input.value;
      submit.disabled = !ready();
    });
    input.addEventListener('keydown', (ev) => {
      if (ev.key === 'Enter' && ready()) send();
    });
    otherRow.append(input);
    block.append(options, otherRow);
    el.append(block);
  });
  const actions = h('div', 'card-actions');
  const skip = h('button', 'btn btn-ghost skip', 'Skip question');
  skip.setAttribute('type', 'button');
  skip.addEventListener('click', async () => {
    setDisabled(el, true);
    try {
      await /** @type {NonNullable<typeof session>} */ (session).deny(requestId, { message: 'The user skipped the question.' });
    } catch (err) {
      toast(/** @type {Error} */ (err).message);
      setDisabled(el, false);
    }
  });
  submit.disabled = true;
  if (single) submit.hidden = true;
  actions.append(submit, skip, h('span', 'spacer'), h('span', 'expires'));
  el.append(actions, h('div', 'resolution'));
  return el;
}

/** @param {HTMLElement} el @param {import('./client/chat.js').QuestionCardItem} item */
function updateQuestion(el, item) {
  const pending = item.status === 'pending';
  el.classList.toggle('pending', pending);
  const badge = q(el, '.badge');
  badge.dataset.status = item.status;
  badge.textContent = pending ? 'waiting for you' : STATUS_TEXT[item.status];
  q(el, '.card-actions').hidden = !pending;
  for (const row of el.querySelectorAll('.other')) /** @type {HTMLElement} */ (row).hidden = !pending;
  if (!pending) {
    for (const b of el.querySelectorAll('.option')) {
      const button = /** @type {HTMLButtonElement} */ (b);
      button.disabled = true;
      const chosen = Object.values(item.answers ?? {}).flat().some((a) => a === button.dataset.label);
      button.setAttribute('aria-pressed', String(chosen));
    }
  }
  q(el, '.expires').textContent = pending ? `answer by ${new Date(item.expiresAt).toLocaleTimeString()}` : '';
  const resolution = q(el, '.resolution');
  resolution.hidden = pending;
  if (!pending) {
    const answers = Object.entries(item.answers ?? {}).map(([question, a]) => `${question} → ${Array.isArray(a) ? a.join(', ') : a}`).join('; ');
    resolution.textContent = resolutionText(item.status, item.resolvedBy, item.message, false) + (answers ? ` ${answers}` : '');
  }
}

/** @param {HTMLElement} el @param {import('./client/chat.js').ResultItem} item */
function updateResult(el, item) {
  const usage = /** @type {Record<string, number> | null} */ (item.usage);
  const input = usage ? (usage.input_tokens ?? 0) + (usage.cache_read_input_tokens ?? 0) + (usage.cache_creation_input_tokens ?? 0) : null;
  const output = usage ? usage.output_tokens ?? 0 : null;
  const status = item.interrupted ? ['bad', 'Interrupted']
    : item.subtype === 'cancelled' ? ['bad', 'Cancelled']
    : item.isError ? ['bad', `Error: ${item.subtype.replace(/_/g, ' ')}`] : ['ok', 'Done'];
  const parts = [
    `<span class="${status[0]}">${status[0] === 'ok' ? '✓' : '✕'} ${escapeText(status[1])}</span>`,
    `<span title="wall time (API time ${seconds(item.durationApiMs)})">${seconds(item.durationMs)}</span>`,
  ];
  if (item.costUsd !== null) parts.push(`<span class="cost" title="cost of this turn; session total ${money(item.totalCostUsd)}">${money(item.costUsd)}</span>`);
  if (input || output) parts.push(`<span class="usage" title="tokens in / out">${tokens(input ?? 0)} in · ${tokens(output ?? 0)} out</span>`);
  if (item.numTurns > 1) parts.push(`<span>${item.numTurns} model calls</span>`);
  el.innerHTML = parts.join('<span class="sep">·</span>');
  el.dataset.status = status[0];
  // The CLI's diagnostics for an interrupted turn are noise; real errors are worth showing.
  if (!item.interrupted) for (const message of item.errors) el.append(h('span', 'errors', message));
}

/** @param {string} s */
function escapeText(s) {
  const d = document.createElement('span');
  d.textContent = s;
  return d.innerHTML;
}
/** @param {number} ms */
function seconds(ms) {
  return ms < 1000 ? `${ms} ms` : `${(ms / 1000).toFixed(ms < 10000 ? 1 : 0)} s`;
}
/** @param {number} usd */
function money(usd) {
  return usd < 0.01 ? `$${usd.toFixed(4)}` : `$${usd.toFixed(usd < 1 ? 3 : 2)}`;
}
/** @param {number} n */
function tokens(n) {
  return n >= 1000 ? `${(n / 1000).toFixed(n >= 10000 ? 0 : 1)}k` : String(n);
}

// ---- composer ----------------------------------------------------------------------------

function autosize() {
  ui.prompt.style.height = 'auto';
  ui.prompt.style.height = `${Math.min(ui.prompt.scrollHeight, 220)}px`;
}

ui.prompt.addEventListener('input', () => {
  autosize();
  renderControls();
});
ui.prompt.addEventListener('keydown', (ev) => {
  if (ev.key === 'Enter' && !ev.shiftKey && !ev.isComposing) {
    ev.preventDefault();
    ui.composer.requestSubmit();
  }
});
ui.composer.addEventListener('submit', (ev) => {
  ev.preventDefault();
  const text = ui.prompt.value.trim();
  if (text) sendPrompt(text);
});
ui.stop.addEventListener('click', async () => {
  ui.stop.disabled = true;
  try {
    await session?.interrupt();
  } catch (err) {
    toast(/** @type {Error} */ (err).message);
  }
  scheduleRender();
});
for (const button of document.querySelectorAll('.suggestion')) {
  button.addEventListener('click', () => sendPrompt(/** @type {HTMLElement} */ (button).dataset.prompt ?? ''));
}
ui.newChat.addEventListener('click', () => newChat());
ui.model.addEventListener('change', async () => {
  try {
    await session?.setModel(ui.model.value);
  } catch (err) {
    toast(/** @type {Error} */ (err).message);
  }
  scheduleRender();
});
ui.mode.addEventListener('change', async () => {
  try {
    await session?.setPermissionMode(/** @type {import('./client/protocol.js').PermissionMode} */ (ui.mode.value));
  } catch (err) {
    toast(/** @type {Error} */ (err).message);
  }
  scheduleRender();
});

/** @param {string} text */
async function sendPrompt(text) {
  if (!session || session.connectionState === 'closed') return;
  const id = `q_${Date.now().toString(36)}${Math.random().toString(36).slice(2, 8)}`;
  const ghost = h('div', 'msg-user pending');
  ghost.append(h('div', 'bubble', text));
  ui.sending.append(ghost);
  sending.set(id, ghost);
  ui.prompt.value = '';
  autosize();
  stickToBottom = true;
  scheduleRender();
  try {
    await session.query(text, { id });
  } catch (err) {
    ghost.remove();
    sending.delete(id);
    if (!ui.prompt.value) ui.prompt.value = text;
    toast(`Not sent: ${/** @type {Error} */ (err).message}`);
    scheduleRender();
  }
}

start();
