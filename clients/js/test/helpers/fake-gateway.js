// An in-process imitation of the gateway's wire behaviour (WebSocket and SSE + POST), for unit
// tests that need exact control: drop a socket mid-stream, go silent, resend old events, refuse.
// It follows gateway/transports/websocket.py and sse.py; the real thing is tested in test/gateway/.

/** @typedef {Record<string, any>} Json */

let counter = 0;

export class FakeGateway {
  constructor() {
    this.epoch = 'ep1';
    /** @type {Json[]} */ this.log = [];
    /** @type {Set<FakeSocket | FakeStream>} */ this.attached = new Set();
    /** @type {FakeSocket[]} */ this.sockets = [];
    /** @type {Map<string, Json>} */ this.acks = new Map();
    /** @type {Json[]} */ this.received = [];
    /** @type {string[]} */ this.fetches = [];
    this.refuseWebSocket = false;
    this.unauthorized = false; // accept sockets, then close them with 4001 (as the gateway does)
    this.silent = false; // answer nothing (a dead path)
    this.closed = false;
    this.sessionId = 's_fake';
    this.state = 'idle';
    /** WebSocket constructor bound to this gateway. */
    const gw = this;
    this.WebSocket = class extends FakeSocket {
      /** @param {string} url @param {string[]} protocols */
      constructor(url, protocols) {
        super(gw, url, protocols);
      }
    };
    this.fetch = this._fetch.bind(this);
  }

  /** Append an event and send it to every attached connection. @param {Json} event */
  emit(event) {
    const frame = { type: 'event', seq: this.log.length + 1, epoch: this.epoch, ts: Date.now(), event };
    this.log.push(frame);
    if (event.kind === 'state') this.state = event.state;
    for (const conn of this.attached) conn.push(JSON.stringify(frame));
    return frame;
  }

  info() {
    return {
      session_id: this.sessionId, profile: 'default', model: 'm1', permission_mode: 'default', state: this.state,
      epoch: this.epoch, last_seq: this.log.length, created_at: 1, last_activity: 1, turns: 0, total_cost_usd: 0,
      queued: 0, pending: this.pending(), allowed_models: ['m1', 'm2'], allowed_modes: ['default', 'plan'],
      limits: { log_max_events: 10000, log_max_bytes: 33554432, log_max_age_s: 3600, transcript_max_events: 2000, max_queued_queries: 20, max_frame_bytes: 1048576 },
    };
  }

  /** Requests asked and not resolved, as SessionInfo.pending lists them. @returns {Json[]} */
  pending() {
    const resolved = new Set(this.log.filter((f) => f.event.kind === 'request_resolved').map((f) => f.event.request_id));
    return this.log.map((f) => f.event).filter((e) => (e.kind === 'permission_request' || e.kind === 'question') && !resolved.has(e.request_id));
  }

  /** The reply to open/attach, plus the replay. @param {Json} frame @returns {string[]} */
  handshake(frame) {
    const connection = `c_${++counter}`;
    if (frame.type === 'open') {
      if (!this.log.length) {
        this.emit({ kind: 'state', state: 'starting' });
        this.emit({ kind: 'state', state: 'idle' });
      }
      return [JSON.stringify({ type: 'attached', id: frame.id, connection, after: 0, session: this.info(), protocol: 1 }), ...this.log.map((f) => JSON.stringify(f))];
    }
    if (frame.session_id !== this.sessionId) {
      return [JSON.stringify({ type: 'error', id: frame.id, code: 'session_not_found', message: 'no session' })];
    }
    const after = frame.after ?? 0;
    if ((frame.epoch && frame.epoch !== this.epoch) || after > this.log.length) {
      const snapshot = { session: this.info(), transcript: this.log.map((f) => f.event).filter((e) => e.kind !== 'state' && e.kind !== 'stream') };
      return [JSON.stringify({ type: 'reset', id: frame.id, reason: frame.epoch && frame.epoch !== this.epoch ? 'epoch_mismatch' : 'cursor_ahead', connection, snapshot })];
    }
    return [
      JSON.stringify({ type: 'attached', id: frame.id, connection, after, session: this.info(), protocol: 1 }),
      ...this.log.slice(after).map((f) => JSON.stringify(f)),
    ];
  }

