// Small DOM helpers the chat page's modules share: element builders, toasts and the one polite
// live region (status and finished messages only, never streamed fragments).

/**
 * @param {string} tag
 * @param {string} [className]
 * @param {string} [text]
 * @returns {HTMLElement}
 */
export function h(tag, className, text) {
  const el = document.createElement(tag);
  if (className) el.className = className;
  if (text !== undefined) el.textContent = text;
  return el;
}

/** @param {ParentNode} root @param {string} selector */
export function q(root, selector) {
  return /** @type {HTMLElement} */ (root.querySelector(selector));
}

/** @param {string} className @param {string} label @param {() => void} onClick */
export function button(className, label, onClick) {
  const b = /** @type {HTMLButtonElement} */ (h('button', className, label));
  b.type = 'button';
  b.addEventListener('click', onClick);
  return b;
}

/** @param {string} text */
export function toast(text) {
  const el = h('div', 'toast', text);
  /** @type {HTMLElement} */ (document.getElementById('toasts')).append(el);
  setTimeout(() => el.remove(), 6000);
}

/** Tell screen readers (status and finished messages only, never each streamed fragment). @param {string} text */
export function announce(text) {
  const region = /** @type {HTMLElement} */ (document.getElementById('announcer'));
  region.textContent = '';
  requestAnimationFrame(() => {
    region.textContent = text;
  });
}
