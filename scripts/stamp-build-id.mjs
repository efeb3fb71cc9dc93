// Stamp a build id into dist/: a hash of the built daemon, CLI, adapters and shim, written over
// the placeholder in src/client/build-info.ts's output (and its copy inside the shim bundle).
// Two builds of the same sources get the same id; any change to what runs gets a new one, so a
// shim or CLI can tell an old daemon from its own build even when the version is unchanged.
import { createHash } from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
const PLACEHOLDER = ['@@KEYBROKER', 'BUILD_ID@@'].join('_');
const dirs = ['dist/src', 'dist/adapters'].map((d) => path.join(root, d));

function walk(dir) {
  if (!fs.existsSync(dir)) return [];
  return fs.readdirSync(dir, { withFileTypes: true }).flatMap((e) => {
    const p = path.join(dir, e.name);
    return e.isDirectory() ? walk(p) : /\.c?js$/.test(e.name) ? [p] : [];
  });
}

const files = dirs.flatMap(walk).sort();
const hash = createHash('sha256');
const holders = [];
for (const file of files) {
  const text = fs.readFileSync(file, 'utf8');
  // Hash the unstamped text: restamping an already stamped tree must give the same id.
  const unstamped = text.replace(/(['"])[0-9a-f]{12}\1 \/\* build-id \*\//g, `$1${PLACEHOLDER}$1`);
  hash.update(path.relative(root, file)).update('\0').update(unstamped).update('\0');
  if (unstamped.includes(`'${PLACEHOLDER}'`) || unstamped.includes(`"${PLACEHOLDER}"`)) holders.push([file, unstamped]);
}
// The native shim (built after this) is part of the build too: its sources count.
for (const rel of ['src/shim/keybroker-shim.c', 'src/shim/native']) {
  const abs = path.join(root, rel);
  if (!fs.existsSync(abs)) continue;
  const files = fs.statSync(abs).isDirectory()
    ? fs
        .readdirSync(abs)
        .sort()
        .map((f) => path.join(abs, f))
    : [abs];
  for (const f of files) hash.update(path.relative(root, f)).update('\0').update(fs.readFileSync(f)).update('\0');
}
const id = hash.digest('hex').slice(0, 12);
if (holders.length === 0)
  throw new Error('stamp-build-id: no build id placeholder in dist/ (was src/client/build-info.ts built?)');
for (const [file, text] of holders) {
  const stamped = text
    .replaceAll(`'${PLACEHOLDER}'`, `'${id}' /* build-id */`)
    .replaceAll(`"${PLACEHOLDER}"`, `"${id}" /* build-id */`);
  fs.writeFileSync(file, stamped);
}