  /** Execute a session frame once per id, like Session.execute. @param {Json} frame @returns {Json} */
  execute(frame) {
    const done = this.acks.get(frame.id);
    if (done) return { ...done, duplicate: true };
    if (this.closed) return { type: 'error', id: frame.id, code: 'session_closed', message: 'closed' };
    let result = null;
    if (frame.type === 'query' || frame.type === 'compact') {
      const prompt = frame.type === 'query' ? frame.prompt : `/compact${frame.instructions ? ` ${frame.instructions}` : ''}`;
      this.emit({ kind: 'user_query', query_id: frame.id, prompt, by: { principal: 'alice' } });
      result = { query_id: frame.id, queued: false, position: 0 };
    } else if (frame.type === 'get_mcp_status') {
      result = { mcpServers: [{ name: 'github', status: 'connected', tools: [{ name: 'search' }] }] };
    } else if (frame.type === 'run_command') {
      this.emit({ kind: 'user_query', query_id: frame.id, prompt: `/${frame.command}`, by: { principal: 'alice' } });
      result = { query_id: frame.id, queued: false, position: 0 };
    } else if (frame.type === 'fork') {
      result = { session_id: `s_fork_${frame.query_id ?? 'now'}` };
    } else if (frame.type === 'get_context_usage') {
      result = { categories: [{ name: 'Messages', tokens: 2806 }], totalTokens: 11781, maxTokens: 167000, rawMaxTokens: 200000, percentage: 7 };
    } else if (frame.type === 'set_model') {
      if (frame.model === 'nope') return { type: 'error', id: frame.id, code: 'model_not_allowed', message: 'not allowed' };
      this.emit({ kind: 'model_changed', model: frame.model, by: { principal: 'alice' } });
    } else if (frame.type === 'close') {
      this.closed = true;
      this.emit({ kind: 'state', state: 'closed' });
    }
    const ack = { type: 'ack', id: frame.id, result };
    this.acks.set(frame.id, ack);
    return ack;
  }

  /** Close every WebSocket from the server side. @param {number} [code] */
  dropAll(code = 1006) {
    for (const s of [...this.sockets]) s.serverClose(code);
  }

  get openSockets() {
    return this.sockets.filter((s) => s.readyState === 1);
  }

  // ---- SSE + POST ----------------------------------------------------------------------------

  /** @param {string} url @param {RequestInit} [init] */
  async _fetch(url, init = {}) {
    const u = new URL(url);
    const method = init.method ?? 'GET';
    this.fetches.push(`${method} ${u.pathname}`);
    const headers = /** @type {Record<string, string>} */ (init.headers ?? {});
    if (method === 'POST' && u.pathname === '/v1/sessions') {
      const body = JSON.parse(String(init.body));
      this.handshake({ type: 'open', id: body.id });
      return Response.json({ session: this.info() }, { status: 201 });
    }
    if (method === 'POST' && u.pathname.endsWith('/frames')) {
      const frame = JSON.parse(String(init.body));
      this.received.push(frame);
      const reply = this.execute(frame);
      if (reply.type === 'error') return Response.json({ type: 'urn:x', title: reply.code, status: 409, detail: reply.message, code: reply.code, id: frame.id }, { status: 409 });
      return Response.json(reply);
    }
    if (method === 'GET' && u.pathname.endsWith('/events')) {
      const cursor = headers['Last-Event-ID'];
      let epoch = null;
      let after = 0;
      if (cursor) {
        const i = cursor.lastIndexOf(':');
        epoch = i >= 0 ? cursor.slice(0, i) : null;
        after = Number(cursor.slice(i + 1));
      }
      const stream = new FakeStream(this, /** @type {AbortSignal | undefined} */ (init.signal ?? undefined));
      const first = this.handshake({ type: 'attach', id: 'sse', session_id: u.pathname.split('/')[3], after, epoch });
      for (const text of first) stream.push(text);
      this.attached.add(stream);
      return new Response(stream.body, { status: 200, headers: { 'Content-Type': 'text/event-stream', 'X-Connection-Id': 'c_sse' } });
    }
    return Response.json({ code: 'not_found', title: 'not found', detail: 'no route', status: 404 }, { status: 404 });
  }
}

