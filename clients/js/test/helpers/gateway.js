// Start a real gateway process (demo mode: the offline scripted model drives the real CLI) on a
// free port, with its own tokens and sessions directory, and stop it (and its CLIs) afterwards.

import { spawn } from 'node:child_process';
import fs from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

export const REPO = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../../../..');
export const TOKENS = { alice: 'alice-token-0123456789', bob: 'bob-token-0123456789ab' };
export const ARTIFACTS = path.join(REPO, 'test-artifacts');

/** @returns {Promise<number>} */
export function freePort() {
  return new Promise((resolve, reject) => {
    const server = net.createServer();
    server.unref();
    server.on('error', reject);
    server.listen(0, '127.0.0.1', () => {
      const { port } = /** @type {net.AddressInfo} */ (server.address());
      server.close(() => resolve(port));
    });
  });
}

/** The command that runs the gateway: $AGENT_GATEWAY_BIN, the repo's venv, or `python3 -m gateway`. */
function gatewayCommand() {
  if (process.env.AGENT_GATEWAY_BIN) return { cmd: process.env.AGENT_GATEWAY_BIN, args: [] };
  const venv = path.join(REPO, '.venv', 'bin', 'agent-gateway');
  if (fs.existsSync(venv)) return { cmd: venv, args: [] };
  return { cmd: process.env.PYTHON ?? 'python3', args: ['-m', 'gateway'] };
}

/**
 * @typedef {object} Gateway
 * @property {number} port
 * @property {string} url
 * @property {string} sessionsDir
 * @property {() => string} log everything the process printed
 * @property {() => Promise<void>} stop
 * @property {() => Promise<void>} crash SIGKILL the gateway and its CLIs (nothing is closed cleanly)
 */

/**
 * @param {{ env?: Record<string, string>, name?: string }} [options]
 * @returns {Promise<Gateway>}
 */
export async function startGateway(options = {}) {
  const port = await freePort();
  const tmp = fs.mkdtempSync(path.join(os.tmpdir(), `agw-${options.name ?? 'test'}-`));
  const sessionsDir = path.join(tmp, 'sessions');
  /** @type {Record<string, string>} */
  const env = {};
  for (const [k, v] of Object.entries(process.env)) {
    if (v !== undefined && !k.startsWith('AGENT_GATEWAY_') && !k.startsWith('ANTHROPIC_') && !k.startsWith('CLAUDE')) env[k] = v;
  }
  Object.assign(env, {
    AGENT_GATEWAY_TOKENS: Object.entries(TOKENS).map(([p, t]) => `${p}=${t}`).join(','),
    AGENT_GATEWAY_SESSIONS_DIR: sessionsDir,
    AGENT_GATEWAY_DEMO: 'on',
    AGENT_GATEWAY_LOG_LEVEL: 'warning',
    PYTHONUNBUFFERED: '1',
    ...options.env,
  });
  const { cmd, args } = gatewayCommand();
  const child = spawn(cmd, [...args, 'serve', '--host', '127.0.0.1', '--port', String(port)], {
    cwd: REPO,
    env,
    stdio: ['ignore', 'pipe', 'pipe'],
    detached: true, // its own process group: stop() ends the CLIs it started too
  });
  let output = '';
  child.stdout.on('data', (d) => (output += d));
  child.stderr.on('data', (d) => (output += d));
  let exited = false;
  // Whatever happens to the test process, the gateway and its CLIs go with it.
  const reap = () => killGroup(child.pid, 'SIGKILL');
  process.once('exit', reap);
  const exit = new Promise((resolve) => child.on('exit', (code, signal) => {
    exited = true;
    resolve({ code, signal });
  }));
  const url = `http://127.0.0.1:${port}`;
  const deadline = Date.now() + 60_000;
  for (;;) {
    if (exited) throw new Error(`gateway exited at startup:\n${output}`);
    try {
      const r = await fetch(`${url}/healthz`);
      if (r.ok) break;
    } catch {
      // not up yet
    }
    if (Date.now() > deadline) {
      killGroup(child.pid, 'SIGKILL');
      throw new Error(`gateway did not start in 60 s:\n${output}`);
    }
    await new Promise((r) => setTimeout(r, 100));
  }
  const stop = async () => {
    if (!exited) {
      killGroup(child.pid, 'SIGTERM');
      const timer = setTimeout(() => killGroup(child.pid, 'SIGKILL'), 8000);
      await exit;
      clearTimeout(timer);
    }
    killGroup(child.pid, 'SIGKILL'); // stragglers in the group (CLIs)
    process.off('exit', reap);
    fs.rmSync(tmp, { recursive: true, force: true });
  };
  const crash = async () => {
    killGroup(child.pid, 'SIGKILL');
    await exit;
  };
  return { port, url, sessionsDir, log: () => output, stop, crash };
}

/** @param {number | undefined} pid @param {NodeJS.Signals} signal */
function killGroup(pid, signal) {
  if (!pid) return;
  try {
    process.kill(-pid, signal);
  } catch {
    // already gone
  }
}
