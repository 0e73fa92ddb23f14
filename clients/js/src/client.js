// The entry point: where the gateway is, how to authenticate, and sessions.

/**
 * @import {OpenFrame, Profile, SessionInfo, Snapshot, Ticket} from './protocol.js'
 * @import {ConnectionOptions, SessionOptions, OpenOptions} from './session.js'
 * @import {WebSocketConstructor} from './transport-ws.js'
 */

import { GatewayError } from './errors.js';
import { GatewaySession } from './session.js';
import { GatewayClientErrors } from './transport-sse.js';
import { SUBPROTOCOL, webSocketUrl } from './transport-ws.js';

/** @typedef {(input: string, init?: RequestInit) => Promise<Response>} FetchLike */

/**
 * @typedef {ConnectionOptions & {
 *   url?: string,
 *   token?: string | null | (() => string | null | Promise<string | null>),
 *   auth?: 'subprotocol' | 'ticket' | 'none',
 *   WebSocket?: WebSocketConstructor | null,
 *   fetch?: FetchLike,
 * }} ClientOptions
 * - `url`: the gateway's base URL (default: the page's origin).
 * - `token`: bearer token, or a function returning one (called for every connection).
 * - `auth`: how WebSockets authenticate: `subprotocol` offers `bearer.<token>` (default), `ticket`
 *   trades the token for a short-lived ticket first (`POST /v1/tickets`, then `?ticket=`), `none`
 *   sends nothing (a gateway without auth, or cookies in front of it).
 * - `WebSocket`, `fetch`: implementations to use where the runtime has none (Node 20: pass `ws`'s
 *   WebSocket, or run with --experimental-websocket). With no WebSocket at all, sessions use SSE.
 */

export class GatewayClient {
  /** @param {ClientOptions} [options] */
  constructor(options = {}) {
    const location = /** @type {{ location?: { origin?: string } }} */ (globalThis).location;
    const base = options.url ?? location?.origin;
    if (!base) throw new TypeError('GatewayClient needs `url` outside a browser page');
    /** The base URL, without a trailing slash. */
    this.baseUrl = base.replace(/\/+$/, '');
    /** @type {ClientOptions} */
    this.options = options;
    const g = /** @type {{ WebSocket?: WebSocketConstructor, fetch?: FetchLike }} */ (globalThis);
    /** @type {WebSocketConstructor | null} */
    this.WebSocket = options.WebSocket === undefined ? g.WebSocket ?? null : options.WebSocket;
    const fetchImpl = options.fetch ?? (g.fetch ? g.fetch.bind(globalThis) : null);
    /** @type {FetchLike} */
    this.fetch = fetchImpl ?? (() => Promise.reject(new Error('no fetch implementation: pass `fetch` to GatewayClient')));
  }

  // ---- sessions --------------------------------------------------------------------------

  /**
   * A session object, not connected yet: add listeners, then `connect()`.
   * @param {SessionOptions} [options]
   * @returns {GatewaySession}
   */
  session(options = {}) {
    return new GatewaySession(this, options);
  }

  /**
   * Open a new session and wait until it is attached.
   * @param {OpenOptions & { connection?: SessionOptions }} [options] the `open` frame's fields (profile, model, permission_mode, ...)
   * @returns {Promise<GatewaySession>}
   */
  open(options = {}) {
    const { connection, ...open } = options;
    return this.session({ ...connection, open }).connect();
  }

  /**
   * Attach to an existing session and wait until attached. With `after` (and `epoch`), only events
   * after that cursor are replayed; without, the whole retained history is.
   * @param {string} sessionId
   * @param {SessionOptions} [options]
   * @returns {Promise<GatewaySession>}
   */
  attach(sessionId, options = {}) {
    return this.session({ ...options, sessionId }).connect();
  }

  // ---- HTTP ------------------------------------------------------------------------------

  /** @param {string} path @returns {URL} */
  url(path) {
    return new URL(this.baseUrl + path);
  }

  /** The bearer token, if any. @returns {Promise<string | null>} */
  async token() {
    const t = this.options.token;
    return typeof t === 'function' ? (await t()) ?? null : t ?? null;
  }

