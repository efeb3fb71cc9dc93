#!/usr/bin/env node
// Builds the native fast-path shim, dist/native/keybroker-shim, from src/shim/keybroker-shim.c,
// when a C compiler is there; prints one line either way. Run by `npm run build` (after tsc, since
// it reads the built protocol module) and by the package's install script. It also builds the
// daemon's hardening addon, a target of its own (buildHardeningAddon, at the end).
//
//   node scripts/build-native.mjs            a compile error fails (the build of this repository)
//   node scripts/build-native.mjs --install  never fails: without the native shim, setup and
//                                            apiKeyHelper use the Node shim, which does everything
//
// It always deletes the old binary first: a binary from another machine (a packed tarball) or an
// older build must never outlive a build that could not replace it, and the node path compiled
// into it is this machine's. CC picks the compiler (default: cc); CFLAGS are added after ours,
// e.g. for a sanitizer build: CC=clang CFLAGS='-g -fsanitize=address,undefined' npm run build
import { Buffer } from 'node:buffer';
import { spawnSync } from 'node:child_process';
import fs from 'node:fs';
import { createRequire } from 'node:module';
import os from 'node:os';
import path from 'node:path';
import process from 'node:process';
import { fileURLToPath, pathToFileURL } from 'node:url';

const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
const OUT = path.join(ROOT, 'dist', 'native', 'keybroker-shim');
const MESSAGES = path.join(ROOT, 'dist', 'src', 'protocol', 'messages.js');
// Stamped by scripts/stamp-build-id.mjs before this runs: the native shim is the same build.
const BUILD_INFO = path.join(ROOT, 'dist', 'src', 'client', 'build-info.js');
const SOURCES = ['src/shim/keybroker-shim.c', 'src/shim/native/reply-parser.c', 'src/shim/native/utf8.c'].map((f) =>
  path.join(ROOT, f),
);
const BASE_FLAGS = ['-std=c99', '-Wall', '-Wextra', '-O2'];
// Where the compiler supports them; some distributions predefine _FORTIFY_SOURCE, hence -U first.
const HARDENING_FLAGS = ['-U_FORTIFY_SOURCE', '-D_FORTIFY_SOURCE=2', '-fstack-protector-strong'];

const install = process.argv.includes('--install');
const say = (line) => process.stdout.write(`${line}\n`);

// The daemon's hardening addon is a target of its own: it needs neither dist/ nor the shim.
buildHardeningAddon();

fs.rmSync(OUT, { force: true });

if (!fs.existsSync(MESSAGES)) {
  // A source checkout's `npm ci` runs the install script before `prepare` builds dist/; the
  // build then calls this again.
  if (install) process.exit(0);
  say(`native shim: ${path.relative(ROOT, MESSAGES)} is missing; run tsc first (npm run build does)`);
  process.exit(1);
}

const cc = process.env.CC || 'cc';
const probe = spawnSync(cc, ['--version'], { stdio: 'ignore' });
if (probe.error) {
  const retry = install ? 'install cc, then reinstall keybroker' : 'install cc, then run: npm run build';
  say(`native shim: no C compiler (${cc}) found, skipped; keybroker-shim runs on Node (${retry})`);
  process.exit(0);
}

const { CLIENT_REPLY_TIMEOUT_MS, ERROR_CODES, MAX_REPLY_BYTES, noAnswerMessage } = await import(
  pathToFileURL(MESSAGES).href
);
const { BUILD_ID, VERSION } = await import(pathToFileURL(BUILD_INFO).href);
const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'kb-native-'));
try {
  fs.writeFileSync(
    path.join(tmp, 'keybroker-shim-build.h'),
    header({
      codes: ERROR_CODES,
      maxReplyBytes: MAX_REPLY_BYTES,
      node: process.execPath,
      replyTimeoutMs: CLIENT_REPLY_TIMEOUT_MS,
      noAnswer: noAnswerMessage(CLIENT_REPLY_TIMEOUT_MS),
      version: VERSION,
      build: BUILD_ID,
    }),
  );
  fs.mkdirSync(path.dirname(OUT), { recursive: true });
  const partial = `${OUT}.${process.pid}.tmp`;
  let flags = [...BASE_FLAGS, ...HARDENING_FLAGS];
  let result = compile(flags, partial);
  if (result.status !== 0) {
    flags = BASE_FLAGS;
    const plain = compile(flags, partial);
    if (plain.status === 0) result = plain;
  }
  if (result.status !== 0) {
    fs.rmSync(partial, { force: true });
    process.stderr.write(result.stderr);
    say(`native shim: ${cc} failed (status ${result.status ?? result.signal}); keybroker-shim runs on Node`);
    process.exit(install ? 0 : 1);
  }
  // Warnings are bugs here, but an installing user cannot fix them: show them only in our build.
  if (!install && result.stderr.length > 0) process.stderr.write(result.stderr);
  fs.chmodSync(partial, 0o755);
  fs.renameSync(partial, OUT);
  say(
    `native shim: built ${path.relative(ROOT, OUT)} with ${cc}${flags === BASE_FLAGS ? ' (without hardening flags: unsupported)' : ''}`,
  );
} finally {
  fs.rmSync(tmp, { recursive: true, force: true });
}

