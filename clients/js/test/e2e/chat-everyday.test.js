// The chat page as someone who chats every day uses it (issue 13), at a desktop and a phone
// viewport: chat list, demo labelling, one card per tool call, focus and keys, copy, syntax
// colours, edit and regenerate, a chat whose session is gone. axe-core runs on every main screen
// in light and dark mode: no critical or serious violation. Real gateway (demo mode), real CLI,
// scripted model, Debian chromium. Screenshots go to test-artifacts/e2e/.
import assert from 'node:assert/strict';
import fs from 'node:fs';
import { createRequire } from 'node:module';
import { after, before, describe, test } from 'node:test';
import { HELLO, testClient, until } from '../helpers/flows.js';
import { launchBrowser, screenshot } from '../helpers/browser.js';
import { startGateway, TOKENS } from '../helpers/gateway.js';
import { startProxy } from '../helpers/proxy.js';

/** @typedef {import('playwright-core').Page} Page */

const AXE = fs.readFileSync(createRequire(import.meta.url).resolve('axe-core/axe.min.js'), 'utf8');
const VIEWPORTS = [
  { name: 'desktop', width: 1280, height: 900 },
  { name: 'phone', width: 390, height: 844 },
];

/** @type {import('../helpers/gateway.js').Gateway} */
let gw;
/** @type {import('../helpers/proxy.js').Proxy} */
let proxy;
/** @type {Awaited<ReturnType<typeof launchBrowser>>} */
let browser;
/** @type {string[]} */
const pageErrors = [];

before(async () => {
  [gw, browser] = await Promise.all([startGateway({ name: 'e2e-everyday' }), launchBrowser()]);
  proxy = await startProxy(gw.port);
  await browser.context.grantPermissions(['clipboard-read', 'clipboard-write'], { origin: proxy.url });
});
after(async () => {
  await browser?.close();
  await proxy?.stop();
  await gw?.stop();
});

/**
 * A page at `viewport` on a new chat (this origin's saved chats are forgotten first).
 * @param {{ width: number, height: number }} viewport
 * @param {{ token?: string, base?: string }} [options]
 */
async function freshPage(viewport, options = {}) {
  const page = await browser.context.newPage();
  await page.setViewportSize({ width: viewport.width, height: viewport.height });
  page.on('pageerror', (err) => pageErrors.push(err.message));
  page.on('console', (msg) => {
    if (msg.type() === 'error' && !/WebSocket|ERR_|Failed to load resource/.test(msg.text())) pageErrors.push(msg.text());
  });
  const base = options.base ?? proxy.url;
  await page.goto(`${base}/healthz`);
  await page.evaluate(() => localStorage.clear());
  await page.goto(`${base}/?max_backoff_ms=500#token=${options.token ?? TOKENS.alice}`);
  await page.waitForSelector('.conn[data-state="open"]', { timeout: 60000 });
  await page.waitForFunction(() => /** @type {any} */ (window).agw?.chat?.sessionState === 'idle', null, { timeout: 60000 });
  // Everything said to screen readers, in order.
  await page.evaluate(() => {
    const log = /** @type {string[]} */ ((/** @type {any} */ (window)).announced = []);
    const region = /** @type {HTMLElement} */ (document.getElementById('announcer'));
    new MutationObserver(() => region.textContent && log.push(region.textContent)).observe(region, { childList: true, characterData: true, subtree: true });
  });
  return page;
}

