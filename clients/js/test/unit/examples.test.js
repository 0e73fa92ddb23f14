// Every example frame in protocol/examples/ goes through this client's decoder: server frames
// must decode as known frames (and known event kinds), client frames must pass the encoder's checks.
import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import { test } from 'node:test';
import { fileURLToPath } from 'node:url';
import { decodeClientFrame, decodeServerFrame, isKnownEventKind, SERVER_FRAME_TYPES, CLIENT_FRAME_TYPES } from '../../src/index.js';

const dir = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../../../../protocol/examples');
const files = fs.existsSync(dir) ? fs.readdirSync(dir).filter((f) => f.endsWith('.json')).sort() : [];

if (!files.length) {
  test('protocol/examples has example frames', { skip: `no example frames in ${dir} yet` }, () => {});
}

for (const name of files) {
  const text = fs.readFileSync(path.join(dir, name), 'utf8');
  if (name.startsWith('server-')) {
    test(`server example ${name} decodes`, () => {
      const frame = decodeServerFrame(text.trim().replace(/\n\s*/g, ' '));
      assert.ok(SERVER_FRAME_TYPES.includes(frame.type));
      if (frame.type === 'event') assert.ok(isKnownEventKind(frame.event.kind), `unknown event kind ${frame.event.kind}`);
      if (frame.type === 'reset') for (const e of frame.snapshot.transcript) assert.ok(isKnownEventKind(e.kind));
    });
  } else if (name.startsWith('client-')) {
    test(`client example ${name} passes the client's checks`, () => {
      const frame = decodeClientFrame(text);
      assert.ok(CLIENT_FRAME_TYPES.includes(frame.type));
    });
  } else {
    test(`example ${name} is named client-* or server-*`, () => assert.fail(`${name}: name it client-*.json or server-*.json`));
  }
}