  /** @returns {Promise<Record<string, string>>} */
  async authHeaders() {
    const token = await this.token();
    return token ? { Authorization: `Bearer ${token}` } : {};
  }

  /**
   * Call the HTTP API; resolves with the JSON body, rejects with a GatewayError.
   * @param {string} method
   * @param {string} path
   * @param {unknown} [body]
   * @param {{ signal?: AbortSignal }} [options]
   * @returns {Promise<any>}
   */
  async request(method, path, body, options = {}) {
    /** @type {Record<string, string>} */
    const headers = { Accept: 'application/json', ...(await this.authHeaders()) };
    if (body !== undefined) headers['Content-Type'] = 'application/json';
    const response = await this.fetch(this.url(path).toString(), {
      method,
      headers,
      body: body === undefined ? undefined : JSON.stringify(body),
      signal: options.signal,
    });
    if (!response.ok) throw await GatewayClientErrors.fromResponse(response);
    const text = await response.text();
    return text ? JSON.parse(text) : null;
  }

  /** A short-lived ticket for `?ticket=` (WebSocket or EventSource). @returns {Promise<Ticket>} */
  ticket() {
    return this.request('POST', '/v1/tickets');
  }

  /** The operator's profiles (what `open` may ask for). @returns {Promise<Profile[]>} */
  async profiles() {
    const body = await this.request('GET', '/v1/profiles');
    return Array.isArray(body) ? body : Array.isArray(body?.profiles) ? body.profiles : [];
  }

  /**
   * Create a session over HTTP (what the SSE fallback does when it has no session yet).
   * @param {Omit<OpenFrame, 'type'> & { type?: 'open' }} open the open frame (its `id` makes a retry return the same session)
   * @param {{ signal?: AbortSignal }} [options]
   * @returns {Promise<SessionInfo>}
   */
  async createSession(open, options = {}) {
    const { type: _type, ...body } = open;
    const reply = await this.request('POST', '/v1/sessions', body, options);
    return sessionInfoOf(reply);
  }

  /** @param {string} sessionId @returns {Promise<SessionInfo>} */
  async getSession(sessionId) {
    return sessionInfoOf(await this.request('GET', `/v1/sessions/${encodeURIComponent(sessionId)}`));
  }

  /** The caller's sessions (closed ones while the gateway retains them). @returns {Promise<SessionInfo[]>} */
  async listSessions() {
    const body = await this.request('GET', '/v1/sessions');
    return Array.isArray(body?.sessions) ? body.sessions : [];
  }

  /** Close a session without attaching to it (idempotent). @param {string} sessionId @returns {Promise<SessionInfo>} */
  async closeSession(sessionId) {
    return sessionInfoOf(await this.request('DELETE', `/v1/sessions/${encodeURIComponent(sessionId)}`));
  }

  /** Liveness, and whether an offline demo model answers. @returns {Promise<{ status: 'ok', demo: boolean }>} */
  async health() {
    const body = await this.request('GET', '/healthz');
    return { status: 'ok', demo: body?.demo === true };
  }

  /** Everything needed to draw a session now, without subscribing. @param {string} sessionId @returns {Promise<Snapshot>} */
  async snapshot(sessionId) {
    const body = await this.request('GET', `/v1/sessions/${encodeURIComponent(sessionId)}/snapshot`);
    return body?.snapshot ?? body;
  }

  /** How a WebSocket should connect now: URL (with a ticket) and subprotocols. */
  async webSocketAuth() {
    const mode = this.options.auth ?? 'subprotocol';
    if (mode === 'ticket') {
      const { ticket } = await this.ticket();
      return { url: webSocketUrl(this.baseUrl, ticket), protocols: [SUBPROTOCOL] };
    }
    const token = mode === 'none' ? null : await this.token();
    return { url: webSocketUrl(this.baseUrl), protocols: token ? [SUBPROTOCOL, `bearer.${token}`] : [SUBPROTOCOL] };
  }
}

/**
 * @param {any} reply
 * @returns {SessionInfo}
 */
function sessionInfoOf(reply) {
  const info = reply?.session ?? reply?.snapshot?.session ?? reply;
  if (!info || typeof info.session_id !== 'string') throw new GatewayError('bad_reply', 'the gateway did not return a session');
  return info;
}
