// The chat page in real headless Chromium, against a real gateway in demo mode, through a TCP
// proxy the test can cut. Screenshots of the main states go to test-artifacts/e2e/.
import assert from 'node:assert/strict';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { after, before, describe, test } from 'node:test';
import { foldChat } from '../../src/index.js';
import { HELLO, referenceEvents, sleep, testClient } from '../helpers/flows.js';
import { launchBrowser, screenshot } from '../helpers/browser.js';
import { startGateway, TOKENS } from '../helpers/gateway.js';
import { startProxy } from '../helpers/proxy.js';

/** @typedef {import('playwright-core').Page} Page */

/** @type {import('../helpers/gateway.js').Gateway} */
let gw;
/** @type {import('../helpers/proxy.js').Proxy} */
let proxy;
/** @type {Awaited<ReturnType<typeof launchBrowser>>} */
let browser;
/** @type {string[]} */
const pageErrors = [];

before(async () => {
  [gw, browser] = await Promise.all([startGateway({ name: 'e2e' }), launchBrowser()]);
  proxy = await startProxy(gw.port);
});
after(async () => {
  await browser?.close();
  await proxy?.stop();
  await gw?.stop();
});

/**
 * A page on a new session (this origin's saved session is forgotten first).
 * @param {string} [query] e.g. '?retry_ws_ms=1500'
 * @param {'open' | 'fallback'} [state] the connection state to wait for
 */
async function freshPage(query = '', state = 'open') {
  const page = await browser.context.newPage();
  page.on('pageerror', (err) => pageErrors.push(err.message));
  page.on('console', (msg) => {
    if (msg.type() === 'error' && !/WebSocket|ERR_|Failed to load resource/.test(msg.text())) pageErrors.push(msg.text());
  });
  await page.goto(`${proxy.url}/healthz`);
  await page.evaluate(() => localStorage.clear());
  await page.goto(`${proxy.url}/${query || '?max_backoff_ms=1000'}#token=${TOKENS.alice}`);
  await waitConn(page, state);
  await page.waitForFunction(() => /** @type {any} */ (window).agw?.chat?.sessionState === 'idle', null, { timeout: 60000 });
  return page;
}

/** @param {Page} page @param {string} state */
function waitConn(page, state, timeout = 30000) {
  return page.waitForSelector(`.conn[data-state="${state}"]`, { timeout });
}

/** @param {Page} page @param {string} text */
async function send(page, text) {
  await page.fill('#prompt', text);
  await page.press('#prompt', 'Enter');
}

/** Wait until the page shows `n` turn results. @param {Page} page @param {number} n */
function results(page, n, timeout = 60000) {
  return page.waitForFunction((count) => document.querySelectorAll('#items .result').length >= count, n, { timeout });
}

/** The texts of the assistant's messages as the page shows them. @param {Page} page */
function assistantTexts(page) {
  return page.$$eval('#items .msg-assistant .md', (els) => els.map((el) => /** @type {HTMLElement} */ (el).innerText.trim()));
}

/** The page's chat, as data. @param {Page} page */
function chatItems(page) {
  return page.evaluate(() => /** @type {any} */ (window).agw.chat.items.map((/** @type {any} */ i) => ({ type: i.type, text: i.text, status: i.status })));
}

