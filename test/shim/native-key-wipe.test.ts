// No copy of the key stays in the native shim's memory (STYLE.md habit 16). The shim runs under a
// small ptrace harness (test/helpers/exit-memory-scan.c) that stops it as it exits — exit_group
// called, every page still mapped — and searches all its readable memory (heap, freed blocks,
// stack, static data) for the key and for pieces of it. It does so on each way out after the key
// has arrived: printed, printed with warnings, a frame it cannot read, a reply over the limit.
import { randomBytes } from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ERROR_CODES, MAX_REPLY_BYTES } from '../../src/protocol/messages.js';
import { baseEnv, NATIVE_SHIM, privateTempDir, ROOT, run, SHIMS } from '../helpers/daemon.js';
import { recordingServer, type Answer } from '../helpers/stand-in-daemon.js';

const native = SHIMS.find((s) => s.name === 'native')!;
const linux = process.platform === 'linux';
/** 64 characters, so that 16-byte pieces of it are unmistakable too. */
const KEY = randomBytes(48).toString('base64url');
/** What the harness looks for: the key, and each quarter of it (a copy cut short is a copy). */
const PATTERNS = [KEY, ...[0, 16, 32, 48].map((at) => KEY.slice(at, at + 16))].map((p) =>
  Buffer.from(p).toString('hex'),
);

let dir: string;
let scanner: string;
let ptraceDenied = false;

beforeAll(async () => {
  if (native.skip || !linux) return;
  dir = privateTempDir('kb-wipe-');
  scanner = path.join(dir, 'exit-memory-scan');
  const cc = await run(process.env.CC || 'cc', [
    '-O1',
    '-o',
    scanner,
    path.join(ROOT, 'test', 'helpers', 'exit-memory-scan.c'),
  ]);
  expect(cc).toMatchObject({ code: 0 });
  ptraceDenied = (await scan({ args: ['/bin/true'] })).report === 'ptrace-denied';
}, 60_000);
afterAll(() => {
  if (dir) fs.rmSync(dir, { recursive: true, force: true });
});

/** Run a program under the harness; its result and the harness's one-line report. */
async function scan(p: {
  args: string[];
  env?: NodeJS.ProcessEnv;
}): Promise<Awaited<ReturnType<typeof run>> & { report: string }> {
  const report = path.join(dir, 'report');
  fs.rmSync(report, { force: true });
  const r = await run(scanner, [report, ...PATTERNS, '--', ...p.args], { env: p.env ?? process.env, cwd: dir });
  return { ...r, report: fs.existsSync(report) ? fs.readFileSync(report, 'utf8').trim() : `no report (${r.stderr})` };
}

/** The native shim under the harness, asking a stand-in daemon that answers `answer`. */
async function shimScan(answer: Answer): Promise<Awaited<ReturnType<typeof scan>>> {
  const env = baseEnv(dir, {
    KEYBROKER_NODE: '/nonexistent/node',
    // For a sanitizer build of the shim (test/fuzz/README.md): LeakSanitizer cannot run under ptrace.
    ASAN_OPTIONS: [process.env.ASAN_OPTIONS, 'detect_leaks=0'].filter(Boolean).join(':'),
  });
  const server = await recordingServer(env.KEYBROKER_SOCKET!, answer);
  try {
    return await scan({ args: [NATIVE_SHIM, 'work'], env });
  } finally {
    await server.close();
    fs.rmSync(env.KEYBROKER_SOCKET!, { force: true });
  }
}

const frame = (fields: Array<[string, string]>, length?: number): Buffer => {
  const body = Buffer.concat(fields.map(([n, v]) => Buffer.from(`${n} ${Buffer.byteLength(v)}\n${v}\n`)));
  return Buffer.concat([Buffer.from(`KB1 ${length ?? body.length}\n`), body]);
};
const value = (more: object = {}): Record<string, unknown> => ({
  ok: true,
  profile: 'work',
  value: KEY,
  stale: false,
  ...more,
});

describe.skipIf(native.skip !== undefined || !linux)(native.skip ?? 'the native shim leaves no copy of the key', () => {
  it('the harness finds a key that is there (in the arguments of the program it scans)', async (ctx) => {
    if (ptraceDenied) ctx.skip('this system does not let a process ptrace its child');
    const r = await scan({ args: ['/bin/echo', KEY] });
    expect(r.stdout).toBe(`${KEY}\n`);
    expect(r.report).toMatch(/^exit 0 copies [1-9]/);
  });

  const ways: Array<[string, Answer, number, string]> = [
    ['printed', value(), 0, `${KEY}\n`],
    [
      'printed with a stale warning and a warning about another build',
      value({
        stale: true,
        warning: { code: 'UNAVAILABLE', message: 'down', profile: 'work', fix: 'wait' },
        daemon: { pid: 4242, version: '0.0.1', startedBy: 'systemd' },
      }),
      0,
      `${KEY}\n`,
    ],
    [
      'printed, then a daemon of another build that autostart started asked to stop',
      value({ daemon: { pid: 1, version: '0.0.1', startedBy: 'autostart' } }),
      0,
      `${KEY}\n`,
    ],
    ['a frame that is cut short', frame([['value', KEY]], 200), ERROR_CODES.INTERNAL, ''],
    [
      'a frame with a value and an error',
      frame([
        ['value', KEY],
        ['error.code', 'X'],
      ]),
      ERROR_CODES.INTERNAL,
      '',
    ],
    [
      'a frame over the reply limit',
      Buffer.concat([frame([['value', KEY]], MAX_REPLY_BYTES), Buffer.alloc(1000)]),
      ERROR_CODES.INTERNAL,
      '',
    ],
  ];
  it.for(ways)('%s: no copy at exit', async ([, answer, code, stdout], ctx) => {
    if (ptraceDenied) ctx.skip('this system does not let a process ptrace its child');
    const r = await shimScan(answer);
    // The harness reports the shim's exit status, and how many copies it found at that moment.
    expect(r.report).toBe(`exit ${code} copies 0`);
    expect(r.stdout).toBe(stdout);
  });
});
