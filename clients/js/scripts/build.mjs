// Emit the shipped declarations: `npm run build` writes types/ from src/ (JSDoc-typed JS) plus
// the hand-written src/*.d.ts. types/ is generated, not committed; `npm test` builds it first.
import { execFileSync } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

const root = path.dirname(path.dirname(fileURLToPath(import.meta.url)));
const SRC = path.join(root, 'src');
const TYPES = path.join(root, 'types');

const tsc = path.join(root, 'node_modules', 'typescript', 'bin', 'tsc');
fs.rmSync(TYPES, { recursive: true, force: true });
execFileSync(process.execPath, [tsc, '-p', path.join(root, 'tsconfig.types.json')], { cwd: root, stdio: 'inherit' });
for (const name of fs.readdirSync(SRC)) {
  if (name.endsWith('.d.ts')) fs.copyFileSync(path.join(SRC, name), path.join(TYPES, name));
}
console.log('generated types/');