function compile(flags, out) {
  const extra = (process.env.CFLAGS ?? '').split(/\s+/).filter(Boolean);
  return spawnSync(cc, [...flags, ...extra, '-I', tmp, '-o', out, ...SOURCES], { cwd: ROOT, encoding: 'utf8' });
}

/** The facts the C program must share with the TypeScript: generated, so they cannot drift. */
function header({ codes, maxReplyBytes, node, replyTimeoutMs, noAnswer, version, build }) {
  const rows = Object.entries(codes).map(([code, status]) => `  {${cString(code)}, ${Number(status)}},`);
  return [
    '/* Generated by scripts/build-native.mjs from src/protocol/messages.ts; do not edit. */',
    '#ifndef KB_SHIM_BUILD_H',
    '#define KB_SHIM_BUILD_H',
    '/* The node that ran the build: what the native shim hands over to (see handover()). */',
    `#define KB_BUILD_NODE ${cString(node)}`,
    `#define KB_MAX_REPLY_BYTES ${Number(maxReplyBytes)}`,
    `#define KB_EXIT_INTERNAL ${Number(codes.INTERNAL)}`,
    '/* How long to wait for the reply (longer than any profile timeout), and what to say after. */',
    `#define KB_REQUEST_TIMEOUT_MS ${Number(replyTimeoutMs)}`,
    `#define KB_NO_ANSWER_MESSAGE ${cString(noAnswer)}`,
    '/* This build, compared with the daemon identity in replies (src/client/build-info.ts). */',
    `#define KB_VERSION ${cString(String(version))}`,
    `#define KB_BUILD_ID ${typeof build === 'string' ? cString(build) : 'NULL'}`,
    'struct kb_error_code { const char *code; int status; };',
    'static const struct kb_error_code KB_ERROR_CODES[] = {',
    ...rows,
    '};',
    '#endif',
    '',
  ].join('\n');
}

/** A C string literal of the UTF-8 bytes of s: printable ASCII as is, everything else in octal. */
function cString(s) {
  let out = '"';
  for (const byte of Buffer.from(s, 'utf8')) {
    const c = String.fromCharCode(byte);
    out +=
      byte >= 0x20 && byte < 0x7f && c !== '"' && c !== '\\' && c !== '?'
        ? c
        : `\\${byte.toString(8).padStart(3, '0')}`;
  }
  return `${out}"`;
}

/**
 * The daemon's hardening addon, dist/native/keybroker-hardening.node, from
 * src/daemon/native/hardening.c: a Node-API module (version 8, so one build loads in Node 20, 22
 * and 24) compiled straight with cc against the node-api-headers package, without node-gyp or
 * Python. Like the shim, the old file goes first and a failure at install time only says so: the
 * daemon then runs without it, and `keybroker doctor` says what that leaves open. Sets
 * process.exitCode on a compile error in our own build.
 */
function buildHardeningAddon() {
  const out = path.join(ROOT, 'dist', 'native', 'keybroker-hardening.node');
  const source = path.join(ROOT, 'src', 'daemon', 'native', 'hardening.c');
  const label = 'hardening addon';
  fs.rmSync(out, { force: true });
  const retry = install ? 'reinstall keybroker' : 'run: npm run build';
  if (process.platform !== 'linux' && process.platform !== 'darwin') {
    say(`${label}: nothing to build on ${process.platform}`);
    return;
  }
  let include;
  try {
    include = createRequire(import.meta.url)('node-api-headers').include_dir;
  } catch {
    say(`${label}: the node-api-headers package is missing, skipped; the daemon runs without it (${retry})`);
    if (!install) process.exitCode = 1;
    return;
  }
  const cc = process.env.CC || 'cc';
  if (spawnSync(cc, ['--version'], { stdio: 'ignore' }).error) {
    say(`${label}: no C compiler (${cc}) found, skipped; the daemon runs without it (install cc, then ${retry})`);
    return;
  }
  // macOS resolves the napi_* symbols from the node binary at load time only when told to.
  const link = process.platform === 'darwin' ? ['-bundle', '-undefined', 'dynamic_lookup'] : ['-shared'];
  const base = ['-std=c99', '-Wall', '-Wextra', '-O2', '-fPIC', '-fvisibility=hidden', '-DNAPI_VERSION=8'];
  const extra = (process.env.CFLAGS ?? '').split(/\s+/).filter(Boolean);
  const partial = `${out}.${process.pid}.tmp`;
  fs.mkdirSync(path.dirname(out), { recursive: true });
  const compile = (flags) =>
    spawnSync(cc, [...flags, ...extra, '-I', include, ...link, '-o', partial, source], { cwd: ROOT, encoding: 'utf8' });
  let hardened = true;
  let result = compile([...base, ...HARDENING_FLAGS]);
  if (result.status !== 0) {
    const plain = compile(base);
    if (plain.status === 0) [result, hardened] = [plain, false];
  }
  if (result.status !== 0) {
    fs.rmSync(partial, { force: true });
    process.stderr.write(result.stderr);
    say(`${label}: ${cc} failed (status ${result.status ?? result.signal}); the daemon runs without it`);
    if (!install) process.exitCode = 1;
    return;
  }
  if (!install && result.stderr.length > 0) process.stderr.write(result.stderr);
  fs.chmodSync(partial, 0o755);
  fs.renameSync(partial, out);
  say(
    `${label}: built ${path.relative(ROOT, out)} with ${cc}${hardened ? '' : ' (without hardening flags: unsupported)'}`,
  );
}
