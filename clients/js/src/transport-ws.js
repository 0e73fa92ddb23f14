// One WebSocket to `/v1/ws`, reduced to what a session needs: text in, text out, one close report.

/** The subprotocol every gateway WebSocket offers. */
export const SUBPROTOCOL = 'agent-gateway.v1';

/**
 * The browser WebSocket API, as far as this client uses it (the global one, or `ws`, or undici's).
 * @typedef {object} WebSocketLike
 * @property {number} readyState
 * @property {string} protocol
 * @property {((ev: any) => void) | null} onopen
 * @property {((ev: { data: unknown }) => void) | null} onmessage
 * @property {((ev: { code?: number, reason?: string, wasClean?: boolean }) => void) | null} onclose
 * @property {((ev: any) => void) | null} onerror
 * @property {(data: string) => void} send
 * @property {(code?: number, reason?: string) => void} close
 */
/** @typedef {new (url: string, protocols?: string | string[]) => WebSocketLike} WebSocketConstructor */

/**
 * @typedef {object} TransportClose
 * @property {number} code the close code (1006 when the socket failed without one)
 * @property {string} reason
 * @property {boolean} opened whether the socket had opened
 * @property {boolean} local closed by this side (`close()`)
 * @property {import('./errors.js').GatewayError} [error] the gateway's refusal, when it sent one (HTTP)
 */

/**
 * @typedef {object} WebSocketTransportOptions
 * @property {string} url ws:// or wss:// URL, with `?ticket=` when tickets are used
 * @property {string[]} protocols subprotocols to offer
 * @property {WebSocketConstructor} WebSocket
 * @property {() => void} onOpen
 * @property {(text: string) => void} onMessage
 * @property {(info: TransportClose) => void} onClose called exactly once
 */

export class WebSocketTransport {
  /** @param {WebSocketTransportOptions} options */
  constructor(options) {
    /** @type {'websocket'} */
    this.kind = 'websocket';
    /** @private */ this._options = options;
    /** @private */ this._opened = false;
    /** @private */ this._closed = false;
    /** @private @type {WebSocketLike | null} */
    this._ws = null;
    try {
      /** @private */ this._ws = new options.WebSocket(options.url, options.protocols);
    } catch (err) {
      // A refused URL or a blocked constructor (CSP): report a failed connection, asynchronously.
      queueMicrotask(() => this._finish(1006, `WebSocket could not be created: ${/** @type {Error} */ (err).message}`, false));
      return;
    }
    const ws = this._ws;
    ws.onopen = () => {
      if (this._closed) return;
      /** @private */ this._opened = true;
      options.onOpen();
    };
    ws.onmessage = (ev) => {
      if (this._closed) return;
      const data = ev.data;
      if (typeof data === 'string') options.onMessage(data);
      else if (data instanceof ArrayBuffer) options.onMessage(new TextDecoder().decode(data));
      else if (ArrayBuffer.isView(data)) options.onMessage(new TextDecoder().decode(/** @type {Uint8Array} */ (data)));
      else if (data != null) options.onMessage(String(data));
    };
    ws.onclose = (ev) => this._finish(ev.code ?? 1006, ev.reason ?? '', false);
    ws.onerror = () => {
      // Browsers follow an error with close; some implementations don't, so close here too.
      setTimeout(() => this._finish(1006, 'WebSocket error', false), 0);
    };
  }

  get opened() {
    return this._opened;
  }

  get closed() {
    return this._closed;
  }

  /** @param {string} text */
  send(text) {
    if (this._closed || !this._ws || this._ws.readyState !== 1) throw new Error('WebSocket is not open');
    this._ws.send(text);
  }

  /**
   * Close now and report it; handlers are detached so nothing arrives afterwards.
   * @param {number} [code]
   * @param {string} [reason]
   */
  close(code = 1000, reason = '') {
    if (this._closed) return;
    const ws = this._ws;
    this._finish(code, reason, true);
    if (ws) {
      try {
        if (ws.readyState === 0 || ws.readyState === 1) ws.close(code, reason);
      } catch {
        try {
          ws.close();
        } catch {
          // already gone
        }
      }
    }
  }

  /** @private @param {number} code @param {string} reason @param {boolean} local */
  _finish(code, reason, local) {
    if (this._closed) return;
    this._closed = true;
    const ws = this._ws;
    if (ws) {
      ws.onopen = ws.onmessage = ws.onerror = null;
      ws.onclose = null;
    }
    this._options.onClose({ code, reason, opened: this._opened, local });
  }
}

/**
 * The WebSocket URL for a gateway base URL: http(s) becomes ws(s), and `/v1/ws` is appended.
 * @param {string} baseUrl
 * @param {string | null} [ticket]
 * @returns {string}
 */
export function webSocketUrl(baseUrl, ticket) {
  const url = new URL(baseUrl);
  url.protocol = url.protocol === 'https:' || url.protocol === 'wss:' ? 'wss:' : 'ws:';
  url.pathname = url.pathname.replace(/\/+$/, '') + '/v1/ws';
  url.search = '';
  url.hash = '';
  if (ticket) url.searchParams.set('ticket', ticket);
  return url.toString();
}
