// The chat page's view of the whole agent (issue 11): the context meter and Compact, background
// tasks with Stop, thinking apart from the answer, rewinding files where the profile keeps
// checkpoints, and edit-and-resend / regenerate as forks into a new chat. Real gateway (demo
// mode, two profiles: `default` keeps file checkpoints, `plain` doesn't), real CLI, scripted
// model, Debian chromium. Screenshots go to test-artifacts/e2e/.
import assert from 'node:assert/strict';
import fs from 'node:fs';
import { createRequire } from 'node:module';
import os from 'node:os';
import path from 'node:path';
import { after, before, describe, test } from 'node:test';
import { testClient, until } from '../helpers/flows.js';
import { launchBrowser, screenshot } from '../helpers/browser.js';
import { startGateway, TOKENS } from '../helpers/gateway.js';

/** @typedef {import('playwright-core').Page} Page */

const AXE = fs.readFileSync(createRequire(import.meta.url).resolve('axe-core/axe.min.js'), 'utf8');
const script = (/** @type {unknown[][]} */ ...steps) => `SCRIPT:${JSON.stringify({ steps })}`;
const BACKGROUND = script(
  [{ tool: 'Bash', input: { command: "sh -c 'sleep 60; echo late'", description: 'Wait a minute', run_in_background: true } }],
  [{ text: 'Started it.' }],
);
const THOUGHT = 'First I weigh what was asked, then which answer fits it best, and only then do I write it down.';

/** @type {import('../helpers/gateway.js').Gateway} */
let gw;
/** @type {Awaited<ReturnType<typeof launchBrowser>>} */
let browser;
/** @type {string} */
let configDir;
/** @type {string[]} */
const pageErrors = [];

before(async () => {
  configDir = fs.mkdtempSync(path.join(os.tmpdir(), 'agw-agent-profiles-'));
  const config = path.join(configDir, 'profiles.toml');
  const common = ['model = "claude-sonnet-4-5"', 'models = ["claude-sonnet-4-5"]', 'allowed_tools = ["Read", "Grep", "Glob"]'];
  fs.writeFileSync(config, [
    '[profiles.default]', 'description = "Edits ask first; file checkpoints kept."', ...common, 'enable_file_checkpointing = true', '',
    '[profiles.plain]', 'description = "No file checkpoints."', ...common, '',
  ].join('\n'));
  [gw, browser] = await Promise.all([startGateway({ name: 'e2e-agent', env: { AGENT_GATEWAY_CONFIG: config } }), launchBrowser()]);
});
after(async () => {
  await browser?.close();
  await gw?.stop();
  fs.rmSync(configDir, { recursive: true, force: true });
});

/** A page on a new chat of `profile` (this origin's saved chats are forgotten first). @param {string} [profile] */
async function freshPage(profile = 'default') {
  const page = await browser.context.newPage();
  await page.setViewportSize({ width: 1280, height: 900 });
  page.on('pageerror', (err) => pageErrors.push(err.message));
  page.on('console', (msg) => {
    if (msg.type() === 'error' && !/WebSocket|ERR_|Failed to load resource/.test(msg.text())) pageErrors.push(msg.text());
  });
  await page.goto(`${gw.url}/healthz`);
  await page.evaluate(() => localStorage.clear());
  await page.goto(`${gw.url}/?max_backoff_ms=500#token=${TOKENS.alice}`);
  await ready(page);
  if (profile !== 'default') {
    await page.waitForSelector('#profile-label:not([hidden])');
    await page.selectOption('#profile-picker', profile);
    await page.click('#new-chat');
    await page.waitForFunction((p) => /** @type {any} */ (window).agw?.chat?.profile === p, profile, { timeout: 60000 });
    await ready(page);
  }
  await page.evaluate(() => {
    const log = /** @type {string[]} */ ((/** @type {any} */ (window)).announced = []);
    const region = /** @type {HTMLElement} */ (document.getElementById('announcer'));
    new MutationObserver(() => region.textContent && log.push(region.textContent)).observe(region, { childList: true, characterData: true, subtree: true });
  });
  return page;
}

/** @param {Page} page */
async function ready(page) {
  await page.waitForSelector('.conn[data-state="open"]', { timeout: 60000 });
  await page.waitForFunction(() => /** @type {any} */ (window).agw?.chat?.sessionState === 'idle', null, { timeout: 60000 });
}

