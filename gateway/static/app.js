// The chat page: everything goes through the JavaScript client in ./client/ (a symlink to
// clients/js/src, no build step). Sessions the page has shown are remembered in localStorage
// (title, last items), so a chat whose session is gone stays readable, and the open one is
// re-attached on reload. One session is attached at a time; the others keep running.

import { GatewayClient, contentText, renderMarkdown } from './client/index.js';
import hljs from './vendor/highlight.js/highlight.min.js';
import { ContextMeter, isCompact } from './context.js';
import { announce, button, h, q, toast } from './dom.js';
import { TaskList } from './tasks.js';

/** @typedef {import('./client/chat.js').ChatItem} ChatItem */
/** @typedef {import('./client/protocol.js').SessionInfo} SessionInfo */
/**
 * What the page remembers of a chat.
 * @typedef {object} ChatRecord
 * @property {string} [title] a title the user gave
 * @property {string} [firstPrompt]
 * @property {number} lastActivity unix ms
 * @property {ChatItem[]} [items] the chat as last shown
 * @property {boolean} [ended] its session is gone
 * @property {boolean} [deleted] the user deleted it (the gateway may still list it while retained)
 */

const STORE = { token: 'agent-gateway.token', session: 'agent-gateway.session', chats: 'agent-gateway.chats' };
const KEPT_ITEMS = 300;
const $ = (/** @type {string} */ id) => /** @type {HTMLElement} */ (document.getElementById(id));
const ui = {
  timeline: $('timeline'), items: $('items'), sending: $('sending'), empty: $('empty'), working: $('working'), workingText: $('working-text'),
  prompt: /** @type {HTMLTextAreaElement} */ ($('prompt')), send: /** @type {HTMLButtonElement} */ ($('send')),
  stop: /** @type {HTMLButtonElement} */ ($('stop')), composer: /** @type {HTMLFormElement} */ ($('composer')),
  model: /** @type {HTMLSelectElement} */ ($('model-picker')), mode: /** @type {HTMLSelectElement} */ ($('mode-picker')),
  profile: /** @type {HTMLSelectElement} */ ($('profile-picker')), profileLabel: $('profile-label'),
  conn: $('conn'), connLabel: $('conn-label'), sessionMeta: $('session-meta'), chatTitle: $('chat-title'), newChat: $('new-chat'),
  demoBadge: $('demo-badge'), demoHint: $('demo-hint'),
  sidebar: $('sidebar'), scrim: $('scrim'), chatsToggle: $('chats-toggle'), drawerClose: $('drawer-close'), chatList: $('chat-list'),
  banner: $('banner'), bannerText: $('banner-text'), bannerAction: /** @type {HTMLButtonElement} */ ($('banner-action')),
  agentState: $('agent-state'), totals: $('totals'),
  tokenDialog: /** @type {HTMLDialogElement} */ ($('token-dialog')), tokenForm: $('token-form'),
  tokenInput: /** @type {HTMLInputElement} */ ($('token-input')), tokenError: $('token-error'),
  confirmDialog: /** @type {HTMLDialogElement} */ ($('confirm-dialog')), confirmText: $('confirm-text'),
  confirmTitle: $('confirm-title'), confirmOk: $('confirm-ok'),
};

/** Options a test (or a curious developer) can set in the query string. */
const params = new URLSearchParams(location.search);
const connectionOptions = {
  transport: /** @type {'auto' | 'websocket' | 'sse'} */ (params.get('transport') ?? 'auto'),
  fallback: params.has('retry_ws_ms') ? { retryWebSocketMs: Number(params.get('retry_ws_ms')) } : undefined,
  heartbeat: params.has('heartbeat_ms') ? { intervalMs: Number(params.get('heartbeat_ms')), timeoutMs: Number(params.get('heartbeat_ms')) } : undefined,
  reconnect: params.has('max_backoff_ms') ? { maxDelayMs: Number(params.get('max_backoff_ms')) } : undefined,
};
const LIST_REFRESH_MS = Number(params.get('list_refresh_ms') ?? 15000);

/** @type {GatewayClient | null} */ let client = null;
/** @type {import('./client/session.js').GatewaySession | null} */ let session = null;
/** The ended chat on screen (no session attached), if any. @type {string | null} */ let endedId = null;
/** @type {(() => void)[]} */ let unsubscribe = [];
/** key -> rendered element and the item it shows */
/** @type {Map<string, { item: ChatItem, el: HTMLElement }>} */ const nodes = new Map();
/** Prompts sent but not yet in the timeline: frame id -> bubble. @type {Map<string, HTMLElement>} */ const sending = new Map();
/** Requests with an answer on its way (buttons stay disabled). @type {Set<string>} */ const answering = new Set();
/** Items already announced to screen readers (or there before the page looked). @type {Set<string>} */ const announced = new Set();
/** @type {Map<string, import('./client/protocol.js').Profile>} the operator's profiles, by name */ let profileInfo = new Map();
/** @type {Promise<void> | null} */ let profilesLoaded = null;
/** The gateway's sessions, from the last `GET /v1/sessions`. @type {SessionInfo[]} */ let listed = [];
const meter = new ContextMeter(() => scheduleRender());
const taskList = new TaskList();
let demo = false;
let renderQueued = false;
let stickToBottom = true;
let firstRender = true;
/** @type {ReturnType<typeof setTimeout> | null} */ let saveTimer = null;
/** @type {ReturnType<typeof setInterval> | null} */ let listTimer = null;

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
  client.health().then((health) => {
    demo = health.demo;
    ui.demoBadge.hidden = !demo;
    ui.demoHint.hidden = !demo;
    for (const { item, el } of nodes.values()) if (item.type === 'result') update(el, item);
    scheduleRender();
  }, () => {});
  profilesLoaded = client.profiles().then(
    (profiles) => {
      profileInfo = new Map(profiles.map((p) => [p.name, p]));
      const names = [...profileInfo.keys()];
      ui.profile.replaceChildren(...names.map((n) => {
        const option = new Option(n, n);
        option.title = profileInfo.get(n)?.description ?? '';
        return option;
      }));
      ui.profile.value = names.includes('default') ? 'default' : names[0] ?? 'default';
      ui.profileLabel.hidden = names.length < 2;
      renderMeta();
      scheduleRender(); // what the chat's profile allows (rewinding files) may show now
    },
    () => {}, // no profile list: open `default`
  );
  if (listTimer) clearInterval(listTimer);
  listTimer = setInterval(() => refreshList(), LIST_REFRESH_MS);
  refreshList();
  const saved = localStorage.getItem(STORE.session);
  if (saved) show(saved);
  else profilesLoaded.then(() => connect(null));
  ui.prompt.focus();
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

// ---- what the page remembers of each chat ---------------------------------------------------

/** Chats are remembered per token: another principal in this browser has other sessions. */
function chatsKey() {
  let hash = 0x811c9dc5; // FNV-1a: a short, stable name, not a secret
  for (const c of localStorage.getItem(STORE.token) ?? '') hash = Math.imul(hash ^ c.charCodeAt(0), 0x01000193) >>> 0;
  return `${STORE.chats}.${hash.toString(36)}`;
}

/** @returns {Record<string, ChatRecord>} */
function records() {
  try {
    return JSON.parse(localStorage.getItem(chatsKey()) ?? '{}') ?? {};
  } catch {
    return {};
  }
}

