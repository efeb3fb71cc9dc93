#!/usr/bin/env node
// Builds the native targets — the fast-path shim, dist/native/keybroker-shim, and the daemon's
// hardening addon, dist/native/keybroker-hardening.node — from C, when a C compiler is there;
// prints one line per target either way. Run by `npm run build`
// (after tsc: the generated header is made from the built TypeScript, scripts/native-header.mjs),
// by the package's install script, and by `keybroker build-native` where npm ran no install
// script (docs/install.md: how native parts ship).
//
//   node scripts/build-native.mjs            our build: warnings are errors (-Werror), and a
//                                            compile error fails it
//   node scripts/build-native.mjs --install  never fails, and no -Werror: an installing user's
//                                            compiler may warn where ours does not; without the
//                                            native shim, the Node shim does everything
//
// It always deletes the old outputs first: a binary from another machine (a packed tarball) or an
// older build must never outlive a build that could not replace it, and the node path compiled
// into it is this machine's. CC picks the compiler (default: cc); CFLAGS are added after ours,
// e.g. for a sanitizer build: CC=clang CFLAGS='-g -fsanitize=address,undefined' npm run build
import { spawnSync } from 'node:child_process';
import fs from 'node:fs';
import { createRequire } from 'node:module';
import os from 'node:os';
import path from 'node:path';
import process from 'node:process';
import { fileURLToPath } from 'node:url';

const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
const cFiles = (dir) =>
  fs
    .readdirSync(path.join(ROOT, dir))
    .filter((f) => f.endsWith('.c'))
    .sort()
    .map((f) => path.join(dir, f));

/**
 * What this script builds. A target is C sources compiled with the generated header
 * (kb-generated.h) on the include path, its own `flags` after the common ones, into `out`.
 */
const TARGETS = [
  {
    name: 'native shim',
    out: 'dist/native/keybroker-shim',
    sources: ['src/shim/keybroker-shim.c', ...cFiles('src/shim/native')],
    include: ['src/shim', 'src/shim/native'],
    flags: [],
    /** What runs instead when it is not built. */
    fallback: 'keybroker-shim runs on Node',
  },
  {
    // A Node-API module loaded by the daemon only (src/daemon/hardening-addon.ts), compiled straight
    // against the node-api-headers package (a dependency), without node-gyp or Python. Node-API 8:
    // one build loads in Node 20, 22 and 24. macOS resolves the napi_* symbols from the node binary
    // at load time only when told to (-undefined dynamic_lookup).
    name: 'hardening addon',
    out: 'dist/native/keybroker-hardening.node',
    sources: ['src/daemon/native/hardening.c'],
    include: nodeApiHeaders() ?? [],
    flags: [
      '-fPIC',
      '-fvisibility=hidden',
      '-DNAPI_VERSION=8',
      ...(process.platform === 'darwin' ? ['-bundle', '-undefined', 'dynamic_lookup'] : ['-shared']),
    ],
    fallback: 'the daemon runs without it (keybroker doctor says what that leaves open)',
    /** Why it cannot be built at all, when it cannot. */
    unavailable: nodeApiHeaders() ? undefined : 'the node-api-headers package is missing',
  },
];

const BASE_FLAGS = ['-std=c99', '-Wall', '-Wextra', '-O2'];
// Where the compiler supports them; some distributions predefine _FORTIFY_SOURCE, hence -U first.
const HARDENING_FLAGS = ['-U_FORTIFY_SOURCE', '-D_FORTIFY_SOURCE=2', '-fstack-protector-strong'];

const install = process.argv.includes('--install');
const say = (line) => process.stdout.write(`${line}\n`);
const RETRY = 'keybroker build-native';

// An install must not fail for want of the fast path: anything unexpected (an unwritable temp
// directory, a missing file) ends in one line and status 0.
if (install)
  process.on('uncaughtException', (err) => {
    const why = String(err?.message ?? err).split('\n')[0];
    for (const t of TARGETS) say(`${t.name}: not built (${why}); ${t.fallback} (retry: ${RETRY})`);
    process.exit(0);
  });