/** No critical or serious axe violation, in light and in dark mode. @param {Page} page @param {string} screen */
async function assertAccessible(page, screen) {
  for (const scheme of /** @type {const} */ (['light', 'dark'])) {
    await page.emulateMedia({ colorScheme: scheme });
    await page.waitForTimeout(300); // colour transitions settle
    if (!(await page.evaluate(() => 'axe' in window))) await page.addScriptTag({ content: AXE });
    const violations = await page.evaluate(async () => {
      const axe = /** @type {any} */ (window).axe;
      const { violations } = await axe.run(document, { resultTypes: ['violations'] });
      return violations.filter((/** @type {any} */ v) => v.impact === 'critical' || v.impact === 'serious')
        .map((/** @type {any} */ v) => `${v.id}: ${v.nodes.map((/** @type {any} */ n) => `${n.target.join(' ')} ${n.failureSummary}`).join(' | ')}`);
    });
    assert.deepEqual(violations, [], `${screen} in ${scheme} mode`);
  }
  await page.emulateMedia({ colorScheme: null });
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
function focused(page) {
  return page.evaluate(() => {
    const el = document.activeElement;
    return el ? `${el.tagName.toLowerCase()}${el.id ? `#${el.id}` : ''}${el.className ? `.${String(el.className).split(' ').join('.')}` : ''}` : 'none';
  });
}

/** @param {Page} page */
function announced(page) {
  return page.evaluate(() => /** @type {string[]} */ ((/** @type {any} */ (window)).announced));
}

/** @param {Page} page */
function sessionId(page) {
  return page.evaluate(() => /** @type {string} */ ((/** @type {any} */ (window)).agw.session.id));
}

/** The chat list, opening the drawer on a phone. @param {Page} page */
async function openList(page) {
  const open = await page.evaluate(() => document.body.classList.contains('drawer-open'));
  if (!open && await page.locator('#chats-toggle').isVisible()) {
    await page.click('#chats-toggle');
    await page.waitForFunction(() => document.body.classList.contains('drawer-open'));
    await page.waitForTimeout(250); // the slide-in
    assert.ok(await page.evaluate(() => /** @type {HTMLElement} */ (document.querySelector('.main')).inert), 'the drawer is modal');
    assert.ok(await page.evaluate(() => document.getElementById('sidebar')?.contains(document.activeElement)), 'focus moves into the drawer');
  }
  await page.waitForSelector('#chat-list li', { state: 'visible' });
}

for (const viewport of VIEWPORTS) {
  describe(`chat page, everyday use (${viewport.name} ${viewport.width}×${viewport.height})`, () => {
    const shot = (/** @type {Page} */ page, /** @type {string} */ name) => screenshot(page, `everyday-${viewport.name}-${name}`);

    test('empty screen: demo stated in the header, no session id, labelled controls, composer focused and fitting', async () => {
      const page = await freshPage(viewport);
      assert.equal(await focused(page), 'textarea#prompt', 'the composer has focus on load');
      assert.ok(await page.locator('#demo-badge').isVisible(), 'a demo badge in the header');
      assert.match(await page.locator('#demo-badge').innerText(), /^Demo/);
      const id = await sessionId(page);
      assert.ok(!(await page.locator('body').innerText()).includes(id), 'no session id on screen');
      const header = await page.locator('.topbar').boundingBox();
      assert.ok(header && header.height <= 56, `the header is one compact row (${header?.height} px)`);
      assert.equal(await page.getByLabel('Model', { exact: true }).count(), 1, 'the model picker has a label');
      assert.equal(await page.getByLabel('Mode', { exact: true }).count(), 1, 'the mode picker has a label');
      assert.equal(await page.locator('#prompt').getAttribute('placeholder'), 'Message the agent…');
      const fits = await page.evaluate(() => {
        const composer = /** @type {HTMLElement} */ (document.getElementById('composer'));
        const send = /** @type {HTMLElement} */ (document.getElementById('send')).getBoundingClientRect();
        return composer.scrollWidth <= composer.clientWidth && send.right <= window.innerWidth && document.documentElement.scrollWidth <= window.innerWidth;
      });
      assert.ok(fits, 'the composer and the page fit the width');
      await shot(page, '01-empty');
      await assertAccessible(page, 'empty');
      await page.close();
    });

    test('streaming: the conversation says the agent is working, only finished messages are announced, Esc stops', async () => {
      const page = await freshPage(viewport);
      await send(page, 'SCRIPT:hello');
      await page.waitForSelector('#working:not([hidden])', { timeout: 10000 });
      assert.equal(await page.locator('#items .msg-user .badge:visible').count(), 0, 'no "queued" badge while the agent starts');
      await results(page, 1);
      assert.ok(await page.locator('#working').isHidden(), 'the working signal goes when the turn ends');
      assert.equal(await page.locator('[aria-live]').count(), 1, 'one live region');
      assert.equal(await page.locator('#timeline[aria-live], #timeline [aria-live]').count(), 0, 'not the conversation');
      await until(async () => (await announced(page)).includes('Done.'), 5000, 'the end announced');
      const said = await announced(page);
      assert.deepEqual(said, [`The agent says: ${HELLO}`, 'Done.'], 'the finished message once, no fragments');
      const result = await page.locator('#items .result').innerText();
      assert.match(result, /demo — no charge/);
      assert.doesNotMatch(result, /\$|tokens| in ·|model calls/, 'no invented dollars, no token counts');

      // Slow enough (about 15 s) that the screenshot and the accessibility check can't outlast it on a busy machine.
      await send(page, `SCRIPT:${JSON.stringify({ steps: [[{ text: 'A slow reply to stop. '.repeat(25) }]], chunk: 8, delay_ms: 200 })}`);
      await page.waitForSelector('#items .msg-assistant.streaming', { timeout: 60000 });
      assert.ok(await page.locator('#items .result .regenerate').isHidden(), 'no Regenerate while a turn runs');
      await shot(page, '02-streaming');
      await assertAccessible(page, 'streaming');
      assert.equal(await focused(page), 'textarea#prompt');
      await page.keyboard.press('Escape');
      await results(page, 2);
      assert.match(await page.locator('#items .result').nth(1).innerText(), /Stopped/);
      await page.waitForSelector('#stop', { state: 'hidden' });
      assert.equal(await focused(page), 'textarea#prompt', 'focus stays on the composer after Stop');
      await page.close();
    });

    test('a tool call is one card: request, decision and output; Allow takes focus and is announced; deny ends honestly', async () => {
      const page = await freshPage(viewport);
      await send(page, 'SCRIPT:bash');
      await page.waitForSelector('#items .tool .card.approval.pending', { timeout: 60000 });
      assert.equal(await page.locator('#items .tool').count(), 1);
      assert.equal(await page.locator('#items > .card.approval').count(), 0, 'no second box for the approval');
      await page.waitForFunction(() => document.activeElement?.classList.contains('allow'), null, { timeout: 5000 });
      assert.ok((await announced(page)).some((t) => /^Bash needs your permission: .*echo hello-from-agent.*Allow or deny\.$/.test(t)));
      assert.equal(await page.locator('#items .tool .tool-icon').innerText(), '>_', 'a terminal icon, not "Ba"');
      await shot(page, '03-approval');
      await assertAccessible(page, 'approval pending');
      assert.equal(await page.locator('.card.approval.pending .allow').getAttribute('aria-keyshortcuts'), 'Y');
      await page.keyboard.press('y'); // Allow
      await results(page, 1);
      assert.equal(await focused(page), 'textarea#prompt', 'focus back on the composer after Allow');
      const card = page.locator('#items .tool').first();
      assert.match(await card.locator('.resolution').innerText(), /^Allowed by alice\.$/);
      await card.locator('summary').click();
      assert.equal(await card.locator('.tool-result').innerText(), 'hello-from-agent', 'the output in the same card');
      assert.match(await page.locator('#items .result').first().innerText(), /✓\s*Done/);

      await send(page, 'SCRIPT:bash');
      await page.waitForSelector('#items .tool .card.approval.pending', { timeout: 60000 });
      await page.waitForFunction(() => document.activeElement?.classList.contains('allow'), null, { timeout: 5000 });
      await page.keyboard.press('Tab'); // past "Always allow" to Deny
      if (await focused(page) !== 'button.btn.btn-danger.deny') await page.keyboard.press('Tab');
      assert.equal(await focused(page), 'button.btn.btn-danger.deny', 'Deny is reachable by Tab');
      await page.keyboard.press('n'); // N denies, as in the CLI
      await results(page, 2);
      assert.equal(await focused(page), 'textarea#prompt', 'focus back on the composer after Deny');
      const denied = page.locator('#items .tool').nth(1);
      assert.equal(await denied.getAttribute('data-status'), 'denied');
      assert.match(await denied.locator('.resolution').innerText(), /^Denied by alice/);
      const end = page.locator('#items .result').nth(1);
      assert.equal(await end.getAttribute('data-status'), 'warn');
      assert.match(await end.innerText(), /Done without Bash \(denied\)/);
      assert.doesNotMatch(await end.innerText(), /✓/);
      await shot(page, '04-denied');
      await page.close();
    });

    test('question: options take focus, the free-text field has a label, answering returns to the composer', async () => {
      const page = await freshPage(viewport);
      await send(page, 'SCRIPT:ask');
      await page.waitForSelector('.card.question.pending', { timeout: 60000 });
      assert.equal(await page.getByLabel('Or type an answer').count(), 1);
      await page.waitForFunction(() => document.activeElement?.classList.contains('option'), null, { timeout: 5000 });
      assert.ok((await announced(page)).includes('The agent asks: Which color?'));
      await shot(page, '05-question');
      await assertAccessible(page, 'question');
      await page.keyboard.press('Tab');
      assert.equal(await page.evaluate(() => /** @type {HTMLElement} */ (document.activeElement).dataset.label), 'Blue');
      await page.keyboard.press('Enter');
      await results(page, 1);
      assert.equal((await page.locator('#items .msg-assistant .md').last().innerText()).trim(), 'You answered: Blue');
      assert.equal(await focused(page), 'textarea#prompt');
      await page.close();
    });

    test('copy code and messages, syntax colours, keyboard-scrollable code; edit and resend, regenerate (in a branch)', async () => {
      const page = await freshPage(viewport);
      await send(page, 'SCRIPT:long');
      await results(page, 1);
      const block = page.locator('#items .code-block').first();
      assert.ok(await block.locator('.hljs-keyword').count() > 0, 'highlight.js coloured the python');
      assert.equal(await block.locator('pre').getAttribute('tabindex'), '0', 'scrollable by keyboard');
      const code = await block.locator('code').innerText();
      await block.locator('.copy-code').click();
      assert.equal(await page.evaluate(() => navigator.clipboard.readText()), code);
      assert.equal(await block.locator('.copy-code').innerText(), 'Copied');
      await page.locator('#items .msg-assistant').first().hover();
      await page.locator('#items .msg-assistant .copy-message').first().click();
      const copied = await page.evaluate(() => navigator.clipboard.readText());
      assert.ok(copied.startsWith('Here is a longer answer') && copied.includes('```python'), 'the message as markdown');

      await send(page, 'SCRIPT:hello');
      await results(page, 2);
      assert.equal((await page.locator('#items .msg-assistant .md').last().innerText()).trim(), HELLO);
      assert.equal(await page.locator('#items .result.last .regenerate').count(), 1, 'regenerate on the last turn only');
      assert.ok(await page.locator('#items .result').first().locator('.regenerate').isHidden());

      // Edit and resend, regenerate: each continues in a new chat branching off before that prompt.
      const prompts = () => page.$$eval('#items .msg-user .text', (els) => els.map((el) => el.textContent));
      const switched = async (/** @type {string} */ from) => {
        await page.waitForFunction((old) => { const s = /** @type {any} */ (window).agw.session; return s.id && s.id !== old; }, from, { timeout: 30000 });
        await results(page, 2);
      };
      const first = await sessionId(page);
      await page.locator('#items .msg-user').nth(1).hover();
      await page.locator('#items .msg-user .edit').nth(1).click();
      assert.equal(await page.locator('#items .edit-text').inputValue(), 'SCRIPT:hello');
      assert.equal(await focused(page), 'textarea.edit-text', 'the editor has focus');
      await shot(page, '06-editing');
      await assertAccessible(page, 'editing a prompt');
      await page.fill('#items .edit-text', 'Say hello');
      await page.press('#items .edit-text', 'Enter');
      await switched(first);
      assert.deepEqual(await prompts(), ['SCRIPT:long', 'Say hello'], 'the edited prompt after the history before it');
      assert.equal(await focused(page), 'textarea#prompt');
      const edited = await sessionId(page);
      const api = testClient(gw.url);
      assert.equal((await api.getSession(first)).turns, 2, 'the first chat stays as it was');
      // Three chats for one test: each is closed once done with, within the principal's session limit (10).
      await api.closeSession(first);
      await page.click('#items .result.last .regenerate');
      await switched(edited);
      assert.deepEqual(await prompts(), ['SCRIPT:long', 'Say hello'], 'the last prompt again, after the same history');
      await shot(page, '06-code-and-actions');
      const regenerated = await sessionId(page);
      await page.close();
      await Promise.all([edited, regenerated].map((id) => api.closeSession(id)));
    });

    test('chat list: new chat keeps the old one, switch back, rename, delete only when confirmed', async () => {
      const page = await freshPage(viewport, { token: TOKENS.bob });
      const api = testClient(gw.url, { token: TOKENS.bob });
      await send(page, 'SCRIPT:hello');
      await results(page, 1);
      const first = await sessionId(page);
      // A chat started elsewhere (another browser, a script) is listed under its first prompt.
      const elsewhere = await api.open({ profile: 'default' });
      await elsewhere.run(`Hello from elsewhere ${viewport.name}`, { timeoutMs: 60000 });
      elsewhere.disconnect();
      await openList(page);
      await page.click('#new-chat');
      await page.waitForFunction((old) => { const s = /** @type {any} */ (window).agw.session; return s.id && s.id !== old; }, first, { timeout: 60000 });
      await page.waitForSelector('.conn[data-state="open"]');
      const second = await sessionId(page);
      assert.notEqual((await api.getSession(first)).state, 'closed', 'a new chat does not close the old one');
      await openList(page);
      await page.click('#new-chat');
      assert.equal(await sessionId(page), second, 'an empty chat on screen already is the new chat');
      assert.equal(await focused(page), 'textarea#prompt');
      await send(page, 'SCRIPT:ask');
      await page.waitForSelector('.card.question.pending', { timeout: 60000 });

      await openList(page);
      const row = (/** @type {string} */ id) => page.locator(`#chat-list li[data-id="${id}"]`);
      await page.waitForFunction((id) => document.querySelector(`#chat-list li[data-id="${id}"] .chat-row-title`)?.textContent === 'SCRIPT:ask', second);
      assert.equal(await row(first).locator('.chat-row-title').innerText(), 'SCRIPT:hello', 'titled by its first prompt');
      await page.waitForFunction((id) => document.querySelector(`#chat-list li[data-id="${id}"] .chat-row-title`)?.textContent?.startsWith('Hello from elsewhere'), elsewhere.id, { timeout: 10000 });
      assert.equal(await row(second).locator('.chat-open').getAttribute('aria-current'), 'page');
      await page.waitForSelector(`#chat-list li[data-id="${second}"][data-state="waiting for you"]`, { timeout: 5000 });
      assert.match(await row(second).innerText(), /waiting for you/);
      await shot(page, '07-chat-list');
      await assertAccessible(page, 'chat list');

      // Switch back: the first chat's history, attached again.
      await row(first).locator('.chat-open').click();
      await page.waitForFunction((id) => /** @type {any} */ (window).agw.session.id === id && document.querySelectorAll('#items .result').length === 1, first, { timeout: 30000 });
      assert.equal((await page.locator('#items .msg-assistant .md').first().innerText()).trim(), HELLO);
      assert.equal(await page.locator('#chat-title').innerText(), 'SCRIPT:hello');

      // Rename: kept in this browser, across a reload.
      await openList(page);
      await row(first).locator('.chat-rename').click();
      await page.fill('.chat-rename-input', 'Greetings');
      await page.press('.chat-rename-input', 'Enter');
      assert.equal(await row(first).locator('.chat-row-title').innerText(), 'Greetings');
      await page.reload();
      await page.waitForSelector('.conn[data-state="open"]', { timeout: 30000 });
      assert.equal(await page.locator('#chat-title').innerText(), 'Greetings');

      // Delete: cancel keeps it; confirm closes its session and removes it.
      await openList(page);
      await row(second).locator('.chat-delete').click();
      await page.waitForSelector('#confirm-dialog[open]');
      assert.match(await page.locator('#confirm-text').innerText(), /SCRIPT:ask/);
      await page.click('#confirm-cancel');
      assert.equal(await row(second).count(), 1);
      assert.notEqual((await api.getSession(second)).state, 'closed');
      await row(second).locator('.chat-delete').click();
      await page.click('#confirm-ok');
      await page.waitForFunction((id) => !document.querySelector(`#chat-list li[data-id="${id}"]`), second);
      await until(async () => (await api.getSession(second)).state === 'closed', 10000, 'the deleted chat\'s session closed');
      assert.equal(await page.evaluate(() => /** @type {any} */ (window).agw.session.id), first, 'still on the open chat');

      // An empty chat left for another is closed, and not listed.
      await openList(page);
      await page.click('#new-chat');
      await page.waitForFunction((old) => { const s = /** @type {any} */ (window).agw.session; return s.id && s.id !== old; }, first, { timeout: 60000 });
      const blank = await sessionId(page);
      await openList(page);
      await row(first).locator('.chat-open').click();
      await until(async () => (await api.getSession(blank)).state === 'closed', 10000, 'the empty chat closed');
      assert.equal(await row(blank).count(), 0);
      await page.close();
    });
  });
}

test('a chat whose session is gone (restart without a shared store) stays readable, marked ended, and continues in a new chat', async () => {
  const first = await startGateway({ name: 'e2e-restart-a' });
  const cut = await startProxy(first.port);
  /** @type {import('../helpers/gateway.js').Gateway | null} */
  let second = null;
  const page = await freshPage(VIEWPORTS[1], { base: cut.url });
  try {
    await send(page, 'SCRIPT:hello');
    await results(page, 1);
    const before = await page.locator('#items .msg-assistant .md').innerText();
    await page.waitForTimeout(700); // the page saves what it shows
    await first.crash(); // a restart without a shared store: the session is unknown to the next gateway
    second = await startGateway({ name: 'e2e-restart-b' });
    cut.upstreamPort = second.port;
    cut.severAll();
    await page.waitForSelector('.conn[data-state="closed"]', { timeout: 30000 });
    await page.waitForSelector('#banner:not([hidden])');
    assert.match(await page.locator('#banner-text').innerText(), /^This chat has ended: its session is gone/);
    assert.equal(await page.locator('#conn-label').innerText(), 'Ended');
    assert.equal(await page.locator('#items .msg-assistant .md').innerText(), before, 'the conversation is still there');
    assert.equal(await page.locator('#items .msg-user .text').innerText(), 'SCRIPT:hello');
    assert.ok(await page.locator('#prompt').isDisabled());
    await screenshot(page, 'everyday-phone-08-ended');
    await openList(page);
    assert.match(await page.locator('#chat-list li').first().innerText(), /ended/);
    await page.click('#drawer-close');
    await page.click('#banner-action'); // Continue in a new chat
    await page.waitForSelector('.conn[data-state="open"]', { timeout: 60000 });
    await page.waitForFunction(() => /** @type {any} */ (window).agw.session?.id, null, { timeout: 30000 });
    assert.equal(await page.locator('#items > *').count(), 0);
    assert.match(await page.locator('#chat-title').innerText(), /SCRIPT:hello \(continued\)/);
    await send(page, 'SCRIPT:hello');
    await results(page, 1);
    await openList(page);
    const rows = await page.$$eval('#chat-list li', (els) => els.map((el) => /** @type {HTMLElement} */ (el).dataset.state));
    assert.deepEqual(rows, ['live', 'ended'], 'the ended chat is still listed, under the new one');
  } finally {
    await page.close();
    await cut.stop();
    await second?.stop();
    await first.stop();
  }
});

test('no errors in the page', () => {
  assert.deepEqual(pageErrors, []);
});
