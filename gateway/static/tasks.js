// The running background tasks and subagents (`chat.tasks`, kept from `task` events and, on
// attach, from `session.tasks`), each with a Stop button (`stop_task`). A task leaves the list
// when its terminal status arrives; the page says how it ended.

import { announce, button, h, q, toast } from './dom.js';

/** @typedef {import('./client/protocol.js').TaskInfo} TaskInfo */
/** @typedef {import('./client/session.js').GatewaySession} GatewaySession */

/** @param {TaskInfo} task */
function taskName(task) {
  return task.description || (task.task_type === 'local_agent' ? 'Subagent' : task.task_type === 'local_bash' ? 'Shell command' : 'Task');
}

export class TaskList {
  constructor() {
    this.section = /** @type {HTMLElement} */ (document.getElementById('tasks'));
    this.list = /** @type {HTMLElement} */ (document.getElementById('task-list'));
    this.count = /** @type {HTMLElement} */ (document.getElementById('tasks-count'));
    /** @type {Map<string, HTMLElement>} task id -> row */ this.rows = new Map();
    /** @type {Map<string, TaskInfo>} */ this.shown = new Map();
    /** Tasks this page asked to stop. @type {Set<string>} */ this.stopping = new Set();
    /** @type {GatewaySession | null} */ this.session = null;
    /** @type {boolean | null} */ this.canStop = null;
    /** Drawing a chat's tasks for the first time: they are not news. */ this.fresh = true;
  }

  /** A chat came on screen (or none): its tasks are drawn afresh, without news. @param {GatewaySession | null} session */
  forget(session) {
    this.session = session;
    this.rows.clear();
    this.shown = new Map();
    this.stopping.clear();
    this.list.replaceChildren();
    this.section.hidden = true;
    this.canStop = null;
    this.fresh = true;
  }

  /** @param {Map<string, TaskInfo>} tasks @param {boolean} canStop */
  render(tasks, canStop) {
    if (tasks === this.shown && this.canStop === canStop) return;
    for (const [id, task] of this.shown) {
      if (tasks.has(id)) continue;
      this.rows.get(id)?.remove();
      this.rows.delete(id);
      if (!this.fresh) announce(this.stopping.has(id) ? `Stopped: ${taskName(task)}.` : `Background task ended: ${taskName(task)}.`);
      this.stopping.delete(id);
    }
    for (const [id, task] of tasks) {
      let row = this.rows.get(id);
      if (!row) {
        row = this.create(task);
        this.rows.set(id, row);
        this.list.append(row);
        if (!this.fresh && !this.shown.has(id)) announce(`Background task started: ${taskName(task)}.`);
      }
      this.update(row, task, canStop);
    }
    this.shown = tasks;
    this.canStop = canStop;
    if (canStop) this.fresh = false; // attached, and the replay applied: what changes from now on is news
    this.section.hidden = tasks.size === 0;
    this.count.textContent = String(tasks.size);
  }

  /** @param {TaskInfo} task @private */
  create(task) {
    const row = h('li', 'task');
    row.dataset.taskId = task.task_id;
    const icon = h('span', 'task-icon', task.task_type === 'local_agent' ? '⑂' : '>_');
    icon.setAttribute('aria-hidden', 'true');
    const text = h('span', 'task-text');
    text.append(h('span', 'task-name'), h('span', 'task-detail'));
    const stop = button('btn btn-small btn-stop task-stop', 'Stop', () => this.stop(task.task_id, stop));
    row.append(icon, h('span', 'badge task-badge'), text, stop);
    q(row, '.task-badge').dataset.status = 'running';
    q(row, '.task-badge').setAttribute('aria-hidden', 'true');
    return row;
  }

  /** @param {HTMLElement} row @param {TaskInfo} task @param {boolean} canStop @private */
  update(row, task, canStop) {
    const name = taskName(task);
    q(row, '.task-name').textContent = name;
    const kind = task.task_type === 'local_agent' ? 'subagent' : task.task_type === 'local_bash' ? 'shell' : task.task_type ?? '';
    q(row, '.task-detail').textContent = [kind, task.last_tool_name ? `using ${task.last_tool_name}` : ''].filter(Boolean).join(' · ');
    const stop = /** @type {HTMLButtonElement} */ (q(row, '.task-stop'));
    const stopping = this.stopping.has(task.task_id);
    stop.textContent = stopping ? 'Stopping…' : 'Stop';
    stop.disabled = stopping || !canStop;
    stop.setAttribute('aria-label', `Stop ${name}`);
  }

  /** @param {string} taskId @param {HTMLButtonElement} from @private */
  async stop(taskId, from) {
    const session = this.session;
    if (!session) return;
    this.stopping.add(taskId);
    from.disabled = true;
    from.textContent = 'Stopping…';
    try {
      await session.stopTask(taskId);
    } catch (err) {
      this.stopping.delete(taskId);
      const code = /** @type {{ code?: string }} */ (err).code;
      toast(code === 'unknown_task' ? 'That task had already ended.' : `Not stopped: ${/** @type {Error} */ (err).message}`);
      from.disabled = false;
      from.textContent = 'Stop';
    }
    // Focus stays useful: the row goes away once the task has stopped.
    if (!from.isConnected || from.disabled) /** @type {HTMLElement} */ (document.getElementById('prompt')).focus();
  }
}