for (const t of TARGETS) fs.rmSync(path.join(ROOT, t.out), { force: true });
// Imported here, so that an install without it (a package missing a file) ends in the one line above.
const { HEADER_SOURCES, nativeHeader } = await import('./native-header.mjs');

const missing = HEADER_SOURCES.filter((f) => !fs.existsSync(f));
if (missing.length > 0) {
  // A source checkout's `npm ci` runs the install script before `prepare` builds dist/ (none of
  // them there yet); the build then calls this again. Some there and not others: a broken package.
  if (install && missing.length === HEADER_SOURCES.length) process.exit(0);
  if (install) throw new Error(`${path.relative(ROOT, missing[0])} is missing`);
  for (const t of TARGETS)
    say(`${t.name}: ${path.relative(ROOT, missing[0])} is missing; run tsc first (npm run build does)`);
  process.exit(1);
}

const cc = process.env.CC || 'cc';
if (spawnSync(cc, ['--version'], { stdio: 'ignore' }).error) {
  const retry = `install cc, then run: ${install ? RETRY : 'npm run build'}`;
  for (const t of TARGETS) say(`${t.name}: no C compiler (${cc}) found, skipped; ${t.fallback} (${retry})`);
  process.exit(0);
}

const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'kb-native-'));
let failed = false;
try {
  fs.writeFileSync(path.join(tmp, 'kb-generated.h'), await nativeHeader());
  // -Werror in our build only: a warning is a bug we can fix, not one an installing user can.
  const common = [...BASE_FLAGS, ...(install ? [] : ['-Werror'])];
  const hardened = supports(common, HARDENING_FLAGS);
  for (const t of TARGETS) failed = !build(t, hardened ? [...common, ...HARDENING_FLAGS] : common, hardened) || failed;
} finally {
  fs.rmSync(tmp, { recursive: true, force: true });
}
process.exit(failed && !install ? 1 : 0);

/** Whether `cc` takes these flags without a word, on an empty program. */
function supports(common, flags) {
  const probe = path.join(tmp, 'probe.c');
  fs.writeFileSync(probe, 'int main(void) { return 0; }\n');
  const r = spawnSync(cc, [...common, '-Werror', ...flags, '-o', path.join(tmp, 'probe'), probe], { encoding: 'utf8' });
  return r.status === 0 && r.stderr.length === 0;
}

function build(target, flags, hardened) {
  if (target.unavailable) {
    say(`${target.name}: ${target.unavailable}, skipped; ${target.fallback} (retry: ${RETRY})`);
    return false;
  }
  const out = path.join(ROOT, target.out);
  fs.mkdirSync(path.dirname(out), { recursive: true });
  const partial = `${out}.${process.pid}.tmp`;
  const extra = (process.env.CFLAGS ?? '').split(/\s+/).filter(Boolean);
  const include = [tmp, ...target.include.map((d) => path.resolve(ROOT, d))].flatMap((d) => ['-I', d]);
  const args = [...flags, ...target.flags, ...extra, ...include, '-o', partial, ...target.sources];
  const result = spawnSync(cc, args, { cwd: ROOT, encoding: 'utf8' });
  if (result.status !== 0) {
    fs.rmSync(partial, { force: true });
    process.stderr.write(result.stderr);
    say(`${target.name}: ${cc} failed (status ${result.status ?? result.signal}); ${target.fallback}`);
    return false;
  }
  // Only --install gets here with warnings (no -Werror): an installing user cannot fix them.
  if (!install) process.stderr.write(result.stderr);
  fs.chmodSync(partial, 0o755);
  fs.renameSync(partial, out);
  say(`${target.name}: built ${target.out} with ${cc}${hardened ? '' : ' (without hardening flags: unsupported)'}`);
  return true;
}

/** The node-api-headers package's include directory, as a one-element list; undefined without it. */
function nodeApiHeaders() {
  try {
    return [createRequire(import.meta.url)('node-api-headers').include_dir];
  } catch {
    return undefined;
  }
}