class FakeStream {
  /** @param {FakeGateway} gw @param {AbortSignal} [signal] */
  constructor(gw, signal) {
    this.gw = gw;
    /** @type {ReadableStreamDefaultController<Uint8Array> | null} */
    this.controller = null;
    this.body = new ReadableStream({ start: (c) => (this.controller = c) });
    signal?.addEventListener('abort', () => this.end());
  }

  /** @param {string} text */
  push(text) {
    const frame = JSON.parse(text);
    const id = frame.type === 'event' ? `id: ${frame.epoch}:${frame.seq}\n` : '';
    try {
      this.controller?.enqueue(new TextEncoder().encode(`${id}data: ${text}\n\n`));
    } catch {
      this.gw.attached.delete(this);
    }
  }

  end() {
    this.gw.attached.delete(this);
    try {
      this.controller?.close();
    } catch {
      // already closed
    }
  }
}

export class FakeSocket {
  /** @param {FakeGateway} gw @param {string} url @param {string[]} protocols */
  constructor(gw, url, protocols) {
    this.gw = gw;
    this.url = url;
    this.protocols = protocols;
    this.readyState = 0;
    this.protocol = '';
    /** @type {any} */ this.onopen = null;
    /** @type {any} */ this.onmessage = null;
    /** @type {any} */ this.onclose = null;
    /** @type {any} */ this.onerror = null;
    this.attachedTo = false;
    gw.sockets.push(this);
    setTimeout(() => {
      if (this.readyState !== 0) return;
      if (gw.refuseWebSocket) {
        this.readyState = 3;
        this.onerror?.({});
        this.onclose?.({ code: 1006, reason: '' });
        return;
      }
      this.readyState = 1;
      this.protocol = 'agent-gateway.v1';
      this.onopen?.({});
      if (gw.unauthorized) this.serverClose(4001);
    }, 1);
  }

  /** @param {string} text */
  send(text) {
    if (this.readyState !== 1) throw new Error('not open');
    const frame = JSON.parse(text);
    this.gw.received.push(frame);
    if (this.gw.silent) return;
    setTimeout(() => {
      if (this.readyState !== 1) return;
      if (frame.type === 'ping') return this.push(JSON.stringify({ type: 'pong', id: frame.id, ts: Date.now() }));
      if (frame.type === 'open' || frame.type === 'attach') {
        const out = this.gw.handshake(frame);
        if (JSON.parse(out[0]).type !== 'error') {
          this.attachedTo = true;
          this.gw.attached.add(this);
        }
        return this.push(out.join('\n'));
      }
      const reply = this.gw.execute(frame);
      this.push(JSON.stringify(reply));
      if (frame.type === 'close' && reply.type === 'ack') this.serverClose(4009);
    }, 1);
  }

  /** Deliver text to the client. @param {string} text */
  push(text) {
    if (this.readyState !== 1 || this.gw.silent) return;
    this.onmessage?.({ data: text });
  }

  /** @param {number} [code] @param {string} [reason] */
  close(code = 1000, reason = '') {
    if (this.readyState >= 2) return;
    this.readyState = 3;
    this.gw.attached.delete(this);
    setTimeout(() => this.onclose?.({ code, reason }), 1);
  }

  /** The server closes (or the network drops) the socket. @param {number} code */
  serverClose(code) {
    if (this.readyState >= 2) return;
    this.readyState = 3;
    this.gw.attached.delete(this);
    this.onclose?.({ code, reason: '' });
  }
}