/** @param {string} id @param {Partial<ChatRecord>} change */
function remember(id, change) {
  const all = records();
  all[id] = { ...all[id], lastActivity: all[id]?.lastActivity ?? Date.now(), ...change };
  try {
    localStorage.setItem(chatsKey(), JSON.stringify(all));
  } catch {
    // Full: keep titles, drop the oldest chats' items, and try once more.
    for (const record of Object.values(all).sort((a, b) => a.lastActivity - b.lastActivity).slice(0, -1)) delete record.items;
    try {
      localStorage.setItem(chatsKey(), JSON.stringify(all));
    } catch {
      // nothing more to give up: the chat is still on the gateway
    }
  }
}

/** Save the attached chat's items soon (once per burst of events). */
function saveSoon() {
  if (saveTimer) return;
  saveTimer = setTimeout(() => {
    saveTimer = null;
    saveNow();
  }, 500);
}

function saveNow() {
  const chat = session?.chat;
  if (!session?.id || !chat || !chat.items.length) return;
  const first = chat.items.find((i) => i.type === 'user');
  const lastUser = [...chat.items].reverse().find((i) => i.type === 'user');
  remember(session.id, {
    items: chat.items.slice(-KEPT_ITEMS),
    firstPrompt: first && first.type === 'user' ? first.text.slice(0, 200) : undefined,
    lastActivity: lastUser && lastUser.type === 'user' && lastUser.ts ? Math.max(lastUser.ts, records()[session.id]?.lastActivity ?? 0) : Date.now(),
  });
  renderList();
}

/** @param {string} id */
function titleOf(id) {
  const record = records()[id];
  return record?.title || record?.firstPrompt || 'New chat';
}

// ---- the chat list --------------------------------------------------------------------------

async function refreshList() {
  if (!client) return;
  try {
    listed = await client.listSessions();
  } catch {
    return; // offline: keep the last list
  }
  const all = records();
  for (const [id, record] of Object.entries(all)) {
    if (!record.ended && !record.deleted && !listed.some((s) => s.session_id === id) && id !== session?.id) remember(id, { ended: true });
  }
  renderList();
  await titleUnknownChats();
}

/** Chats started elsewhere (another browser) get their first prompt as a title, a few at a time. */
async function titleUnknownChats() {
  const untitled = listed.filter((info) => info.turns > 0 && !records()[info.session_id]?.firstPrompt).slice(0, 5);
  for (const info of untitled) {
    try {
      const snapshot = await /** @type {GatewayClient} */ (client).snapshot(info.session_id);
      const first = snapshot.transcript.find((e) => e.kind === 'user_query');
      const text = first && first.kind === 'user_query' ? contentText(first.prompt).trim() : '';
      remember(info.session_id, { firstPrompt: text.slice(0, 200) || 'Untitled chat', lastActivity: info.last_activity });
    } catch {
      return; // try again at the next refresh
    }
  }
  if (untitled.length) renderList();
}

/** The list's rows: the gateway's sessions and the chats the page remembers, newest first. */
function listRows() {
  const all = records();
  /** @type {Map<string, { id: string, lastActivity: number, state: string }>} */
  const rows = new Map();
  for (const info of listed) {
    if (all[info.session_id]?.deleted) continue;
    // A chat nobody wrote in yet is not worth a row (except the one on screen).
    if (!info.turns && info.state === 'idle' && !info.queued && !info.pending.length && !all[info.session_id]?.items?.length && info.session_id !== currentId()) continue;
    const state = info.state === 'closed' ? 'ended'
      : info.pending.length || info.state === 'awaiting_approval' ? 'waiting for you'
      : info.state === 'running' || info.state === 'interrupted' ? 'working' : 'live';
    rows.set(info.session_id, { id: info.session_id, lastActivity: Math.max(info.last_activity, all[info.session_id]?.lastActivity ?? 0), state });
  }
  for (const [id, record] of Object.entries(all)) {
    if (record.deleted || rows.has(id)) continue;
    if (!record.items?.length && id !== session?.id) continue;
    rows.set(id, { id, lastActivity: record.lastActivity, state: record.ended ? 'ended' : 'live' });
  }
  const current = currentId();
  if (current && !rows.has(current) && !all[current]?.deleted) rows.set(current, { id: current, lastActivity: Date.now(), state: 'live' });
  if (current && session?.chat && rows.has(current)) {
    const chat = session.chat;
    const row = /** @type {{ state: string }} */ (rows.get(current));
    row.state = chat.pending.length ? 'waiting for you' : chat.busy ? 'working' : chat.sessionState === 'closed' ? 'ended'
      : chat.sessionState ? 'live' : row.state; // attached: fresher than the last list
  }
  return [...rows.values()].sort((a, b) => b.lastActivity - a.lastActivity);
}

function currentId() {
  return session?.id ?? endedId;
}

function renderList() {
  const current = currentId();
  const rows = listRows();
  /** @type {HTMLElement[]} */
  const lis = [];
  for (const row of rows) {
    const li = h('li', 'chat-row');
    li.dataset.id = row.id;
    li.dataset.state = row.state;
    const open = /** @type {HTMLButtonElement} */ (h('button', 'chat-open'));
    open.type = 'button';
    if (row.id === current) open.setAttribute('aria-current', 'page');
    const title = h('span', 'chat-row-title', titleOf(row.id));
    const meta = h('span', 'chat-row-meta');
    meta.append(h('span', '', ago(row.lastActivity)));
    if (row.state !== 'live') meta.append(h('span', `chat-state state-${row.state.replace(/ /g, '-')}`, row.state));
    open.append(title, meta);
    open.addEventListener('click', () => {
      closeDrawer();
      if (row.id !== currentId()) show(row.id);
      ui.prompt.focus();
    });
    const rename = /** @type {HTMLButtonElement} */ (h('button', 'btn btn-ghost btn-icon chat-rename'));
    rename.innerHTML = ICONS.pencil;
    rename.type = 'button';
    rename.setAttribute('aria-label', `Rename “${titleOf(row.id)}”`);
    rename.addEventListener('click', () => startRename(li, row.id));
    const remove = /** @type {HTMLButtonElement} */ (h('button', 'btn btn-ghost btn-icon chat-delete'));
    remove.innerHTML = ICONS.trash;
    remove.type = 'button';
    remove.setAttribute('aria-label', `Delete “${titleOf(row.id)}”`);
    remove.addEventListener('click', () => deleteChat(row.id, remove));
    li.append(open, rename, remove);
    lis.push(li);
  }
  // Don't redraw under a rename in progress.
  if (ui.chatList.querySelector('.chat-rename-form')) return;
  const focused = /** @type {HTMLElement | null} */ (document.activeElement);
  const focusKey = focused && ui.chatList.contains(focused) ? [focused.closest('li')?.dataset.id, focused.className] : null;
  ui.chatList.replaceChildren(...lis);
  if (focusKey) {
    const again = ui.chatList.querySelector(`li[data-id="${CSS.escape(focusKey[0] ?? '')}"] [class="${focusKey[1]}"]`);
    if (again) /** @type {HTMLElement} */ (again).focus();
  }
  ui.chatTitle.textContent = current ? titleOf(current) : 'New chat';
}

