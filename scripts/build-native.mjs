#!/usr/bin/env node
// Builds the native fast-path shim, dist/native/keybroker-shim, from src/shim/keybroker-shim.c,
// when a C compiler is there; prints one line either way. Run by `npm run build` (after tsc, since
// it reads the built protocol module), by the package's install script, and by `keybroker
// build-native` where npm ran no install script (docs/install.md: how native parts ship).
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
const RETRY = 'keybroker build-native';

// An install must not fail for want of the fast path: anything unexpected (an unwritable temp
// directory, a missing file) ends in one line and status 0.
if (install)
  process.on('uncaughtException', (err) => {
    say(
      `native shim: not built (${String(err?.message ?? err).split('\n')[0]}); keybroker-shim runs on Node (retry: ${RETRY})`,
    );
    process.exit(0);
  });

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
  const retry = `install cc, then run: ${install ? RETRY : 'npm run build'}`;
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
