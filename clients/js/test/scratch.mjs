import fs from 'node:fs';
import { launchBrowser } from './helpers/browser.js';
import { startGateway, TOKENS } from './helpers/gateway.js';
const gw = await startGateway({ name: 'scratch' });
const browser = await launchBrowser();
const axe = fs.readFileSync(new URL('../node_modules/axe-core/axe.min.js', import.meta.url), 'utf8');
const errors = [];
try {
  for (const [vw, vh, scheme] of [[1280, 900, 'light'], [390, 844, 'dark']]) {
    const page = await browser.context.newPage();
    page.on('pageerror', (e) => errors.push(e.message)); page.on('response', (r) => { if (r.status() >= 400) errors.push(r.url() + ' ' + r.status()); });
    page.on('console', (m) => { if (m.type() === 'error') errors.push(m.text()); });
    await page.setViewportSize({ width: vw, height: vh });
    await page.emulateMedia({ colorScheme: scheme });
    await page.goto(`${gw.url}/healthz`); await page.evaluate(() => localStorage.clear());
    await page.goto(`${gw.url}/#token=${TOKENS.alice}`);
    await page.waitForSelector('.conn[data-state="open"]', { timeout: 60000 });
    const shot = async (name) => {
      await page.screenshot({ path: `/tmp/chatpage/${vw}-${name}.png` });
      await page.addScriptTag({ content: axe });
      const r = await page.evaluate(async () => { const r = await axe.run(document, { resultTypes: ['violations'] }); return r.violations.filter((v) => v.impact === 'critical' || v.impact === 'serious').map((v) => `${v.id}: ${v.nodes.slice(0,3).map((n) => n.target.join(' ') + ' ' + (n.failureSummary||'').slice(0,200)).join(' | ')}`); });
      console.log(vw, name, r);
    };
    await shot('empty');
    await page.fill('#prompt', 'SCRIPT:long'); await page.press('#prompt', 'Enter');
    await page.waitForSelector('#items .msg-assistant.streaming', { timeout: 60000 });
    await shot('streaming');
    await page.waitForSelector('#items .result', { timeout: 60000 });
    await shot('done');
    await page.fill('#prompt', 'SCRIPT:bash'); await page.press('#prompt', 'Enter');
    await page.waitForSelector('.card.approval.pending', { timeout: 60000 });
    await shot('approval');
    await page.click('.card.approval.pending .deny');
    await page.waitForFunction(() => document.querySelectorAll('#items .result').length >= 2, null, { timeout: 60000 });
    await page.fill('#prompt', 'SCRIPT:ask'); await page.press('#prompt', 'Enter');
    await page.waitForSelector('.card.question.pending', { timeout: 60000 });
    await shot('question');
    if (vw < 500) { await page.click('#chats-toggle'); await page.waitForTimeout(400); }
    await shot('list');
    await page.close();
  }
} finally {
  console.log('errors', errors);
  await browser.close(); await gw.stop();
}