const svg = (/** @type {string} */ path) => `<svg viewBox="0 0 24 24" aria-hidden="true" focusable="false"><path d="${path}"/></svg>`;
const ICONS = {
  pencil: svg('M4 20h4L19 9l-4-4L4 16v4zM14 6l4 4'),
  trash: svg('M4 7h16M9 7V4h6v3M6 7l1 13h10l1-13M10 11v6M14 11v6'),
};

/** @param {number} ms */
function ago(ms) {
  const s = Math.max(0, (Date.now() - ms) / 1000);
  if (s < 60) return 'just now';
  if (s < 3600) return `${Math.floor(s / 60)} min ago`;
  if (s < 86400) return `${Math.floor(s / 3600)} h ago`;
  return new Date(ms).toLocaleDateString();
}

/** Rename in place: Enter saves, Escape cancels. @param {HTMLElement} li @param {string} id */
function startRename(li, id) {
  const form = /** @type {HTMLFormElement} */ (h('form', 'chat-rename-form'));
  const input = /** @type {HTMLInputElement} */ (h('input', 'chat-rename-input'));
  input.value = titleOf(id);
  input.setAttribute('aria-label', 'Chat title');
  /** @param {boolean} keep */
  const finish = (keep) => {
    if (keep && input.value.trim()) remember(id, { title: input.value.trim().slice(0, 120) });
    form.remove();
    renderList();
    /** @type {HTMLElement | null} */ (ui.chatList.querySelector(`li[data-id="${CSS.escape(id)}"] .chat-rename`))?.focus();
  };
  form.addEventListener('submit', (ev) => {
    ev.preventDefault();
    finish(true);
  });
  input.addEventListener('keydown', (ev) => {
    if (ev.key === 'Escape') {
      ev.stopPropagation();
      finish(false);
    }
  });
  form.append(input);
  li.replaceChildren(form);
  input.focus();
  input.select();
}

/**
 * Ask before something that can't be undone; Cancel has focus. True when confirmed.
 * @param {string} title @param {string} text @param {string} ok the confirming button's label
 */
async function confirmAction(title, text, ok) {
  ui.confirmTitle.textContent = title;
  ui.confirmText.textContent = text;
  ui.confirmOk.textContent = ok;
  ui.confirmDialog.returnValue = '';
  ui.confirmDialog.showModal();
  /** @type {HTMLElement} */ (ui.confirmDialog.querySelector('#confirm-cancel')).focus();
  await new Promise((resolve) => ui.confirmDialog.addEventListener('close', resolve, { once: true }));
  return ui.confirmDialog.returnValue === 'ok';
}

/** @param {string} id @param {HTMLElement} opener */
async function deleteChat(id, opener) {
  const text = `“${titleOf(id)}” will be removed from this list, and its agent stopped. This can't be undone.`;
  if (!(await confirmAction('Delete this chat?', text, 'Delete'))) {
    opener.focus();
    return;
  }
  remember(id, { deleted: true, items: [] });
  if (listed.some((s) => s.session_id === id && s.state !== 'closed')) await client?.closeSession(id).catch((err) => toast(`Not closed: ${err.message}`));
  if (id === currentId()) {
    const next = listRows().find((row) => row.id !== id && row.state !== 'ended');
    if (next) show(next.id);
    else connect(null);
  }
  renderList();
  ui.prompt.focus();
}

const mainArea = /** @type {HTMLElement} */ (document.querySelector('.main'));

function openDrawer() {
  document.body.classList.add('drawer-open');
  mainArea.inert = true; // a modal drawer: Tab stays in it
  ui.scrim.hidden = false;
  ui.chatsToggle.setAttribute('aria-expanded', 'true');
  refreshList();
  /** @type {HTMLElement | null} */ (ui.chatList.querySelector('[aria-current="page"]') ?? ui.newChat)?.focus();
}

function closeDrawer() {
  if (!document.body.classList.contains('drawer-open')) return;
  document.body.classList.remove('drawer-open');
  mainArea.inert = false;
  ui.scrim.hidden = true;
  ui.chatsToggle.setAttribute('aria-expanded', 'false');
  ui.chatsToggle.focus();
}

ui.chatsToggle.addEventListener('click', () => openDrawer());
ui.drawerClose.addEventListener('click', () => closeDrawer());
ui.scrim.addEventListener('click', () => closeDrawer());

// ---- sessions -------------------------------------------------------------------------------

/** Show a chat: attach to its session, or show what the page kept of an ended one. @param {string} id */
function show(id) {
  const record = records()[id];
  if (record?.ended) showEnded(id);
  else connect(id);
}

function detach() {
  for (const off of unsubscribe) off();
  unsubscribe = [];
  if (session) {
    saveNow();
    if (isBlank(session)) {
      // Nobody wrote in it: close it rather than leave an idle agent counting against the session limit.
      const id = session.id;
      session.close().catch(() => session?.disconnect());
      if (id) remember(id, { deleted: true });
    } else {
      session.disconnect();
    }
  }
  session = null;
  endedId = null;
  meter.forget(null);
  taskList.forget(null);
  nodes.clear();
  ui.items.replaceChildren();
  ui.sending.replaceChildren();
  sending.clear();
  answering.clear();
  announced.clear();
  firstRender = true;
  hideBanner();
}

/** Attach to `sessionId`, or open a new session. @param {string | null} sessionId */
function connect(sessionId) {
  if (!client) return;
  detach();
  if (sessionId) localStorage.setItem(STORE.session, sessionId);
  else localStorage.removeItem(STORE.session);
  const s = client.session(sessionId ? { sessionId } : { open: { profile: chosenProfile() } });
  session = s;
  meter.forget(s);
  taskList.forget(s);
  unsubscribe.push(
    s.on('connectionstate', (change) => renderConnection(change)),
    s.on('chat', () => {
      scheduleRender();
      saveSoon();
    }),
    s.on('attached', () => rememberSession()),
    s.on('reset', () => rememberSession()),
    s.on('error', (err) => toast(err.message)),
    s.on('closed', (info) => onClosed(s, info)),
  );
  /** @type {any} */ (window).agw = { client, session: s, get chat() { return s.chat; } };
  s.connect().catch(() => {}); // failures arrive as `closed`
  setComposerEnabled(true);
  renderList();
  scheduleRender();
}

/** A chat whose session is gone, as the page last showed it. @param {string} id */
function showEnded(id) {
  detach();
  endedId = id;
  localStorage.setItem(STORE.session, id);
  /** @type {any} */ (window).agw = { client, session: null, chat: null };
  renderEnded(id);
}

/** @param {string} id */
function renderEnded(id) {
  const items = records()[id]?.items ?? [];
  for (const item of items) announced.add(item.key);
  renderItems(items, null);
  ui.empty.hidden = items.length > 0;
  ui.working.hidden = true;
  ui.stop.hidden = true;
  ui.agentState.textContent = '';
  ui.totals.textContent = '';
  fillSelect(ui.model, [], null);
  fillSelect(ui.mode, [], null);
  ui.model.disabled = ui.mode.disabled = true;
  setComposerEnabled(false);
  renderConnection({ state: 'closed' });
  showBanner(items.length ? 'This chat has ended: its session is gone. You can still read it here.' : 'This chat has ended: its session is gone.',
    'info', 'Continue in a new chat', () => continueInNewChat(id));
  renderList();
}

