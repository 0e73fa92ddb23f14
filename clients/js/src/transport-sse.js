// The HTTP fallback: events over Server-Sent Events (read with fetch, so the bearer token can go
// in a header and the cursor in Last-Event-ID), frames over POST. Used when WebSockets fail.

/**
 * @import {ClientFrame, OpenFrame, AckFrame, ErrorFrame} from './protocol.js'
 * @import {TransportClose} from './transport-ws.js'
 * @import {GatewayClient} from './client.js'
 */

import { decodeServerFrame } from './codec.js';
import { GatewayError, ProtocolError } from './errors.js';

/**
 * Incremental parser for a `text/event-stream` body (the WHATWG algorithm).
 */
export class SseParser {
  /** @param {(message: { data: string, id: string | null, event: string }) => void} onMessage */
  constructor(onMessage) {
    /** @private */ this._onMessage = onMessage;
    /** @private */ this._buffer = '';
    /** @private @type {string[]} */
    this._data = [];
    /** @private */ this._event = '';
    /** @private @type {string | null} */
    this._id = null;
    /** The last event id seen (sent back as Last-Event-ID). @type {string | null} */
    this.lastEventId = null;
    /** @type {number | null} the server's `retry:` hint */
    this.retry = null;
  }

  /** @param {string} chunk */
  push(chunk) {
    this._buffer += chunk;
    let start = 0;
    for (;;) {
      const rel = this._buffer.slice(start).search(/\r\n|\r|\n/);
      if (rel < 0) break;
      const end = start + rel;
      // A lone \r at the very end may be the first half of \r\n: wait for more.
      if (this._buffer[end] === '\r' && end + 1 === this._buffer.length) break;
      const line = this._buffer.slice(start, end);
      start = end + (this._buffer.startsWith('\r\n', end) ? 2 : 1);
      this._line(line);
    }
    this._buffer = this._buffer.slice(start);
  }

  /** @private @param {string} line */
  _line(line) {
    if (line === '') {
      if (this._id !== null) this.lastEventId = this._id;
      if (this._data.length) {
        this._onMessage({ data: this._data.join('\n'), id: this.lastEventId, event: this._event || 'message' });
      }
      this._data = [];
      this._event = '';
      return;
    }
    if (line.startsWith(':')) return; // a comment (keep-alive)
    const colon = line.indexOf(':');
    const field = colon < 0 ? line : line.slice(0, colon);
    let value = colon < 0 ? '' : line.slice(colon + 1);
    if (value.startsWith(' ')) value = value.slice(1);
    if (field === 'data') this._data.push(value);
    else if (field === 'event') this._event = value;
    else if (field === 'id' && !value.includes('\0')) this._id = value;
    else if (field === 'retry' && /^\d+$/.test(value)) this.retry = Number(value);
  }
}

/**
 * @typedef {object} SseTransportOptions
 * @property {GatewayClient} client
 * @property {string | null} sessionId null: create the session first (POST /v1/sessions with `openFrame`)
 * @property {OpenFrame | null} openFrame
 * @property {{ epoch: string | null, seq: number }} cursor where to resume
 * @property {() => void} onOpen the stream is open
 * @property {(text: string) => void} onMessage one server frame's JSON (or anything, to mark liveness: '')
 * @property {(info: TransportClose) => void} onClose called exactly once
 * @property {(sessionId: string) => void} onSessionId the session was created
 */

export class SseTransport {
  /** @param {SseTransportOptions} options */
  constructor(options) {
    /** @type {'sse'} */
    this.kind = 'sse';
    /** @private */ this._options = options;
    /** @private */ this._client = options.client;
    /** @private */ this._sessionId = options.sessionId;
    /** @private */ this._closed = false;
    /** @private */ this._opened = false;
    /** @private */ this._abort = new AbortController();
    /** The stream's connection id (`X-Connection-Id`), sent with POSTs so events name this tab. @type {string | null} */
    this.connectionId = null;
    /** @private @type {Promise<unknown>} POSTs go one after another, in order */
    this._postChain = Promise.resolve();
    this._run().catch((err) => {
      if (err instanceof GatewayError) this._finish(1006, err.message, false, err);
      else this._finish(1006, err instanceof Error ? err.message : String(err), false);
    });
  }

  get opened() {
    return this._opened;
  }

