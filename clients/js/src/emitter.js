// A small typed event emitter. A listener that throws does not stop the others or the client:
// the error is reported asynchronously (window.reportError / an uncaught exception in Node).

/**
 * @template {Record<string, unknown[]>} M
 */
export class Emitter {
  constructor() {
    /** @private @type {Map<keyof M, Set<(...args: any[]) => void>>} */
    this._listeners = new Map();
  }

  /**
   * Listen; returns a function that removes the listener.
   * @template {keyof M} K
   * @param {K} type
   * @param {(...args: M[K]) => void} listener
   * @returns {() => void}
   */
  on(type, listener) {
    let set = this._listeners.get(type);
    if (!set) this._listeners.set(type, (set = new Set()));
    set.add(listener);
    return () => this.off(type, listener);
  }

  /**
   * Listen for the next emission only.
   * @template {keyof M} K
   * @param {K} type
   * @param {(...args: M[K]) => void} listener
   * @returns {() => void}
   */
  once(type, listener) {
    /** @param {M[K]} args */
    const wrapper = (...args) => {
      this.off(type, wrapper);
      listener(...args);
    };
    return this.on(type, /** @type {any} */ (wrapper));
  }

  /**
   * @template {keyof M} K
   * @param {K} type
   * @param {(...args: M[K]) => void} listener
   */
  off(type, listener) {
    this._listeners.get(type)?.delete(listener);
  }

  /**
   * @template {keyof M} K
   * @param {K} type
   * @param {M[K]} args
   */
  emit(type, ...args) {
    const set = this._listeners.get(type);
    if (!set || set.size === 0) return;
    for (const listener of [...set]) {
      try {
        listener(...args);
      } catch (err) {
        reportListenerError(err);
      }
    }
  }

  /** @param {keyof M} type */
  listenerCount(type) {
    return this._listeners.get(type)?.size ?? 0;
  }

  removeAllListeners() {
    this._listeners.clear();
  }
}

/** @param {unknown} err */
export function reportListenerError(err) {
  const g = /** @type {{ reportError?: (e: unknown) => void }} */ (globalThis);
  if (typeof g.reportError === 'function') g.reportError(err);
  else queueMicrotask(() => { throw err; });
}
