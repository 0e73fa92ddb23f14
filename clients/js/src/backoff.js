// Exponential backoff with jitter for reconnects.

/**
 * @typedef {object} BackoffOptions
 * @property {number} [initialDelayMs] delay before the first retry (before jitter); default 300
 * @property {number} [maxDelayMs] cap on the delay; default 15000
 * @property {number} [factor] growth per attempt; default 2
 * @property {number} [jitter] fraction of the delay that is random, 0..1; default 0.5
 *   (0.5: a delay is uniformly between half and all of the exponential value; 1: "full jitter")
 */

/** @type {Required<BackoffOptions>} */
export const DEFAULT_BACKOFF = Object.freeze({ initialDelayMs: 300, maxDelayMs: 15000, factor: 2, jitter: 0.5 });

/**
 * The delay before retry number `attempt` (0 for the first retry).
 * @param {number} attempt
 * @param {BackoffOptions} [options]
 * @param {() => number} [random] a source of numbers in [0, 1)
 * @returns {number}
 */
export function backoffDelay(attempt, options = {}, random = Math.random) {
  const { initialDelayMs, maxDelayMs, factor, jitter } = { ...DEFAULT_BACKOFF, ...options };
  const exp = Math.min(maxDelayMs, initialDelayMs * Math.pow(factor, Math.max(0, attempt)));
  const j = Math.min(1, Math.max(0, jitter));
  return Math.round(exp * (1 - j * random()));
}
