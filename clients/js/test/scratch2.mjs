import { launchBrowser } from './helpers/browser.js';
import { startGateway, TOKENS } from './helpers/gateway.js';
const gw = await startGateway({ name: 'scratch' });
const browser = await launchBrowser();
try {
  const page = await browser.context.newPage();
  page.on('console', (m) => console.log('console', m.type(), m.text()));
  page.on('pageerror', (e) => console.log('pageerror', e.message));
  await page.goto(`${gw.url}/#token=${TOKENS.bob}`);
  await page.waitForSelector('.conn[data-state="open"]', { timeout: 60000 });
  await page.fill('#prompt', 'SCRIPT:hello'); await page.press('#prompt', 'Enter');
  await page.waitForSelector('#items .result', { timeout: 60000 });
  const first = await page.evaluate(() => window.agw.session.id);
  await page.click('#new-chat');
  await page.waitForFunction((old) => window.agw.session.id && window.agw.session.id !== old, first, { timeout: 60000 });
  await page.waitForTimeout(1500);
  console.log(await page.evaluate(() => [localStorage.getItem('agent-gateway.chats'), document.getElementById('chat-list').innerHTML.length]));
  await page.click(`#chat-list li[data-id="${first}"] .chat-open`);
  await page.waitForTimeout(3000);
  console.log(await page.evaluate(() => [window.agw.session?.id, window.agw.session?.connectionState, document.querySelectorAll('#items .result').length, document.getElementById('banner').innerText]));
  await page.click(`#chat-list li[data-id="${first}"] .chat-rename`);
  console.log('after click', await page.evaluate(() => [document.activeElement?.outerHTML.slice(0,200), document.getElementById('chat-list').innerHTML.slice(0, 600)]));
  await page.evaluate(() => { const i = document.querySelector('.chat-rename-input'); for (const t of ['keydown','blur','focusout','input']) i.addEventListener(t, (e) => console.log('ev', t, e.key ?? '', document.activeElement?.className)); });
  await page.fill('.chat-rename-input', 'Greetings');
  console.log('after fill', await page.evaluate(() => [document.activeElement?.className, document.querySelectorAll('.chat-rename-input').length]));
  await page.press('.chat-rename-input', 'Enter');
  console.log('after enter', await page.evaluate(() => document.getElementById('chat-list').innerHTML.slice(0, 900)));
  await page.screenshot({ path: '/tmp/chatpage/switch.png' });
} finally { await browser.close(); await gw.stop(); }