/** @param {Page} page @param {string} text */
async function send(page, text) {
  await page.fill('#prompt', text);
  await page.press('#prompt', 'Enter');
}

/** @param {Page} page @param {number} n */
function results(page, n, timeout = 60000) {
  return page.waitForFunction((count) => document.querySelectorAll('#items .result').length >= count, n, { timeout });
}

/** @param {Page} page */
function sessionId(page) {
  return page.evaluate(() => /** @type {string} */ ((/** @type {any} */ (window)).agw.session.id));
}

/** @param {Page} page */
function announced(page) {
  return page.evaluate(() => /** @type {string[]} */ ((/** @type {any} */ (window)).announced));
}

/** @param {Page} page @param {string} selector */
function texts(page, selector) {
  return page.$$eval(selector, (els) => els.map((el) => /** @type {HTMLElement} */ (el).innerText.trim()));
}

/** Allow the approval that comes next. @param {Page} page */
async function allow(page) {
  await page.waitForSelector('.card.approval.pending .allow', { timeout: 60000 });
  await page.click('.card.approval.pending .allow');
}

/** No critical or serious axe violation, in light and in dark mode. @param {Page} page @param {string} screen */
async function assertAccessible(page, screen) {
  for (const scheme of /** @type {const} */ (['light', 'dark'])) {
    await page.emulateMedia({ colorScheme: scheme });
    await page.waitForTimeout(300); // colour transitions settle
    if (!(await page.evaluate(() => 'axe' in window))) await page.addScriptTag({ content: AXE });
    const violations = await page.evaluate(async () => {
      const { violations } = await /** @type {any} */ (window).axe.run(document, { resultTypes: ['violations'] });
      return violations.filter((/** @type {any} */ v) => v.impact === 'critical' || v.impact === 'serious')
        .map((/** @type {any} */ v) => `${v.id}: ${v.nodes.map((/** @type {any} */ n) => `${n.target.join(' ')} ${n.failureSummary}`).join(' | ')}`);
    });
    assert.deepEqual(violations, [], `${screen} in ${scheme} mode`);
  }
  await page.emulateMedia({ colorScheme: null });
}

