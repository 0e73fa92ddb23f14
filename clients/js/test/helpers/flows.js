// Small helpers shared by the gateway-backed tests.

import { GatewayClient } from '../../src/index.js';
import { TOKENS } from './gateway.js';

export const HELLO = 'Hello! I am the scripted model, streaming this greeting in small chunks.';

/** @param {number} ms */
export const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

/**
 * @param {() => boolean | Promise<boolean>} cond
 * @param {number} [timeoutMs]
 * @param {string} [what]
 */
export async function until(cond, timeoutMs = 30000, what = 'condition') {
  const deadline = Date.now() + timeoutMs;
  while (!(await cond())) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await sleep(20);
  }
}

/**
 * A client for a test gateway (or a proxy in front of it); fast reconnects, no network watching.
 * @param {string} url
 * @param {import('../../src/client.js').ClientOptions} [options]
 */
export function testClient(url, options = {}) {
  return new GatewayClient({ url, token: TOKENS.alice, reconnect: { initialDelayMs: 50, maxDelayMs: 500 }, ...options });
}

/**
 * Send a prompt and wait for its turn's result.
 * @param {import('../../src/session.js').GatewaySession} session
 * @param {string} prompt
 * @param {number} [timeoutMs]
 */
export function turn(session, prompt, timeoutMs = 60000) {
  return session.run(prompt, { timeoutMs });
}

/**
 * Answer every approval with allow and every question with its last option, from now on.
 * @param {import('../../src/session.js').GatewaySession} session
 */
export function autoAnswer(session) {
  const offs = [
    session.onEvent('permission_request', (e) => {
      session.allow(e.request_id).catch(() => {}); // another tab may have answered first
    }),
    session.onEvent('question', (e) => {
      /** @type {Record<string, string>} */
      const answers = {};
      for (const q of e.questions) answers[q.question] = String(q.options?.at(-1)?.label ?? 'ok');
      session.answer(e.request_id, answers).catch(() => {});
    }),
  ];
  return () => offs.forEach((off) => off());
}

/**
 * Every event of a session, read by a fresh client from the start: the reference to compare with.
 * @param {string} url
 * @param {string} sessionId
 */
export async function referenceEvents(url, sessionId) {
  const client = testClient(url);
  const s = client.session({ sessionId, chat: false });
  /** @type {import('../../src/protocol.js').EventFrame[]} */
  const frames = [];
  s.on('event', (f) => frames.push(f));
  try {
    await s.connect();
    if (s.stats.resets) throw new Error('the reference replay was reset: the log no longer holds every event');
    const last = /** @type {import('../../src/protocol.js').SessionInfo} */ (s.info).last_seq;
    await until(() => frames.length >= last, 30000, 'reference replay');
    return frames;
  } finally {
    s.disconnect();
  }
}

/**
 * Check a list of event frames is 1..n with no gaps or repeats.
 * @param {import('../../src/protocol.js').EventFrame[]} frames
 */
export function assertContiguous(frames) {
  frames.forEach((f, i) => {
    if (f.seq !== i + 1) throw new Error(`event ${i} has seq ${f.seq} (expected ${i + 1}): duplicated or missing events`);
  });
}

/** A small deterministic random source (so a failing run can be repeated). @param {number} seed */
export function seeded(seed) {
  let state = seed >>> 0;
  return () => {
    state = (Math.imul(state, 1664525) + 1013904223) >>> 0;
    return state / 2 ** 32;
  };
}
