// Headless Chromium (Debian's `chromium`) driven by playwright-core; no browser download.

import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { chromium } from 'playwright-core';
import { ARTIFACTS } from './gateway.js';

export const CHROMIUM = process.env.CHROMIUM_PATH ?? ['/usr/bin/chromium', '/usr/bin/chromium-browser', '/usr/bin/google-chrome'].find((p) => fs.existsSync(p));
export const SCREENSHOTS = path.join(ARTIFACTS, 'e2e');

/** Launch Chromium with a fresh profile; `close()` removes the profile too. */
export async function launchBrowser() {
  if (!CHROMIUM) throw new Error('no Chromium found: apt-get install chromium (or set CHROMIUM_PATH)');
  const userDataDir = fs.mkdtempSync(path.join(os.tmpdir(), 'agw-chromium-'));
  const context = await chromium.launchPersistentContext(userDataDir, {
    executablePath: CHROMIUM,
    headless: true,
    viewport: { width: 1200, height: 820 },
    args: [
      '--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run', '--disable-background-networking',
      '--disable-component-update', '--disable-sync', '--disable-dev-shm-usage',
    ],
  });
  return {
    context,
    async close() {
      await context.close().catch(() => {});
      fs.rmSync(userDataDir, { recursive: true, force: true });
    },
  };
}

/** @param {import('playwright-core').Page} page @param {string} name */
export async function screenshot(page, name) {
  fs.mkdirSync(SCREENSHOTS, { recursive: true });
  const file = path.join(SCREENSHOTS, `${name}.png`);
  await page.screenshot({ path: file });
  return file;
}
