// A TCP proxy between a client and the gateway that tests can break on purpose: sever every
// connection, freeze traffic (a dead socket that stays open), refuse WebSocket upgrades (a
// network that blocks them), or cut a connection after N bytes from the gateway.

import net from 'node:net';

/**
 * @typedef {object} Pair
 * @property {net.Socket} client
 * @property {net.Socket} upstream
 * @property {boolean} websocket
 * @property {number} bytesDown bytes sent from the gateway to the client
 * @property {number | null} cutAfter sever once bytesDown passes this
 * @property {boolean} frozen
 */

export class Proxy {
  /** @param {number} upstreamPort */
  constructor(upstreamPort) {
    this.upstreamPort = upstreamPort;
    /** @type {Set<Pair>} */
    this.pairs = new Set();
    this.refuseWebSocket = false;
    /** Refuse every new connection (the gateway is unreachable). */
    this.blockNew = false;
    /** Cut each new WebSocket after this many downstream bytes (null: never). @type {number | null | (() => number | null)} */
    this.cutWebSocketAfter = null;
    this.refusedUpgrades = 0;
    this.websocketConnections = 0;
    this.severed = 0;
    this.server = net.createServer((socket) => this._accept(socket));
    this.port = 0;
  }

  /** @returns {Promise<Proxy>} */
  async start() {
    await new Promise((resolve) => this.server.listen(0, '127.0.0.1', () => resolve(undefined)));
    this.port = /** @type {net.AddressInfo} */ (this.server.address()).port;
    return this;
  }

  get url() {
    return `http://127.0.0.1:${this.port}`;
  }

  /** @param {net.Socket} client */
  _accept(client) {
    if (this.blockNew) {
      client.resetAndDestroy?.() ?? client.destroy();
      return;
    }
    client.setNoDelay(true);
    const upstream = net.connect(this.upstreamPort, '127.0.0.1');
    upstream.setNoDelay(true);
    /** @type {Pair} */
    const pair = { client, upstream, websocket: false, bytesDown: 0, cutAfter: null, frozen: false };
    this.pairs.add(pair);
    const end = () => {
      this.pairs.delete(pair);
      client.destroy();
      upstream.destroy();
    };
    client.on('error', end);
    upstream.on('error', end);
    client.on('close', end);
    upstream.on('close', end);
    client.on('data', (chunk) => {
      // Every request head on the connection is looked at: HTTP clients (undici) may send the
      // WebSocket upgrade on a kept-alive connection that carried other requests first.
      if (!pair.websocket) {
        const head = chunk.toString('latin1', 0, Math.min(chunk.length, 8192));
        if (/^GET [^\r\n]* HTTP\/1\.1\r\n/.test(head) && /\r\nupgrade:\s*websocket/i.test(head)) {
          if (this.refuseWebSocket) {
            this.refusedUpgrades++;
            client.end('HTTP/1.1 403 Forbidden\r\nContent-Length: 0\r\nConnection: close\r\n\r\n');
            upstream.destroy();
            return;
          }
          pair.websocket = true;
          pair.bytesDown = 0;
          pair.cutAfter = typeof this.cutWebSocketAfter === 'function' ? this.cutWebSocketAfter() : this.cutWebSocketAfter;
          this.websocketConnections++;
        }
      }
      if (pair.frozen) return;
      upstream.write(chunk);
    });
    upstream.on('data', (chunk) => {
      if (pair.frozen) return;
      pair.bytesDown += chunk.length;
      if (pair.cutAfter !== null && pair.bytesDown > pair.cutAfter) {
        // Deliver part of this chunk, then die mid-stream: the harshest place to be cut.
        const keep = Math.max(0, chunk.length - (pair.bytesDown - pair.cutAfter));
        if (keep) client.write(chunk.subarray(0, keep));
        this.severed++;
        client.resetAndDestroy?.() ?? client.destroy();
        upstream.destroy();
        return;
      }
      client.write(chunk);
    });
  }

  /** Reset every open connection (RST, like a dropped network path). @param {{ websocketOnly?: boolean }} [options] */
  severAll(options = {}) {
    for (const pair of [...this.pairs]) {
      if (options.websocketOnly && !pair.websocket) continue;
      this.severed++;
      pair.client.resetAndDestroy?.() ?? pair.client.destroy();
      pair.upstream.destroy();
    }
  }

  /** Stop forwarding on every open connection; sockets stay open (a silently dead path). New connections work. */
  freeze() {
    for (const pair of this.pairs) pair.frozen = true;
  }

  /** Connections that are WebSockets right now. */
  get openWebSockets() {
    return [...this.pairs].filter((p) => p.websocket).length;
  }

  async stop() {
    this.severAll();
    await new Promise((resolve) => this.server.close(() => resolve(undefined)));
  }
}

/** @param {number} upstreamPort */
export function startProxy(upstreamPort) {
  return new Proxy(upstreamPort).start();
}