describe('chat page', () => {
  test('type a prompt and see the answer stream in, rendered as markdown', async () => {
    const page = await freshPage();
    await screenshot(page, '01-empty');
    await send(page, 'SCRIPT:long');
    await page.waitForSelector('#items .msg-assistant.streaming', { timeout: 60000 });
    const early = (await assistantTexts(page))[0].length;
    await sleep(600);
    const later = (await assistantTexts(page))[0].length;
    assert.ok(later > early, `the text grows while streaming (${early} -> ${later})`);
    await screenshot(page, '02-streaming');
    await results(page, 1);
    const [text] = await assistantTexts(page);
    assert.ok(text.startsWith('Here is a longer answer') && text.endsWith('deliberately long reply.'));
    assert.equal(await page.locator('#items pre code.language-python').count(), 1, 'the code fence is a code block');
    assert.match(await page.locator('#items .result').first().innerText(), /Done.*demo — no charge/s);
    await send(page, 'SCRIPT:hello');
    await results(page, 2);
    assert.equal((await assistantTexts(page))[1], HELLO);
    await screenshot(page, '03-streamed-answer');
    await page.close();
  });

  test('approve a tool and see its result; edit input; deny', async () => {
    const page = await freshPage();
    await send(page, 'SCRIPT:bash');
    await page.waitForSelector('.card.approval.pending', { timeout: 60000 });
    assert.match(await page.locator('.card.approval .approval-input').innerText(), /echo hello-from-agent/);
    await screenshot(page, '04-approval');
    await page.click('.card.approval.pending .allow');
    await results(page, 1);
    await page.waitForSelector('#items .tool[data-status="done"]');
    await page.click('#items .tool summary');
    assert.equal(await page.locator('#items .tool .tool-result').innerText(), 'hello-from-agent');
    assert.match((await assistantTexts(page)).at(-1) ?? '', /^The command returned: hello-from-agent/);
    assert.match(await page.locator('.card.approval .resolution').innerText(), /Allowed by alice/);
    await screenshot(page, '05-tool-result');

    await send(page, 'SCRIPT:bash');
    await page.waitForSelector('.card.approval.pending', { timeout: 60000 });
    await page.click('.card.approval.pending .edit-toggle');
    const edit = page.locator('.card.approval.pending textarea');
    const input = JSON.parse(await edit.inputValue());
    await edit.fill(JSON.stringify({ ...input, command: "sh -c 'echo edited-in-browser'" }, null, 2));
    await screenshot(page, '06-edit-input');
    await page.click('.card.approval.pending .allow');
    await results(page, 2);
    await page.waitForFunction(() => document.querySelectorAll('#items .tool[data-status="done"]').length === 2);
    assert.equal(await page.locator('#items .tool .tool-result').nth(1).textContent(), 'edited-in-browser');

    await send(page, 'SCRIPT:bash');
    await page.waitForSelector('.card.approval.pending', { timeout: 60000 });
    await page.click('.card.approval.pending .deny');
    await results(page, 3);
    await page.waitForSelector('#items .tool[data-status="denied"]');
    assert.match(await page.locator('.card.approval .resolution').nth(2).innerText(), /Denied by alice/);

    // "Always allow" applies the suggested rule for the session: the next identical call isn't asked.
    await send(page, 'SCRIPT:bash');
    await page.waitForSelector('.card.approval.pending .always', { timeout: 60000 });
    await page.click('.card.approval.pending .always');
    await results(page, 4);
    await send(page, 'SCRIPT:bash');
    await results(page, 5);
    assert.equal(await page.locator('.card.approval').count(), 4, 'no fifth approval');
    assert.equal(await page.locator('#items .tool[data-status="done"]').count(), 4);
    await page.close();
  });

  test('answer a question (started from an empty-state suggestion)', async () => {
    const page = await freshPage();
    await page.click('.suggestion:has-text("Ask me a question")');
    await page.waitForSelector('.card.question.pending', { timeout: 60000 });
    assert.equal(await page.locator('.card.question .q-text').innerText(), 'Which color?');
    await screenshot(page, '07-question');
    await page.click('.card.question.pending .option[data-label="Blue"]');
    await results(page, 1);
    assert.equal((await assistantTexts(page)).at(-1), 'You answered: Blue');
    assert.equal(await page.locator('.card.question .option[aria-pressed="true"]').innerText().then((t) => t.split('\n')[0]), 'Blue');
    await screenshot(page, '08-question-answered');
    await page.close();
  });

  test('interrupt a running turn', async () => {
    const page = await freshPage();
    await send(page, 'SCRIPT:long');
    await page.waitForSelector('#items .msg-assistant.streaming', { timeout: 60000 });
    await page.waitForSelector('#stop:not([hidden])');
    await page.click('#stop');
    await results(page, 1);
    assert.match(await page.locator('#items .result').innerText(), /Stopped/);
    await page.waitForSelector('#stop', { state: 'hidden' });
    const text = (await assistantTexts(page))[0];
    assert.ok(text.startsWith('Here is a longer answer') && !text.endsWith('deliberately long reply.'), 'the partial answer stays');
    await screenshot(page, '09-interrupted');
    await page.close();
  });

  test('the connection is cut mid-stream: the page reconnects and resumes without duplicated text', async () => {
    const page = await freshPage();
    await send(page, 'SCRIPT:long');
    await page.waitForSelector('#items .msg-assistant.streaming', { timeout: 60000 });
    /** @type {string[]} */
    const seen = [];
    for (let i = 0; i < 3; i++) {
      await sleep(400);
      proxy.severAll();
      await waitConn(page, 'reconnecting', 5000).then(() => seen.push('reconnecting'), () => {});
      if (i === 0) await screenshot(page, '10-reconnecting');
      await waitConn(page, 'open');
    }
    assert.ok(seen.length >= 1, 'the indicator showed the reconnect');
    await results(page, 1);
    const sessionId = await page.evaluate(() => /** @type {any} */ (window).agw.session.id);
    const stats = await page.evaluate(() => /** @type {any} */ (window).agw.session.stats);
    assert.ok(stats.attaches >= 4, `re-attached (${JSON.stringify(stats)})`);
    const reference = foldChat(await referenceEvents(gw.url, sessionId));
    const expected = /** @type {any} */ (reference.items.find((i) => i.type === 'text')).text;
    assert.deepEqual((await chatItems(page)).map((i) => i.text ?? null), reference.items.map((i) => ('text' in i ? i.text : null)));
    const [shown] = await assistantTexts(page);
    assert.ok(expected.endsWith('deliberately long reply.'));
    assert.equal(shown.split('Here is a longer answer').length, 2, 'the text appears once');
    assert.equal(shown.split('deliberately long reply.').length, 2);
    assert.equal(await page.locator('#items .msg-assistant').count(), 1);
    await screenshot(page, '11-reconnected');
    await page.close();
  });

  test('reload: the page re-attaches to its session and shows the history', async () => {
    const page = await freshPage();
    await send(page, 'SCRIPT:hello');
    await results(page, 1);
    await send(page, 'SCRIPT:bash');
    await page.waitForSelector('.card.approval.pending', { timeout: 60000 });
    await page.click('.card.approval.pending .allow');
    await results(page, 2);
    const before = await page.$$eval('#items > *', (els) => els.map((el) => `${el.className}|${/** @type {HTMLElement} */ (el).innerText}`));
    const sessionId = await page.evaluate(() => /** @type {any} */ (window).agw.session.id);
    const totals = await page.locator('#totals').innerText();
    assert.match(totals, /^2 turns · demo — no charge$/);
    await page.reload();
    await waitConn(page, 'open');
    await page.waitForFunction((n) => document.querySelectorAll('#items > *').length >= n, before.length, { timeout: 30000 });
    await sleep(200);
    const afterReload = await page.$$eval('#items > *', (els) => els.map((el) => `${el.className}|${/** @type {HTMLElement} */ (el).innerText}`));
    assert.equal(await page.evaluate(() => /** @type {any} */ (window).agw.session.id), sessionId, 'the same session');
    assert.deepEqual(afterReload, before);
    assert.equal(await page.locator('#totals').innerText(), totals, 'the same turn count and cost');
    await screenshot(page, '12-after-reload');
    // And it carries on from there.
    await send(page, 'SCRIPT:hello');
    await results(page, 3);
    await page.close();
  });

  test('offline and back: the page waits, then reconnects and sends what was typed', async () => {
    const page = await freshPage();
    await browser.context.setOffline(true);
    await page.waitForFunction(() => document.getElementById('conn-label')?.textContent === 'Offline', null, { timeout: 10000 });
    await send(page, 'SCRIPT:hello');
    await page.waitForSelector('#sending .msg-user.pending');
    await screenshot(page, '13-offline');
    await browser.context.setOffline(false);
    await waitConn(page, 'open');
    await results(page, 1);
    assert.equal((await assistantTexts(page))[0], HELLO);
    assert.equal(await page.locator('#sending > *').count(), 0);
    await page.close();
  });

  test('WebSockets blocked: the page falls back to HTTP streaming, and returns to WebSocket later', async () => {
    proxy.refuseWebSocket = true;
    try {
      const page = await freshPage('?retry_ws_ms=1500&max_backoff_ms=500', 'fallback');
      assert.equal(await page.locator('#conn-label').innerText(), 'Live · HTTP');
      await send(page, 'SCRIPT:bash');
      await page.waitForSelector('.card.approval.pending', { timeout: 60000 });
      await page.click('.card.approval.pending .allow');
      await results(page, 1);
      assert.match((await assistantTexts(page)).at(-1) ?? '', /^The command returned: hello-from-agent/);
      await screenshot(page, '14-fallback');
      proxy.refuseWebSocket = false;
      await waitConn(page, 'open', 20000);
      await send(page, 'SCRIPT:hello');
      await results(page, 2);
      assert.equal((await assistantTexts(page)).at(-1), HELLO);
      await page.close();
    } finally {
      proxy.refuseWebSocket = false;
    }
  });

  test('model and mode pickers change the session', async () => {
    const page = await freshPage();
    const models = await page.$$eval('#model-picker option', (os) => os.map((o) => /** @type {HTMLOptionElement} */ (o).value));
    assert.ok(models.length > 1, 'the profile allows several models');
    const target = models.find((m) => m !== 'claude-sonnet-4-5') ?? models[1];
    await page.selectOption('#model-picker', target);
    await page.waitForSelector(`.notice[data-code="model_changed"]`);
    await page.selectOption('#mode-picker', 'plan');
    await page.waitForSelector(`.notice[data-code="permission_mode_changed"]`);
    assert.equal(await page.evaluate(() => /** @type {any} */ (window).agw.chat.model), target);
    assert.equal(await page.evaluate(() => /** @type {any} */ (window).agw.chat.permissionMode), 'plan');
    // Another client sees the change too: it is the session's.
    const info = await testClient(gw.url).getSession(await page.evaluate(() => /** @type {any} */ (window).agw.session.id));
    assert.equal(info.model, target);
    assert.equal(info.permission_mode, 'plan');
    await screenshot(page, '15-settings');
    await page.close();
  });

  test('profiles: the page offers the operator\'s profiles, and the pickers follow the chosen one', async () => {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'agw-profiles-'));
    const config = path.join(dir, 'profiles.toml');
    fs.writeFileSync(config, [
      '[profiles.default]', 'description = "Everyday work."', 'model = "claude-sonnet-4-5"',
      'models = ["claude-sonnet-4-5", "claude-haiku-4-5"]', 'permission_modes = ["default", "acceptEdits", "plan"]', '',
      '[profiles.readonly]', 'description = "Plan mode only."', 'model = "claude-haiku-4-5"', 'models = ["claude-haiku-4-5"]',
      'permission_mode = "plan"', 'permission_modes = ["plan"]', '',
    ].join('\n'));
    const other = await startGateway({ name: 'e2e-profiles', env: { AGENT_GATEWAY_CONFIG: config } });
    const page = await browser.context.newPage();
    try {
      await page.goto(`${other.url}/#token=${TOKENS.alice}`);
      await waitConn(page, 'open', 60000);
      await page.waitForSelector('#profile-label:not([hidden])');
      assert.deepEqual(await page.$$eval('#profile-picker option', (os) => os.map((o) => /** @type {HTMLOptionElement} */ (o).value)), ['default', 'readonly']);
      assert.equal(await page.locator('#session-meta').innerText(), 'default');
      assert.equal(await page.locator('#model-picker option').count(), 2);
      await page.selectOption('#profile-picker', 'readonly');
      await page.click('#new-chat');
      await page.waitForFunction(() => document.getElementById('session-meta')?.textContent === 'readonly', null, { timeout: 60000 });
      await waitConn(page, 'open', 60000);
      await page.waitForFunction(() => document.querySelectorAll('#model-picker option').length === 1);
      assert.equal(await page.locator('#model-picker').inputValue(), 'claude-haiku-4-5');
      assert.equal(await page.locator('#mode-picker').inputValue(), 'plan');
      assert.ok(await page.locator('#model-picker').isDisabled(), 'one model: nothing to pick');
      assert.ok(await page.locator('#mode-picker').isDisabled());
      await screenshot(page, '16-profiles');
    } finally {
      await page.close();
      await other.stop();
      fs.rmSync(dir, { recursive: true, force: true });
    }
  });

  test('no errors in the page', () => {
    assert.deepEqual(pageErrors, []);
  });
});