/** @param {string} endedChat */
function continueInNewChat(endedChat) {
  const title = titleOf(endedChat);
  connect(null);
  const stop = session?.on('attached', () => {
    stop?.();
    if (session?.id) remember(session.id, { title: `${title} (continued)` });
    renderList();
  });
  ui.prompt.focus();
}

/** An ended chat can be read and copied, not continued. @param {boolean} enabled */
function setComposerEnabled(enabled) {
  document.body.classList.toggle('chat-ended', !enabled);
  ui.prompt.disabled = !enabled;
  ui.prompt.placeholder = enabled ? 'Message the agent…' : 'This chat has ended';
}

function rememberSession() {
  if (session?.id) {
    localStorage.setItem(STORE.session, session.id);
    remember(session.id, { ended: false, deleted: false });
  }
  renderMeta();
  renderList();
  scheduleRender();
  refreshList();
}

/** @param {import('./client/session.js').GatewaySession} s @param {{ code: string, message: string }} info */
function onClosed(s, info) {
  if (s !== session) return;
  if (info.code === 'unauthorized') {
    localStorage.removeItem(STORE.token);
    askForToken('The gateway refused this token.');
  } else if (info.code === 'session_not_found' && s.id) {
    // Gone (a restart without a shared store): keep what the page had, readable, marked as ended.
    const id = s.id;
    remember(id, { ended: true });
    showEnded(id);
    return;
  } else if (info.code === 'session_closed') {
    if (s.id) remember(s.id, { ended: true });
    setComposerEnabled(false);
    renderConnection({ state: 'closed' });
    showBanner('This chat has ended.', 'info', 'Continue in a new chat', () => continueInNewChat(/** @type {string} */ (s.id)));
  } else if (info.code !== 'disconnected' && info.code !== 'closed_by_client') {
    showBanner(`Disconnected: ${info.message}`, 'error', 'New chat', () => newChat());
  }
  renderList();
  scheduleRender();
}

/** A live chat nothing was sent in. @param {import('./client/session.js').GatewaySession} s */
function isBlank(s) {
  const chat = s.chat;
  return s.connectionState !== 'closed' && Boolean(s.id) && Boolean(chat) && !chat?.items.some((i) => i.type === 'user') && sending.size === 0;
}

function newChat() {
  closeDrawer();
  // An empty chat on screen, with the chosen profile, already is the new chat.
  if (!session || !isBlank(session) || session.chat?.profile !== chosenProfile()) connect(null);
  ui.prompt.focus();
}

// ---- connection indicator and banner -------------------------------------------------------

