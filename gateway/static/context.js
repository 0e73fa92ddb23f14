// The context meter ("Context 43% full") and its Compact button. The figure comes from
// `get_context_usage`, asked once per finished turn while the agent is idle (never of a
// hibernated session: asking would start its agent); until the answer, the turn's own estimate
// (`result.model_usage`) stands in. A compact is a query like any other: the meter says
// "Compacting…" while one runs (whoever sent it), then what it freed.

import { announce, toast } from './dom.js';

/** @typedef {import('./client/chat.js').ChatState} ChatState */
/** @typedef {import('./client/session.js').GatewaySession} GatewaySession */
/** @typedef {import('./client/protocol.js').ContextUsage} ContextUsage */

/** A prompt the page shows as the compact command it is (the gateway sends `compact` as `/compact …`). @param {string} text */
export function isCompact(text) {
  return /^\/compact(\s|$)/.test(text);
}

/** @param {number} n */
function tokens(n) {
  return n >= 1000 ? `${(n / 1000).toFixed(n >= 10000 ? 0 : 1)}k` : String(n);
}

export class ContextMeter {
  /** @param {() => void} onChange ask the page to render again */
  constructor(onChange) {
    const $ = (/** @type {string} */ id) => /** @type {HTMLElement} */ (document.getElementById(id));
    this.el = $('context');
    this.label = $('context-label');
    this.fill = $('context-fill');
    this.compactButton = /** @type {HTMLButtonElement} */ ($('compact'));
    this.onChange = onChange;
    /** @type {GatewaySession | null} */ this.session = null;
    this.compactButton.addEventListener('click', () => this.compact());
    this.forget(null);
  }

  /** A chat came on screen (or none). @param {GatewaySession | null} session */
  forget(session) {
    this.session = session;
    /** @type {ContextUsage | null} the last answer, and the turn it reflects */ this.usage = null;
    this.usageMark = '';
    /** The turn a request was sent for (sent once per turn). */ this.askedMark = '';
    /** @type {{ queryId: string, before: number | null } | null} a compact sent from this page */ this.mine = null;
    /** @type {string | null} "compacted from 43%", until the next turn */ this.outcome = null;
    this.el.hidden = true;
  }

  /**
   * The last finished turn or conversation change: the meter is asked again after each.
   * @param {ChatState} chat
   */
  static mark(chat) {
    const items = chat.items;
    for (let i = items.length - 1; i >= 0; i--) {
      const item = items[i];
      if (item.type === 'result' || (item.type === 'notice' && (item.code === 'conversation_reset' || item.code === 'compacted'))) return item.key;
    }
    return '';
  }

  /** The compact still running or queued, if any (sent by anyone). @param {ChatState} chat */
  static running(chat) {
    return chat.items.find((i) => i.type === 'user' && isCompact(i.text) && !chat.get(`r:${i.queryId}`));
  }

  /** @param {ChatState} chat @param {boolean} attached */
  render(chat, attached) {
    const mark = ContextMeter.mark(chat);
    if (mark !== this.usageMark && this.outcome && !this.mine) this.outcome = null; // a new turn: old news
    if (mark && mark !== this.askedMark && chat.sessionState === 'idle' && attached) this.ask(mark);
    const compacting = Boolean(ContextMeter.running(chat));
    const estimate = chat.lastResult?.contextPercent ?? null;
    const percent = this.usage && this.usageMark === mark ? this.usage.percentage : estimate ?? this.usage?.percentage ?? null;
    this.el.hidden = percent === null && !compacting;
    if (this.el.hidden) return;
    this.el.dataset.level = percent === null ? '' : percent >= 90 ? 'full' : percent >= 70 ? 'high' : '';
    this.el.classList.toggle('compacting', compacting);
    const shown = percent === null ? null : Math.round(percent);
    this.label.textContent = compacting ? 'Compacting…' : `Context ${shown}% full${this.outcome ? ` · ${this.outcome}` : ''}`;
    this.fill.style.width = `${Math.min(100, Math.max(0, percent ?? 0))}%`;
    const usage = this.usage && this.usageMark === mark ? this.usage : null;
    this.el.title = usage
      ? `${tokens(usage.totalTokens)} of ${tokens(usage.maxTokens)} tokens: ${usage.categories.filter((c) => c.tokens > 0 && !c.isDeferred).map((c) => `${c.name} ${tokens(c.tokens)}`).join(', ')}`
      : 'Estimated from the last turn';
    this.compactButton.disabled = compacting || chat.busy || !attached || !chat.turns;
  }

  /** @param {string} mark @private */
  async ask(mark) {
    const session = this.session;
    if (!session) return;
    this.askedMark = mark;
    try {
      const usage = await session.getContextUsage();
      if (session !== this.session || this.askedMark !== mark) return;
      this.usage = usage;
      this.usageMark = mark;
    } catch {
      return; // the estimate stays; the next turn asks again
    }
    const mine = this.mine;
    const ended = mine ? session.chat?.get(`r:${mine.queryId}`) : undefined;
    if (mine && ended?.type === 'result') {
      this.mine = null;
      const now = Math.round(this.usage.percentage);
      if (ended.isError) {
        announce(`The compact failed: context ${now}% full.`);
        toast(`Not compacted: ${ended.errors[0] ?? ended.subtype}`);
        this.onChange();
        return;
      }
      this.outcome = mine.before !== null && mine.before !== now ? `compacted from ${mine.before}%` : 'compacted';
      announce(`Conversation compacted: context ${now}% full${mine.before !== null ? `, was ${mine.before}%` : ''}.`);
    }
    this.onChange();
  }

  /** Summarise the conversation so far (the CLI's /compact). @private */
  async compact() {
    const session = this.session;
    if (!session) return;
    this.compactButton.disabled = true;
    const before = this.usage ? Math.round(this.usage.percentage) : session.chat?.lastResult?.contextPercent ?? null;
    try {
      const { query_id: queryId } = await session.compact();
      this.mine = { queryId, before: before === null ? null : Math.round(before) };
      this.outcome = null;
      announce('Compacting the conversation…');
    } catch (err) {
      toast(`Not compacted: ${/** @type {Error} */ (err).message}`);
    }
    this.onChange();
  }
}