describe('chat page: context, tasks, thinking, rewind, fork', () => {
  test('the context meter says how full the context is after each turn; Compact summarises the conversation', async () => {
    const page = await freshPage();
    assert.ok(await page.locator('#context').isHidden(), 'no meter before the first turn');
    await send(page, 'SCRIPT:hello');
    await results(page, 1);
    await page.waitForFunction(() => /\/ \d+ tokens|tokens:/.test(document.getElementById('context')?.title ?? ''), null, { timeout: 10000 });
    const label = await page.locator('#context-label').innerText();
    const shown = Number(/^Context (\d+)% full$/.exec(label)?.[1]);
    const asked = await page.evaluate(() => /** @type {any} */ (window).agw.session.getContextUsage());
    assert.ok(shown > 0 && shown === Math.round(asked.percentage), `the meter shows get_context_usage's figure (${label}, ${asked.percentage})`);
    assert.match(await page.locator('#context').getAttribute('title') ?? '', /^\S+ of \S+ tokens: .*Messages/, 'the breakdown in the tooltip');
    // Every label the meter shows, to see "Compacting…" however quick the compact is.
    await page.evaluate(() => {
      const seen = /** @type {string[]} */ ((/** @type {any} */ (window)).meterLabels = []);
      const el = /** @type {HTMLElement} */ (document.getElementById('context-label'));
      new MutationObserver(() => seen.push(el.textContent ?? '')).observe(el, { childList: true, characterData: true, subtree: true });
    });
    await page.click('#compact');
    await page.waitForSelector('#items .msg-user.command');
    assert.equal(await page.locator('#items .msg-user.command .text').innerText(), 'Compact the conversation');
    assert.equal(await page.locator('#items .msg-user.command .msg-actions').isHidden(), true, 'no Edit on a command');
    await results(page, 2);
    await page.waitForSelector('#items .notice[data-code="compacted"]');
    assert.match(await page.locator('#items .result').nth(1).innerText(), /✓\s*Compacted/);
    assert.equal(await page.locator('#items .result.last .regenerate').count(), 0, 'nothing to regenerate in a compact');
    await until(async () => (await announced(page)).some((t) => /^Conversation compacted: context \d+% full/.test(t)), 10000, 'the compact announced');
    assert.match(await page.locator('#context-label').innerText(), /^Context \d+% full · compacted/);
    assert.ok((await page.evaluate(() => /** @type {any} */ (window).meterLabels)).includes('Compacting…'), 'progress shown while it ran');
    // The conversation goes on, and the next turn's figure replaces the compact's news.
    await send(page, 'SCRIPT:hello');
    await results(page, 3);
    await page.waitForFunction(() => /^Context \d+% full$/.test(document.getElementById('context-label')?.textContent ?? ''), null, { timeout: 10000 });
    await screenshot(page, 'agent-01-context');
    await page.close();
  });

  test('thinking streams in a collapsed, dimmed section apart from the answer, and opens to show all of it', async () => {
    const page = await freshPage();
    await send(page, `SCRIPT:${JSON.stringify({ steps: [[{ thinking: THOUGHT }, { text: 'The answer.' }]], chunk: 4, delay_ms: 40 })}`);
    await page.waitForSelector('#items details.thinking.streaming', { timeout: 60000 });
    assert.equal(await page.locator('#items .thinking .thinking-label').innerText(), 'Thinking…');
    await page.waitForFunction(() => (document.querySelector('#items .thinking-preview')?.textContent ?? '').length > 8, null, { timeout: 10000 });
    assert.ok(THOUGHT.includes((await page.locator('#items .thinking-preview').innerText()).replace(/^…/, '')), 'its latest words show as it streams');
    assert.equal(await page.locator('#items details.thinking[open]').count(), 0, 'collapsed');
    await screenshot(page, 'agent-02-thinking');
    await results(page, 1);
    assert.equal(await page.locator('#items .thinking .thinking-label').innerText(), 'Thought process');
    assert.equal(await page.locator('#items .msg-assistant .thinking, #items .thinking .msg-assistant').count(), 0, 'apart from the answer');
    assert.deepEqual(await texts(page, '#items .msg-assistant .md'), ['The answer.'], 'the answer holds no thinking');
    const order = await page.$$eval('#items > *', (els) => els.map((el) => el.className.split(' ')[0]));
    assert.deepEqual(order, ['msg-user', 'thinking', 'msg-assistant', 'result'], 'the thinking comes before the answer');
    await page.click('#items .thinking summary');
    assert.equal(await page.locator('#items .thinking .md').innerText(), THOUGHT);
    await page.close();
  });

  test('a background task is listed with Stop, also after a reload; stopping it takes it off the list', async () => {
    const page = await freshPage();
    await send(page, BACKGROUND);
    await allow(page);
    await page.waitForSelector('#tasks:not([hidden]) .task', { timeout: 60000 });
    await results(page, 1);
    assert.equal(await page.locator('#tasks .task-name').innerText(), 'Wait a minute');
    assert.match(await page.locator('#tasks .task-detail').innerText(), /shell/);
    assert.equal(await page.locator('#tasks-count').innerText(), '1');
    assert.ok((await announced(page)).includes('Background task started: Wait a minute.'));
    // A page that attaches again sees the task still running (the session's `tasks`).
    await page.reload();
    await ready(page);
    await page.waitForSelector('#tasks:not([hidden]) .task', { timeout: 10000 });
    assert.equal(await page.locator('#tasks .task-stop').getAttribute('aria-label'), 'Stop Wait a minute');
    await screenshot(page, 'agent-03-task');
    await assertAccessible(page, 'a running task');
    await page.evaluate(() => {
      const log = /** @type {string[]} */ ((/** @type {any} */ (window)).announced = []);
      const region = /** @type {HTMLElement} */ (document.getElementById('announcer'));
      new MutationObserver(() => region.textContent && log.push(region.textContent)).observe(region, { childList: true, characterData: true, subtree: true });
    });
    await page.click('#tasks .task-stop');
    await page.waitForSelector('#tasks', { state: 'hidden', timeout: 30000 });
    assert.equal(await page.locator('#tasks .task').count(), 0);
    await until(async () => (await announced(page)).includes('Stopped: Wait a minute.'), 5000, 'the stop announced');
    const info = await testClient(gw.url).getSession(await sessionId(page));
    assert.deepEqual(info.tasks, [], 'the gateway has no running task left');
    await page.close();
  });

  test('rewind files is offered where the profile keeps checkpoints, and puts the files back', async () => {
    const page = await freshPage();
    await send(page, 'SCRIPT:write');
    await allow(page);
    await results(page, 1);
    const notes = path.join(gw.sessionsDir, await sessionId(page), 'work', 'notes.txt');
    assert.ok(fs.existsSync(notes), 'the agent wrote notes.txt');
    await page.locator('#items .msg-user').hover();
    const rewind = page.locator('#items .msg-user .rewind');
    assert.ok(await rewind.isVisible(), 'offered on the prompt');
    await rewind.click();
    await page.waitForSelector('#confirm-dialog[open]');
    assert.equal(await page.locator('#confirm-title').innerText(), 'Rewind files to here?');
    assert.match(await page.locator('#confirm-text').innerText(), /SCRIPT:write/);
    await page.click('#confirm-ok');
    await page.waitForSelector('#items .notice[data-code="files_rewound"]', { timeout: 30000 });
    assert.equal(await page.locator('#items .notice[data-code="files_rewound"]').innerText(), 'Files put back as they were before “SCRIPT:write” (by alice)');
    assert.ok(!fs.existsSync(notes), 'notes.txt is gone again');
    await until(async () => (await announced(page)).includes('Files rewound.'), 5000, 'the rewind announced');
    await page.close();

    const plain = await freshPage('plain');
    await send(plain, 'SCRIPT:hello');
    await results(plain, 1);
    await plain.locator('#items .msg-user').hover();
    assert.ok(await plain.locator('#items .msg-user .edit').isVisible());
    assert.ok(await plain.locator('#items .msg-user .rewind').isHidden(), 'not offered without checkpoints');
    await plain.close();
  });

  test('edit and resend forks before the message into a new chat; regenerate forks before the last prompt', async () => {
    const page = await freshPage();
    const [one, two, three] = ['one', 'two', 'three'].map((t) => script([{ text: t }]));
    await send(page, one);
    await results(page, 1);
    await send(page, two);
    await results(page, 2);
    const source = await sessionId(page);
    await page.locator('#items .msg-user').nth(1).hover();
    await page.locator('#items .msg-user').nth(1).locator('.edit').click();
    const editor = page.locator('#items .msg-user.editing .edit-text');
    assert.equal(await editor.inputValue(), two);
    assert.ok(await editor.evaluate((el) => el === document.activeElement), 'the editor has focus');
    await editor.press('Escape');
    assert.equal(await page.locator('#items .edit-form').count(), 0, 'Escape cancels');
    await page.locator('#items .msg-user').nth(1).locator('.edit').click();
    await editor.fill(three);
    await editor.press('Enter');
    await page.waitForFunction((old) => { const s = /** @type {any} */ (window).agw.session; return s.id && s.id !== old; }, source, { timeout: 30000 });
    const edited = await sessionId(page);
    await results(page, 2);
    assert.deepEqual(await texts(page, '#items .msg-user .text'), [one, three], 'the fork holds the history before the edited message, then the edit');
    assert.deepEqual(await texts(page, '#items .msg-assistant .md'), ['one', 'three']);
    const original = await testClient(gw.url).getSession(source);
    assert.equal(original.turns, 2, 'the first chat stays as it was');
    await page.waitForFunction((id) => document.querySelector(`#chat-list li[data-id="${id}"] .chat-row-title`)?.textContent?.endsWith('(edited)'), edited);
    assert.equal(await page.locator(`#chat-list li[data-id="${source}"]`).count(), 1, 'both chats are listed');
    await screenshot(page, 'agent-04-edited');

    const before = await testClient(gw.url).getSession(edited);
    await page.click('#items .result.last .regenerate');
    await page.waitForFunction((old) => { const s = /** @type {any} */ (window).agw.session; return s.id && s.id !== old; }, edited, { timeout: 30000 });
    await results(page, 2);
    assert.deepEqual(await texts(page, '#items .msg-user .text'), [one, three], 'the last prompt again, after the same history');
    const after = await testClient(gw.url).getSession(edited);
    assert.deepEqual([after.turns, after.last_seq], [before.turns, before.last_seq], 'the edited chat stays as it was');
    const regenerated = await sessionId(page);
    await page.close();
    await Promise.all([source, edited, regenerated].map((id) => testClient(gw.url).closeSession(id))); // within the session limit
  });

  test('no errors in the page', () => {
    assert.deepEqual(pageErrors, []);
  });
});