/** @param {{ state: import('./client/session.js').ConnectionState, reason?: string | null, retryInMs?: number | null }} change */
function renderConnection(change) {
  const { state, reason, retryInMs } = change;
  const offline = reason === 'offline' || navigator.onLine === false;
  const labels = {
    idle: 'Not connected', connecting: 'Connecting…', open: 'Live', fallback: 'Live · HTTP',
    reconnecting: offline ? 'Offline' : 'Reconnecting…', closed: endedId || session?.chat?.sessionState === 'closed' ? 'Ended' : 'Disconnected',
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
  if (endedId) return renderList();
  if (!session || !chat) return;
  if (firstRender && session.id && (session.connectionState === 'open' || session.connectionState === 'fallback')) {
    // What was there before the page looked is history, not news.
    for (const item of chat.items) if (!(item.type === 'text' && item.streaming)) announced.add(item.key);
    firstRender = false;
  }
  const items = renderItems(chat.items, chat);
  for (const [id, el] of sending) {
    if (chat.get(`q:${id}`)) {
      el.remove();
      sending.delete(id);
    }
  }
  ui.empty.hidden = items.length > 0 || sending.size > 0;
  renderWorking(items, chat);
  renderControls();
  if (stickToBottom) ui.timeline.scrollTop = ui.timeline.scrollHeight;
}

/**
 * Draw `source` (keyed, so unchanged items aren't touched) and return the items shown.
 * @param {readonly ChatItem[]} source
 * @param {import('./client/chat.js').ChatState | null} chat null for an ended chat
 */
function renderItems(source, chat) {
  const items = source.filter(visible);
  /** @type {Map<string, import('./client/chat.js').ToolItem>} */
  const tools = new Map();
  for (const item of items) if (item.type === 'tool') tools.set(item.toolUseId, item);
  /** @type {Set<string>} */
  const seen = new Set();
  /** @type {Element | null} */
  let previous = null;
  /** @type {[import('./client/chat.js').ApprovalItem, HTMLElement][]} */
  const nested = [];
  let openTurns = 0;
  /** @type {ChatItem[]} */
  let turn = [];
  const lastResult = [...items].reverse().find((i) => i.type === 'result');
  for (const item of items) {
    seen.add(item.key);
    let node = nodes.get(item.key);
    if (!node) {
      node = { item, el: create(item) };
      node.el.dataset.key = item.key;
      nodes.set(item.key, node);
      update(node.el, item, turn);
    } else if (node.item !== item) {
      node.item = item;
      update(node.el, item, turn);
    }
    const el = node.el;
    if (item.type === 'user') {
      // "queued" only when an earlier turn is still running, not while the agent starts.
      q(el, '.badge').hidden = !(item.queued && openTurns > 0);
      openTurns++;
    } else if (item.type === 'result') {
      openTurns = Math.max(0, openTurns - 1);
      el.classList.toggle('last', item === lastResult && Boolean(chat));
      turn = [];
    } else {
      turn.push(item);
    }
    if (chat) announceItem(item);
    if (item.type === 'approval' && item.toolUseId && tools.has(item.toolUseId)) {
      nested.push([item, el]);
      continue;
    }
    /** @type {Element | null} */
    const expected = previous ? previous.nextElementSibling : ui.items.firstElementChild;
    if (expected !== el) {
      if (previous) previous.after(el);
      else ui.items.prepend(el);
    }
    previous = el;
  }
  // One card per tool call: its approval goes inside the tool's card.
  for (const [approval, el] of nested) {
    const tool = nodes.get(/** @type {import('./client/chat.js').ToolItem} */ (tools.get(/** @type {string} */ (approval.toolUseId))).key);
    if (!tool) continue;
    const slot = q(tool.el, '.tool-slot');
    if (el.parentElement !== slot) slot.append(el);
    tool.el.classList.toggle('asking', approval.status === 'pending');
  }
  for (const [key, node] of nodes) {
    if (!seen.has(key)) {
      node.el.remove();
      nodes.delete(key);
    }
  }
  return items;
}

/** @param {ChatItem} item */
function announceItem(item) {
  if (announced.has(item.key)) return;
  if (item.type === 'text') {
    if (item.streaming || item.parentToolUseId) return;
    announced.add(item.key);
    announce(`The agent says: ${item.text.slice(0, 400)}`);
  } else if (item.type === 'approval' && item.status === 'pending') {
    announced.add(item.key);
    const shown = typeof item.input.command === 'string' ? item.input.command : item.title ?? '';
    announce(`${item.displayName || item.toolName} needs your permission${shown ? `: ${shown}` : ''}. Allow or deny.`);
  } else if (item.type === 'question' && item.status === 'pending') {
    announced.add(item.key);
    announce(`The agent asks: ${item.questions.map((qq) => qq.question).join(' ')}`);
  } else if (item.type === 'result') {
    announced.add(item.key);
    announce(item.interrupted ? 'Stopped.' : item.isError ? 'The turn failed.' : 'Done.');
  }
}

/** The in-conversation signal that the agent is on it, until its words show up. @param {ChatItem[]} items @param {import('./client/chat.js').ChatState} chat */
function renderWorking(items, chat) {
  const last = items.at(-1);
  const waiting = chat.pending.length > 0;
  const streaming = last && (last.type === 'text' || last.type === 'thinking') && last.streaming;
  const toolRunning = last?.type === 'tool' && last.status === 'running';
  const expecting = sending.size > 0 || chat.busy || (chat.sessionState === 'starting' && items.some((i) => i.type === 'user'));
  ui.working.hidden = !expecting || waiting || Boolean(streaming) || chat.sessionState === 'interrupted';
  ui.workingText.textContent = chat.sessionState === 'starting' || chat.sessionState === null ? 'Starting the agent…'
    : toolRunning ? `Running ${last.name}…` : 'Working…';
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
  const stopWasFocused = document.activeElement === ui.stop;
  ui.stop.hidden = !chat.busy;
  document.body.classList.toggle('agent-busy', chat.busy || sending.size > 0); // no Regenerate mid-turn
  ui.stop.disabled = chat.sessionState === 'interrupted';
  if (stopWasFocused && (ui.stop.hidden || ui.stop.disabled)) ui.prompt.focus();
  ui.send.disabled = !ui.prompt.value.trim() || session.connectionState === 'closed';
  fillSelect(ui.model, chat.allowedModels ?? (chat.model ? [chat.model] : []), chat.model);
  fillSelect(ui.mode, chat.allowedModes, chat.permissionMode);
  ui.model.disabled = !attached || (chat.allowedModels?.length ?? 0) < 2;
  ui.mode.disabled = !attached || chat.allowedModes.length < 2;
  const states = {
    starting: 'Starting…', idle: 'Ready', running: 'Working…', awaiting_approval: 'Waiting for you',
    interrupted: 'Stopping…', closed: 'Ended', failed: 'The agent failed to start; send again to retry', hibernated: 'Ready',
  };
  ui.agentState.textContent = chat.sessionState ? states[chat.sessionState] : '';
  ui.agentState.dataset.state = chat.sessionState ?? '';
  meter.render(chat, attached);
  taskList.render(chat.tasks, attached);
  // Rewind files: only where the chat's profile keeps file checkpoints.
  document.body.classList.toggle('can-rewind', profileInfo.get(chat.profile ?? '')?.enable_file_checkpointing === true);
  const turns = `${chat.turns} turn${chat.turns === 1 ? '' : 's'}`;
  ui.totals.textContent = !chat.turns ? '' : demo ? `${turns} · demo — no charge` : `${turns} · ${money(chat.totalCostUsd)}`;
  renderMeta();
}

function renderMeta() {
  const profile = session?.chat?.profile ?? '';
  // The profile matters only when there is a choice of them.
  ui.sessionMeta.textContent = profileInfo.size > 1 ? profile : '';
  ui.sessionMeta.title = profileInfo.get(profile)?.description ?? '';
  ui.chatTitle.textContent = currentId() ? titleOf(/** @type {string} */ (currentId())) : 'New chat';
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

/** @param {ChatItem} item @returns {HTMLElement} */
function create(item) {
  switch (item.type) {
    case 'user':
      return createUser(item);
    case 'text': {
      const el = h('div', 'msg-assistant');
      const actions = h('div', 'msg-actions');
      actions.append(button('btn btn-ghost btn-small copy-message', 'Copy', () => {
        const current = nodes.get(item.key)?.item ?? item;
        copy(current.type === 'text' ? current.text : '', q(el, '.copy-message'));
      }));
      el.append(h('div', 'md'), actions);
      return el;
    }
    case 'thinking': {
      // Collapsed and dimmed, apart from the answer: while it streams, its latest words show in the summary.
      const el = h('details', 'thinking');
      const summary = h('summary');
      summary.append(h('span', 'thinking-label'), h('span', 'thinking-preview'));
      q(summary, '.thinking-preview').setAttribute('aria-hidden', 'true'); // the label says enough; the text is inside
      el.append(summary, h('div', 'md'));
      return el;
    }
    case 'tool': {
      const el = h('div', 'tool');
      const details = h('details', 'tool-details');
      const summary = h('summary');
      summary.append(h('span', 'tool-icon'), h('span', 'tool-name'), h('span', 'tool-brief'), h('span', 'badge'));
      const body = h('div', 'tool-body');
      const input = h('pre', 'tool-input');
      const result = h('pre', 'tool-result');
      input.tabIndex = 0;
      result.tabIndex = 0;
      body.append(h('div', 'label', 'Input'), input, h('div', 'label result-label', 'Output'), result);
      details.append(summary, body);
      el.append(details, h('div', 'tool-slot'));
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

/** A prompt, with Edit (resend, edited, in a branch) and, where the profile keeps checkpoints, Rewind files. @param {import('./client/chat.js').UserItem} item */
function createUser(item) {
  const el = h('div', 'msg-user');
  const bubble = h('div', 'bubble');
  bubble.append(h('span', 'text'), h('span', 'badge', 'queued'));
  const current = () => /** @type {import('./client/chat.js').UserItem} */ (nodes.get(item.key)?.item ?? item);
  const actions = h('div', 'msg-actions');
  const edit = button('btn btn-ghost btn-small edit', 'Edit', () => startEdit(el, current()));
  edit.setAttribute('aria-label', 'Edit and resend in a new chat that branches off before this message');
  const rewind = button('btn btn-ghost btn-small rewind', 'Rewind files', () => rewindFiles(current(), rewind));
  rewind.setAttribute('aria-label', 'Rewind files: undo the changes the agent made to files since this message');
  actions.append(edit, rewind);
  el.append(bubble, actions);
  return el;
}

/**
 * Edit a prompt in place; sending forks the session just before it, and the edited prompt goes
 * to the fork (this chat stays as it was). Enter sends, Escape cancels.
 * @param {HTMLElement} el @param {import('./client/chat.js').UserItem} item
 */
function startEdit(el, item) {
  if (el.querySelector('.edit-form')) return;
  const form = /** @type {HTMLFormElement} */ (h('form', 'edit-form'));
  const area = /** @type {HTMLTextAreaElement} */ (h('textarea', 'edit-text'));
  area.value = item.text;
  area.rows = Math.min(8, item.text.split('\n').length + 1);
  area.setAttribute('aria-label', 'Edit your message');
  const hint = h('p', 'edit-hint', 'Sends it in a new chat that branches off before this message. This chat stays as it is.');
  hint.id = `edit-hint-${item.queryId}`;
  area.setAttribute('aria-describedby', hint.id);
  const actions = h('div', 'edit-actions');
  const cancel = button('btn btn-small edit-cancel', 'Cancel', () => finish());
  const send = /** @type {HTMLButtonElement} */ (h('button', 'btn btn-primary btn-small edit-send', 'Send'));
  send.type = 'submit';
  actions.append(cancel, send);
  form.append(area, hint, actions);
  el.classList.add('editing');
  el.append(form);
  area.focus();
  area.setSelectionRange(area.value.length, area.value.length);
  const finish = () => {
    form.remove();
    el.classList.remove('editing');
    /** @type {HTMLElement} */ (el.querySelector('.edit'))?.focus();
  };
  area.addEventListener('keydown', (ev) => {
    if (ev.key === 'Escape') {
      ev.preventDefault();
      ev.stopPropagation();
      finish();
    } else if (ev.key === 'Enter' && !ev.shiftKey && !ev.isComposing) {
      ev.preventDefault();
      form.requestSubmit();
    }
  });
  form.addEventListener('submit', async (ev) => {
    ev.preventDefault();
    const text = area.value.trim();
    if (!text) return;
    setDisabled(form, true);
    if (await branch(item.queryId, text, 'edited')) return;
    setDisabled(form, false);
    area.focus();
  });
}

/**
 * Fork the attached session just before query `queryId` and switch the page to the fork, sending
 * `prompt` there: the way to edit and resend, or regenerate, without losing this chat.
 * @param {string} queryId @param {string} prompt @param {'edited' | 'regenerated'} why
 * @returns {Promise<boolean>} whether the page switched
 */
async function branch(queryId, prompt, why) {
  const from = session;
  if (!from?.id || !from.chat) return false;
  const chat = from.chat;
  let forked;
  try {
    forked = await from.fork(queryId);
  } catch (err) {
    toast(`Could not branch: ${/** @type {Error} */ (err).message}`);
    return false;
  }
  if (session !== from) return false; // the user went elsewhere meanwhile; the fork is in the list
  const first = chat.items.find((i) => i.type === 'user');
  const fromStart = !first || (first.type === 'user' && first.queryId === queryId);
  remember(forked, {
    title: fromStart ? undefined : `${titleOf(from.id).replace(/ \((edited|regenerated)\)$/, '')} (${why})`,
    firstPrompt: fromStart ? prompt.slice(0, 200) : records()[from.id]?.firstPrompt,
    lastActivity: Date.now(),
  });
  connect(forked);
  sendPrompt(prompt);
  announce(why === 'edited' ? 'Sent in a new chat that branches off before the edited message.' : 'Regenerating in a new chat that branches off before that message.');
  ui.prompt.focus();
  return true;
}

/** Put the files the agent changed since `item` back as they were (asked first). @param {import('./client/chat.js').UserItem} item @param {HTMLElement} opener */
async function rewindFiles(item, opener) {
  const shown = item.text.length > 80 ? `${item.text.slice(0, 80)}…` : item.text;
  const text = `Files the agent created or changed since “${shown}” go back to how they were before it. The conversation stays as it is.`;
  if (!(await confirmAction('Rewind files to here?', text, 'Rewind files'))) {
    opener.focus();
    return;
  }
  ui.prompt.focus();
  try {
    await /** @type {NonNullable<typeof session>} */ (session).rewindFiles(item.queryId);
    announce('Files rewound.');
  } catch (err) {
    toast(`Files not rewound: ${/** @type {Error} */ (err).message}`);
  }
}

/** @param {HTMLElement} el @param {ChatItem} item @param {ChatItem[]} turn the items of this turn so far */
function update(el, item, turn = []) {
  switch (item.type) {
    case 'user': {
      const command = isCompact(item.text);
      el.classList.toggle('command', command);
      const instructions = item.text.replace(/^\/compact\s*/, '');
      q(el, '.text').textContent = command ? `Compact the conversation${instructions ? `: ${instructions}` : ''}` : item.text || '(attachment)';
      // Nothing to edit or rewind in a command, or in a prompt that hasn't run yet.
      q(el, '.msg-actions').hidden = command || item.queued;
      return;
    }
    case 'text':
      renderText(q(el, '.md'), item.text, item.streaming);
      el.classList.toggle('streaming', item.streaming);
      el.classList.toggle('sub', Boolean(item.parentToolUseId));
      q(el, '.msg-actions').hidden = item.streaming || Boolean(item.parentToolUseId);
      return;
    case 'thinking': {
      q(el, '.thinking-label').textContent = item.streaming ? 'Thinking…' : 'Thought process';
      const flat = item.text.replace(/\s+/g, ' ').trim();
      q(el, '.thinking-preview').textContent = item.streaming ? (flat.length > 160 ? `…${flat.slice(-160)}` : flat) : '';
      q(el, '.md').innerHTML = renderMarkdown(item.text);
      el.classList.toggle('streaming', item.streaming);
      el.classList.toggle('sub', Boolean(item.parentToolUseId));
      return;
    }
    case 'tool':
      return updateTool(el, item);
    case 'approval':
      return updateApproval(el, item);
    case 'question':
      return updateQuestion(el, item);
    case 'result':
      return updateResult(el, item, turn);
    case 'notice':
      el.textContent = item.text;
      el.dataset.level = item.level;
      el.dataset.code = item.code;
      return;
  }
}

/** Markdown, and once complete: highlighted code, each block with a copy button. @param {HTMLElement} md @param {string} text @param {boolean} streaming */
function renderText(md, text, streaming) {
  md.innerHTML = renderMarkdown(text);
  for (const pre of md.querySelectorAll('pre')) {
    const code = pre.querySelector('code');
    const lang = pre.dataset.lang ?? '';
    pre.removeAttribute('data-lang');
    pre.tabIndex = 0; // scrollable by keyboard
    const block = h('div', 'code-block');
    const head = h('div', 'code-head');
    head.append(h('span', 'code-lang', lang || 'code'));
    if (!streaming) {
      const copyButton = button('btn btn-ghost btn-small copy-code', 'Copy code', () => copy(code?.textContent ?? pre.textContent ?? '', copyButton));
      head.append(copyButton);
      if (code && lang && hljs.getLanguage(lang)) hljs.highlightElement(code);
    }
    pre.replaceWith(block);
    block.append(head, pre);
  }
  for (const table of md.querySelectorAll('.md-table')) /** @type {HTMLElement} */ (table).tabIndex = 0;
}

/** Copy to the clipboard (with a fallback for pages served over plain http). @param {string} text @param {HTMLElement} from */
async function copy(text, from) {
  let ok = false;
  try {
    await navigator.clipboard.writeText(text);
    ok = true;
  } catch {
    const area = /** @type {HTMLTextAreaElement} */ (h('textarea'));
    area.value = text;
    area.setAttribute('readonly', '');
    area.style.position = 'fixed';
    area.style.opacity = '0';
    document.body.append(area);
    area.select();
    ok = document.execCommand('copy');
    area.remove();
    from.focus();
  }
  const label = from.textContent;
  from.textContent = ok ? 'Copied' : 'Copy failed';
  announce(ok ? 'Copied to the clipboard.' : 'Could not copy.');
  setTimeout(() => {
    from.textContent = label;
  }, 1500);
}

/** A one-line summary of a tool's input. @param {string} name @param {Record<string, unknown> | null} input */
function toolBrief(name, input) {
  if (!input) return '';
  const keys = name === 'Bash' ? ['command'] : ['file_path', 'path', 'pattern', 'url', 'query', 'command', 'description', 'prompt'];
  for (const k of keys) if (typeof input[k] === 'string') return /** @type {string} */ (input[k]);
  const first = Object.values(input).find((v) => typeof v === 'string');
  return typeof first === 'string' ? first : '';
}

/** @param {string} name */
function toolIcon(name) {
  if (name === 'Bash' || name === 'BashOutput') return '>_';
  if (/^(Read|Write|Edit|MultiEdit|NotebookEdit)$/.test(name)) return '✎';
  if (/^(Grep|Glob)$/.test(name)) return '⌕';
  if (/^Web/.test(name)) return '◎';
  if (name === 'Task' || name === 'Agent') return '⑂';
  return '⚙';
}

const STATUS_TEXT = {
  pending: 'preparing', awaiting_approval: 'needs approval', running: 'running', done: 'done', error: 'failed',
  denied: 'denied', cancelled: 'stopped', allowed: 'allowed', answered: 'answered', expired: 'expired',
};

/** @param {HTMLElement} el @param {import('./client/chat.js').ToolItem} item */
function updateTool(el, item) {
  el.classList.toggle('sub', Boolean(item.parentToolUseId));
  el.dataset.status = item.status;
  q(el, '.tool-icon').textContent = toolIcon(item.name);
  q(el, '.tool-icon').setAttribute('aria-hidden', 'true');
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
  el.setAttribute('role', 'group');
  const head = h('div', 'card-head');
  head.append(h('span', 'card-icon', '!'), h('div', 'card-title'), h('span', 'badge'));
  q(head, '.card-icon').setAttribute('aria-hidden', 'true');
  const titleId = `t-${item.requestId}`;
  q(head, '.card-title').id = titleId;
  el.setAttribute('aria-labelledby', titleId);
  const desc = h('div', 'card-desc');
  const input = h('pre', 'approval-input');
  input.tabIndex = 0;
  const edit = /** @type {HTMLTextAreaElement} */ (h('textarea', 'approval-edit'));
  edit.hidden = true;
  edit.spellcheck = false;
  edit.setAttribute('aria-label', 'Tool input (JSON)');
  const error = h('p', 'error');
  error.hidden = true;
  const actions = h('div', 'card-actions');
  const allow = /** @type {HTMLButtonElement} */ (h('button', 'btn btn-ok allow', 'Allow'));
  const always = h('button', 'btn always', 'Always allow');
  const deny = /** @type {HTMLButtonElement} */ (h('button', 'btn btn-danger deny', 'Deny'));
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
    ui.prompt.focus(); // the buttons go away with the answer: the composer is where to go next
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
  allow.setAttribute('aria-keyshortcuts', 'Y');
  deny.setAttribute('aria-keyshortcuts', 'N');
  allow.title = 'Allow (Y)';
  deny.title = 'Deny (N)';
  // Y / N while the card has focus (not while editing the input), as in the CLI's own prompt.
  el.addEventListener('keydown', (ev) => {
    if (!el.classList.contains('pending') || ev.ctrlKey || ev.metaKey || ev.altKey || /** @type {HTMLElement} */ (ev.target).matches('textarea, input')) return;
    const key = ev.key.toLowerCase();
    if (key === 'y' && !allow.disabled) (ev.preventDefault(), allow.click());
    else if (key === 'n' && !deny.disabled) (ev.preventDefault(), deny.click());
  });
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

/** Move focus to a new request's first answer, unless the user is busy typing. @param {HTMLElement} target */
function offerFocus(target) {
  const active = document.activeElement;
  if (active === document.body || active === null || (active === ui.prompt && !ui.prompt.value.trim())) {
    requestAnimationFrame(() => target.focus());
  }
}

/** @param {HTMLElement} el @param {import('./client/chat.js').ApprovalItem} item */
function updateApproval(el, item) {
  const pending = item.status === 'pending';
  const wasPending = el.classList.contains('pending');
  el.classList.toggle('pending', pending);
  const name = item.displayName || item.toolName;
  q(el, '.card-title').textContent = pending ? `Allow ${name}?` : `${name}`;
  const badge = q(el, '.badge');
  badge.dataset.status = item.status;
  badge.textContent = pending ? 'waiting for you' : STATUS_TEXT[item.status];
  const desc = q(el, '.card-desc');
  desc.textContent = [item.title, item.description ?? (typeof item.input.description === 'string' ? item.input.description : null), item.decisionReason]
    .filter(Boolean).join(' · ');
  desc.hidden = !desc.textContent || !pending;
  const input = q(el, '.approval-input');
  const shown = item.updatedInput ?? item.input;
  input.textContent = item.toolName === 'Bash' && typeof shown.command === 'string' ? `$ ${shown.command}` : JSON.stringify(shown, null, 2);
  q(el, '.card-actions').hidden = !pending;
  q(el, '.always').hidden = !item.suggestions.length;
  if (!pending) {
    q(el, '.approval-edit').hidden = true;
    // Decided: the tool card above shows the input; an edited input is worth seeing here.
    input.hidden = !item.updatedInput;
  }
  q(el, '.expires').textContent = pending ? `answer by ${new Date(item.expiresAt).toLocaleTimeString()}` : '';
  const resolution = q(el, '.resolution');
  resolution.hidden = pending;
  if (!pending) resolution.textContent = resolutionText(item.status, item.resolvedBy, item.message, Boolean(item.updatedInput));
  if (pending && !wasPending && !answering.has(item.requestId)) offerFocus(q(el, '.allow'));
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
  el.setAttribute('role', 'group');
  el.setAttribute('aria-label', 'The agent asks');
  const head = h('div', 'card-head');
  head.append(h('span', 'card-icon', '?'), h('div', 'card-title', 'The agent asks'), h('span', 'badge'));
  q(head, '.card-icon').setAttribute('aria-hidden', 'true');
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
    ui.prompt.focus();
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
  item.questions.forEach((question, index) => {
    const block = h('div', 'q-block');
    if (question.header) block.append(h('div', 'card-desc', String(question.header)));
    const text = h('div', 'q-text', question.question);
    text.id = `q-${requestId}-${index}`;
    block.append(text);
    const options = h('div', 'options');
    options.setAttribute('role', 'group');
    options.setAttribute('aria-labelledby', text.id);
    for (const option of question.options ?? []) {
      const choice = h('button', 'option');
      choice.setAttribute('type', 'button');
      choice.setAttribute('aria-pressed', 'false');
      choice.dataset.label = option.label;
      choice.append(h('b', '', option.label));
      if (option.description) choice.append(h('span', '', String(option.description)));
      choice.addEventListener('click', () => {
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
      options.append(choice);
    }
    const otherRow = h('div', 'other');
    const input = /** @type {HTMLInputElement} */ (h('input'));
    input.id = `q-${requestId}-${index}-other`;
    const label = /** @type {HTMLLabelElement} */ (h('label', 'other-label', 'Or type an answer'));
    label.htmlFor = input.id;
    input.addEventListener('input', () => {
      other[question.question] = input.value;
      submit.disabled = !ready();
    });
    input.addEventListener('keydown', (ev) => {
      if (ev.key === 'Enter' && ready()) send();
    });
    otherRow.append(label, input);
    block.append(options, otherRow);
    el.append(block);
  });
  const actions = h('div', 'card-actions');
  const skip = h('button', 'btn btn-ghost skip', 'Skip question');
  skip.setAttribute('type', 'button');
  skip.addEventListener('click', async () => {
    setDisabled(el, true);
    ui.prompt.focus();
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
  const wasPending = el.classList.contains('pending');
  el.classList.toggle('pending', pending);
  const badge = q(el, '.badge');
  badge.dataset.status = item.status;
  badge.textContent = pending ? 'waiting for you' : STATUS_TEXT[item.status];
  q(el, '.card-actions').hidden = !pending;
  for (const row of el.querySelectorAll('.other')) /** @type {HTMLElement} */ (row).hidden = !pending;
  if (!pending) {
    for (const b of el.querySelectorAll('.option')) {
      const choice = /** @type {HTMLButtonElement} */ (b);
      choice.disabled = true;
      const chosen = Object.values(item.answers ?? {}).flat().some((a) => a === choice.dataset.label);
      choice.setAttribute('aria-pressed', String(chosen));
    }
  }
  q(el, '.expires').textContent = pending ? `answer by ${new Date(item.expiresAt).toLocaleTimeString()}` : '';
  const resolution = q(el, '.resolution');
  resolution.hidden = pending;
  if (!pending) {
    const answers = Object.entries(item.answers ?? {}).map(([question, a]) => `${question} → ${Array.isArray(a) ? a.join(', ') : a}`).join('; ');
    resolution.textContent = resolutionText(item.status, item.resolvedBy, item.message, false) + (answers ? ` ${answers}` : '');
  }
  if (pending && !wasPending && !answering.has(item.requestId)) offerFocus(q(el, '.option, input'));
}

/**
 * How a turn ended, honestly: a turn whose tool was denied or failed isn't a plain "Done".
 * @param {import('./client/chat.js').ResultItem} item
 * @param {ChatItem[]} turn
 * @returns {['ok' | 'warn' | 'bad', string, string]} tone, icon, text
 */
function outcome(item, turn) {
  if (item.interrupted) return ['bad', '■', 'Stopped'];
  if (item.subtype === 'cancelled') return ['bad', '✕', 'Cancelled'];
  if (item.isError) return ['bad', '✕', `Failed: ${item.subtype.replace(/^error_/, '').replace(/_/g, ' ')}`];
  const tools = turn.filter((i) => i.type === 'tool');
  const denied = tools.filter((t) => t.type === 'tool' && t.status === 'denied').map((t) => t.type === 'tool' ? t.name : '');
  const failed = tools.filter((t) => t.type === 'tool' && t.status === 'error').length;
  if (denied.length) return ['warn', '⊘', `Done without ${[...new Set(denied)].join(', ')} (denied)`];
  if (failed) return ['warn', '!', `Done · ${failed} tool call${failed === 1 ? '' : 's'} failed`];
  return ['ok', '✓', 'Done'];
}

/** @param {HTMLElement} el @param {import('./client/chat.js').ResultItem} item @param {ChatItem[]} turn */
function updateResult(el, item, turn) {
  const usage = /** @type {Record<string, number> | null} */ (item.usage);
  const input = usage ? (usage.input_tokens ?? 0) + (usage.cache_read_input_tokens ?? 0) + (usage.cache_creation_input_tokens ?? 0) : null;
  const output = usage ? usage.output_tokens ?? 0 : null;
  const asked = item.queryId ? session?.chat?.get(`q:${item.queryId}`) : undefined;
  const compact = asked?.type === 'user' && isCompact(asked.text);
  const [tone, icon, text] = compact && !item.isError && !item.interrupted ? ['ok', '✓', 'Compacted'] : outcome(item, turn);
  el.replaceChildren();
  const status = h('span', `outcome ${tone}`);
  status.append(h('span', 'outcome-icon', icon), text);
  q(status, '.outcome-icon').setAttribute('aria-hidden', 'true');
  const time = h('span', 'duration', seconds(item.durationMs));
  // Details for the curious are in the tooltip, not in everyone's way.
  time.title = `API time ${seconds(item.durationApiMs)}${item.numTurns > 1 ? ` · ${item.numTurns} model calls` : ''}${input || output ? ` · ${tokens(input ?? 0)} tokens in, ${tokens(output ?? 0)} out` : ''}`;
  el.append(status, h('span', 'sep', '·'), time);
  if (demo) el.append(h('span', 'sep', '·'), h('span', 'cost demo', 'demo — no charge'));
  else if (item.costUsd !== null) {
    const cost = h('span', 'cost', money(item.costUsd));
    cost.title = `cost of this turn; this chat so far ${money(item.totalCostUsd)}`;
    el.append(h('span', 'sep', '·'), cost);
  }
  for (const s of el.querySelectorAll('.sep')) s.setAttribute('aria-hidden', 'true');
  if (asked?.type === 'user' && !compact) {
    el.append(button('btn btn-ghost btn-small regenerate', 'Regenerate', () => regenerate(item)));
    q(el, '.regenerate').setAttribute('aria-label', 'Regenerate: send the last prompt again in a new chat that branches off before it');
  }
  el.dataset.status = tone;
  // The CLI's diagnostics for an interrupted turn are noise; real errors are worth showing.
  if (!item.interrupted) for (const message of item.errors) el.append(h('span', 'errors', message));
}

/** Another answer to the prompt of the turn `result` ended, in a fork from just before it. @param {import('./client/chat.js').ResultItem} result */
async function regenerate(result) {
  const prompt = result.queryId ? session?.chat?.get(`q:${result.queryId}`) : undefined;
  if (prompt?.type === 'user' && result.queryId) await branch(result.queryId, prompt.text, 'regenerated');
  ui.prompt.focus();
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

// ---- composer and keys ---------------------------------------------------------------------

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

async function stop() {
  if (!session?.chat?.busy) return;
  ui.stop.disabled = true;
  ui.prompt.focus();
  try {
    await session.interrupt();
  } catch (err) {
    toast(/** @type {Error} */ (err).message);
  }
  scheduleRender();
}

ui.stop.addEventListener('click', () => stop());
document.addEventListener('keydown', (ev) => {
  if (ev.key !== 'Escape' || ev.defaultPrevented || document.querySelector('dialog[open]')) return;
  if (document.body.classList.contains('drawer-open')) return closeDrawer();
  if (session?.chat?.busy) {
    ev.preventDefault();
    stop();
  }
});
// Focus never stays on the page's body: a click on nothing in particular leads back to the composer.
document.addEventListener('focusout', (ev) => {
  if (ev.relatedTarget) return;
  const from = /** @type {HTMLElement} */ (ev.target);
  requestAnimationFrame(() => {
    if ((document.activeElement === document.body || document.activeElement === null) && !document.querySelector('dialog[open]')
      && !ui.prompt.disabled && (!from.isConnected || from.closest('[hidden]') || (/** @type {HTMLButtonElement} */ (from)).disabled)) {
      ui.prompt.focus();
    }
  });
});
for (const suggestion of document.querySelectorAll('.suggestion')) {
  suggestion.addEventListener('click', () => {
    sendPrompt(/** @type {HTMLElement} */ (suggestion).dataset.prompt ?? '');
    ui.prompt.focus();
  });
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
window.addEventListener('pagehide', () => saveNow());

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
  if (session.id && !records()[session.id]?.firstPrompt) remember(session.id, { firstPrompt: text.slice(0, 200) });
  renderList();
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