  /** @private */
  async _run() {
    const client = this._client;
    if (!this._sessionId) {
      const info = await client.createSession(/** @type {OpenFrame} */ (this._options.openFrame), { signal: this._abort.signal });
      if (this._closed) return;
      this._sessionId = info.session_id;
      this._options.onSessionId(info.session_id);
    }
    const { epoch, seq } = this._options.cursor;
    const url = client.url(`/v1/sessions/${encodeURIComponent(this._sessionId)}/events`);
    /** @type {Record<string, string>} */
    const headers = { Accept: 'text/event-stream', ...(await client.authHeaders()) };
    // Resume after the cursor (`<epoch>:<seq>`, as the stream's `id:` fields name events).
    if (seq > 0 || epoch) headers['Last-Event-ID'] = epoch ? `${epoch}:${seq}` : String(seq);
    const response = await client.fetch(url.toString(), { headers, signal: this._abort.signal, cache: 'no-store' });
    if (!response.ok) throw await GatewayClientErrors.fromResponse(response);
    if (!response.body) throw new Error('the event stream has no body');
    if (this._closed) return;
    this.connectionId = response.headers.get('X-Connection-Id');
    this._opened = true;
    this._options.onOpen();
    const parser = new SseParser((message) => {
      if (!this._closed) this._options.onMessage(message.data);
    });
    const reader = response.body.getReader();
    const decoder = new TextDecoder();
    for (;;) {
      const { value, done } = await reader.read();
      if (this._closed) return;
      if (done) break;
      this._options.onMessage(''); // liveness (keep-alive comments count too)
      parser.push(decoder.decode(value, { stream: true }));
    }
    this._finish(1006, 'the event stream ended', false);
  }

  /**
   * POST one frame; resolves with the gateway's ack or error frame.
   * @param {ClientFrame} frame
   * @returns {Promise<AckFrame | ErrorFrame>}
   */
  post(frame) {
    const run = async () => {
      if (!this._sessionId) throw new Error('no session yet');
      const url = this._client.url(`/v1/sessions/${encodeURIComponent(this._sessionId)}/frames`);
      /** @type {Record<string, string>} */
      const headers = { 'Content-Type': 'application/json', Accept: 'application/json', ...(await this._client.authHeaders()) };
      if (this.connectionId) headers['X-Connection-Id'] = this.connectionId;
      const signal = AbortSignal.timeout(POST_TIMEOUT_MS);
      const response = await this._client.fetch(url.toString(), { method: 'POST', headers, body: JSON.stringify(frame), signal });
      const text = await response.text();
      /** @type {import('./protocol.js').ServerFrame} */
      let reply;
      try {
        reply = decodeServerFrame(text);
      } catch (err) {
        if (!response.ok) {
          const error = GatewayClientErrors.fromBody(response.status, text);
          // Not the gateway's answer but a proxy's page (a 502 or 504 during a deploy): the frame
          // may have run or not. Failing it would have the app retry under a new id and maybe run
          // it twice; a plain error makes the session re-send it under the same id.
          if (error.code.startsWith('http_')) throw new Error(`HTTP ${response.status} from the path to the gateway: ${error.message}`);
          throw error;
        }
        throw err instanceof ProtocolError ? err : new ProtocolError(String(err), text);
      }
      if (reply.type !== 'ack' && reply.type !== 'error') throw new ProtocolError(`expected ack or error, got ${reply.type}`, text);
      return reply;
    };
    const result = this._postChain.then(run, run);
    this._postChain = result.catch(() => {});
    return result;
  }

  /** Not used: frames go through `post`. @param {string} _text */
  send(_text) {
    throw new Error('the SSE transport sends frames with post()');
  }

  /** @param {number} [code] @param {string} [reason] */
  close(code = 1000, reason = '') {
    if (this._closed) return;
    this._finish(code, reason, true);
  }

  /** @private @param {number} code @param {string} reason @param {boolean} local @param {GatewayError} [error] */
  _finish(code, reason, local, error) {
    if (this._closed) return;
    this._closed = true;
    this._abort.abort();
    this._options.onClose({ code, reason, opened: this._opened, local, error });
  }
}

/** A POST still unanswered after this long is given up and re-sent (same id) on a new connection:
 * longer than any frame takes (a reset waits up to 15 s for a turn to stop, then for the agent). */
const POST_TIMEOUT_MS = 60000;

export const GatewayClientErrors = {
  /**
   * A GatewayError from an HTTP error response (a problem document `{code, title, detail}` or an error frame).
   * @param {Response} response
   * @returns {Promise<GatewayError>}
   */
  async fromResponse(response) {
    let text = '';
    try {
      text = await response.text();
    } catch {
      // no body
    }
    return GatewayClientErrors.fromBody(response.status, text);
  },
  /**
   * @param {number} status
   * @param {string} text
   * @returns {GatewayError}
   */
  fromBody(status, text) {
    /** @type {any} */
    let doc = null;
    try {
      doc = JSON.parse(text);
    } catch {
      // not JSON
    }
    const code = typeof doc?.code === 'string' ? doc.code : status === 401 ? 'unauthorized' : status === 404 ? 'not_found' : `http_${status}`;
    const message = [doc?.message, doc?.detail, doc?.title].find((m) => typeof m === 'string' && m) ?? (text.slice(0, 200) || `HTTP ${status}`);
    return new GatewayError(code, message, { status });
  },
};
