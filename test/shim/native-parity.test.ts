// The native shim and the Node shim, side by side against a recording stand-in daemon: for the
// same arguments, environment and working directory they must send the daemon the same request
// line, byte for byte, and for the same reply print the same stdout and stderr and exit with the
// same status. Each case also says whether the native shim answers itself or hands over to the
// Node shim (seen through KEYBROKER_NODE, pointed at a wrapper that leaves a mark), so a native
// shim that handed everything over could not pass.
import { spawn } from 'node:child_process';
import fs from 'node:fs';
import net from 'node:net';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ERROR_CODES, MAX_REPLY_BYTES } from '../../src/protocol/messages.js';
import { VERSION } from '../../src/client/build-info.js';
import { baseEnv, NATIVE_SHIM, privateTempDir, ROOT, run, SHIM, SHIMS, type RunResult } from '../helpers/daemon.js';
import { CLAUDE_ENV, startFakeClaude, UNMARKED_CLAUDE_ENV } from '../helpers/fake-claude.js';

const native = SHIMS.find((s) => s.name === 'native')!;
/** The build id stamped into the built shims (the sources are unstamped). */
const BUILD_ID = (fs
  .readFileSync(path.join(ROOT, 'dist', 'src', 'client', 'build-info.js'), 'utf8')
  .match(/'([0-9a-f]{12})' \/\* build-id \*\//) ?? [])[1];

interface Recorder {
  /** Each connection's request line, as bytes (latin1 keeps every byte). */
  requests: string[];
  close(): Promise<void>;
}

/** What the stand-in daemon answers: the same to every request, or by request line; null: hang up. */
type Answer = Buffer | null | ((line: string) => Buffer | null);

/** A stand-in daemon: records request lines and answers each with `reply`. */
async function recordingServer(socketPath: string, answer: Answer): Promise<Recorder> {
  fs.mkdirSync(path.dirname(socketPath), { recursive: true, mode: 0o700 });
  const requests: string[] = [];
  const server = net.createServer({ allowHalfOpen: true }, (conn) => {
    let got = Buffer.alloc(0);
    let answered = false;
    conn.on('error', () => {});
    conn.on('data', (d: Buffer) => {
      got = Buffer.concat([got, d]);
      const nl = got.indexOf(0x0a);
      if (nl === -1 || answered) return;
      answered = true;
      const line = got.subarray(0, nl).toString('latin1');
      requests.push(line);
      const reply = typeof answer === 'function' ? answer(line) : answer;
      if (reply === null) conn.destroy();
      else conn.end(reply);
    });
  });
  await new Promise<void>((resolve) => server.listen(socketPath, resolve));
  return { requests, close: () => new Promise((resolve) => server.close(() => resolve())) };
}

interface Case {
  /** Arguments after the shim, as words; or a shell snippet (for bytes a JS string cannot hold). */
  args?: string[];
  shell?: string;
  /** Shell commands run before the shim, in the same shell. */
  prefix?: string;
  env?: NodeJS.ProcessEnv;
  /** Where the daemon listens, relative to the case's directory (default: the KEYBROKER_SOCKET of baseEnv). */
  socket?: string;
  /** Run from this directory, relative to the case's directory. */
  cwd?: string;
  reply?: Buffer | string | null | ((line: string) => Buffer | null);
  /** Does the native shim hand this one to the Node shim? */
  handover: boolean;
}

interface Outcome extends RunResult {
  requests: string[];
  handedOver: boolean;
}

let root: string;
let nodeWrapper: string;
beforeAll(() => {
  root = privateTempDir('kb-parity-');
  // KEYBROKER_NODE for the native shim's hand-over: marks that it happened, then runs node.
  nodeWrapper = path.join(root, 'node-wrapper');
  fs.writeFileSync(
    nodeWrapper,
    `#!/bin/sh\necho handover >> "$KB_TEST_HANDOVER_LOG"\nexec ${JSON.stringify(process.execPath)} "$@"\n`,
    { mode: 0o755 },
  );
});
afterAll(() => fs.rmSync(root, { recursive: true, force: true }));

const OK_REPLY = '{"v":1,"ok":true,"profile":"work","value":"sk-1","stale":false,"source":"env","expiresInMs":1000}\n';

let caseNo = 0;
async function runBoth(c: Case): Promise<{ node: Outcome; native: Outcome }> {
  const dir = path.join(root, `c${caseNo++}`);
  fs.mkdirSync(dir, { mode: 0o700 });
  const handoverLog = path.join(dir, 'handover.log');
  const env = baseEnv(dir, { KEYBROKER_NODE: nodeWrapper, KB_TEST_HANDOVER_LOG: handoverLog, ...c.env });
  for (const [k, v] of Object.entries(c.env ?? {})) if (v === undefined) delete env[k];
  const socketPath = c.socket ? path.join(dir, c.socket) : env.KEYBROKER_SOCKET!;
  const cwd = c.cwd ? path.join(dir, c.cwd) : dir;
  fs.mkdirSync(cwd, { recursive: true, mode: 0o700 });
  const reply =
    c.reply === undefined
      ? Buffer.from(OK_REPLY)
      : c.reply === null || typeof c.reply === 'function' || Buffer.isBuffer(c.reply)
        ? c.reply
        : Buffer.from(c.reply);
  const outcome = async (shim: string): Promise<Outcome> => {
    fs.rmSync(handoverLog, { force: true });
    const server = await recordingServer(socketPath, reply);
    try {
      const script = `${c.prefix ?? ''}"$0" ${c.shell ?? '"$@"'}`;
      const r = await run('/bin/sh', ['-c', script, shim, ...(c.args ?? [])], { env, cwd });
      return { ...r, requests: [...server.requests], handedOver: fs.existsSync(handoverLog) };
    } finally {
      await server.close();
      fs.rmSync(socketPath, { force: true });
    }
  };
  return { node: await outcome(SHIM), native: await outcome(NATIVE_SHIM) };
}

async function expectSame(c: Case): Promise<{ node: Outcome; native: Outcome }> {
  const r = await runBoth(c);
  expect(r.node.handedOver).toBe(false);
  expect(r.native.handedOver).toBe(c.handover);
  expect({
    requests: r.native.requests,
    code: r.native.code,
    stdout: r.native.stdout,
    stderr: r.native.stderr,
  }).toEqual({
    requests: r.node.requests,
    code: r.node.code,
    stdout: r.node.stdout,
    stderr: r.node.stderr,
  });
  return r;
}

const reply = (fields: object): string => `${JSON.stringify({ v: 1, ...fields })}\n`;

describe.skipIf(native.skip !== undefined)(native.skip ?? 'native and Node shims agree', () => {
  describe('the request line', () => {
    const cases: Array<[string, Case]> = [
      ['no profile', { handover: false }],
      ['a profile', { args: ['work'], handover: false }],
      ['a profile that needs escaping', { args: ['wörk "a"\\\t\u0001🔑'], handover: false }],
      ['a profile that is not UTF-8', { shell: `"$(printf 'w\\377\\303(\\355\\240\\200k')"`, handover: false }],
      [
        '--socket, relative to the working directory',
        { args: ['--socket', '../s/./kb.sock', 'work'], cwd: 'sub', socket: 's/kb.sock', handover: false },
      ],
      ['--socket=~/…', { args: ['--socket=~/s//kb.sock/', 'work'], socket: 's/kb.sock', handover: false }],
      [
        '--socket twice: the last one',
        { args: ['--socket', 'nowhere', '--socket', 's/kb.sock', 'work'], socket: 's/kb.sock', handover: false },
      ],
      [
        'KEYBROKER_SOCKET with ~ and ..',
        { env: { KEYBROKER_SOCKET: '~/x/../s/kb.sock' }, socket: 's/kb.sock', handover: false },
      ],
      ['XDG_RUNTIME_DIR', { env: { KEYBROKER_SOCKET: '' }, socket: 'run/keybroker/keybroker.sock', handover: false }],
      [
        'XDG_STATE_HOME',
        {
          env: { KEYBROKER_SOCKET: '', XDG_RUNTIME_DIR: 'relative' },
          socket: 'state/keybroker/keybroker.sock',
          handover: false,
        },
      ],
      [
        '~/.local/state',
        {
          env: { KEYBROKER_SOCKET: undefined, XDG_RUNTIME_DIR: undefined, XDG_STATE_HOME: undefined },
          socket: '.local/state/keybroker/keybroker.sock',
          handover: false,
        },
      ],
      ['Claude Code’s environment, not a claude process', { env: CLAUDE_ENV, handover: false }],
      ['a helper TTL', { env: { CLAUDE_CODE_API_KEY_HELPER_TTL_MS: '60000' }, handover: false }],
      [
        'a helper TTL with spaces and zeros',
        { env: { CLAUDE_CODE_API_KEY_HELPER_TTL_MS: ' \t007 ' }, handover: false },
      ],
      ['an empty helper TTL', { env: { CLAUDE_CODE_API_KEY_HELPER_TTL_MS: '' }, handover: false }],
      ['a negative helper TTL', { env: { CLAUDE_CODE_API_KEY_HELPER_TTL_MS: '-5' }, handover: false }],
      ['a helper TTL that is not a number', { env: { CLAUDE_CODE_API_KEY_HELPER_TTL_MS: '5m' }, handover: true }],
      ['a helper TTL in exponent form', { env: { CLAUDE_CODE_API_KEY_HELPER_TTL_MS: '1e3' }, handover: true }],
      ['a helper TTL in hex', { env: { CLAUDE_CODE_API_KEY_HELPER_TTL_MS: '0x10' }, handover: true }],
      [
        'a working directory deleted under it',
        { args: ['work'], prefix: 'mkdir gone && cd gone && rmdir ../gone && ', handover: false },
      ],
      [
        'a working directory that is not UTF-8',
        { args: ['work'], prefix: `mkdir -p "$(printf 'd\\377')" && cd "$(printf 'd\\377')" && `, handover: false },
      ],
    ];
    it.each(cases)('%s', async (_what, c) => {
      const r = await expectSame(c);
      expect(r.node.requests).toHaveLength(1);
      expect(r.node.code).toBe(0);
    });

    // What a command run by another Claude Code's Bash tool inherits (measured on 2.1.332).
    const OUTER_AGENT_MARKERS = {
      CLAUDECODE: '1',
      CLAUDE_CODE_CHILD_SESSION: '1',
      CLAUDE_PID: '42',
      AI_AGENT: 'claude-code_2.1.332_agent',
    };
    // The stand-in Claude Code adds the markers of each kind of call (test/helpers/fake-claude.mjs).
    const markers: Array<[string, NodeJS.ProcessEnv, 'helper' | 'bash-tool', string]> = [
      ['apiKeyHelper', CLAUDE_ENV, 'helper', 'api-key-helper'],
      ['the agent’s Bash tool', CLAUDE_ENV, 'bash-tool', 'agent-tool'],
      // A Claude Code started from another one's Bash tool inherits its markers, CLAUDE_PID (the
      // other's pid) included; its own helper still gets AI_AGENT=…_harness, its Bash tool its own pid.
      [
        'a nested Claude Code: its helper, with the outer one’s markers inherited',
        { ...CLAUDE_ENV, ...OUTER_AGENT_MARKERS },
        'helper',
        'api-key-helper',
      ],
      ['a nested Claude Code: its own Bash tool', { ...CLAUDE_ENV, ...OUTER_AGENT_MARKERS }, 'bash-tool', 'agent-tool'],
      ['a helper with an agent marker too (CLAUDECODE=1)', { ...CLAUDE_ENV, CLAUDECODE: '1' }, 'helper', 'agent-tool'],
      ['a release with neither marker', UNMARKED_CLAUDE_ENV, 'helper', 'unmarked'],
    ];
    it.each(markers)('from a claude process: %s', async (_what, claudeEnv, kind, invocation) => {
      const dir = path.join(root, `c${caseNo++}`);
      fs.mkdirSync(dir, { mode: 0o700 });
      const env = baseEnv(dir, {
        ...claudeEnv,
        KEYBROKER_NODE: nodeWrapper,
        KB_TEST_HANDOVER_LOG: path.join(dir, 'handover.log'),
      });
      const claude = startFakeClaude(dir, env);
      try {
        const lines: string[] = [];
        for (const shim of [SHIM, NATIVE_SHIM]) {
          const server = await recordingServer(env.KEYBROKER_SOCKET!, Buffer.from(OK_REPLY));
          const call = kind === 'helper' ? claude.callHelper : claude.bashTool;
          expect(await call(`${shim} work`)).toEqual({ code: 0, stdout: 'sk-1\n', stderr: '' });
          await server.close();
          fs.rmSync(env.KEYBROKER_SOCKET!, { force: true });
          lines.push(...server.requests);
        }
        expect(lines).toHaveLength(2);
        expect(lines[1]).toBe(lines[0]);
        expect(JSON.parse(lines[0]!)).toMatchObject({
          consumer: { pid: claude.pid, name: 'claude', claudeCode: true, invocation },
        });
        expect(fs.existsSync(path.join(dir, 'handover.log'))).toBe(false);
      } finally {
        claude.close();
      }
    });
  });

  describe('what it hands to the Node shim, before sending anything', () => {
    const cases: Array<[string, Case]> = [
      ['--help', { args: ['--help'], handover: true }],
      ['--refresh', { args: ['--refresh', 'work'], handover: true }],
      ['--format', { args: ['--format', 'headers', 'work'], handover: true }],
      ['--header', { args: ['--header', 'X-API-Key', 'work'], handover: true }],
      ['--format=', { args: ['--format=aws-credentials', 'work'], handover: true }],
      ['an unknown option', { args: ['-x'], handover: true }],
      ['two profiles', { args: ['a', 'b'], handover: true }],
      ['--socket without a path', { args: ['work', '--socket'], handover: true }],
      ['no daemon answering', { args: ['work'], socket: 'elsewhere/kb.sock', handover: true }],
    ];
    it.each(cases)('%s', async (_what, c) => {
      const r = await expectSame(c);
      // Handed over before sending: the daemon saw exactly what the Node shim alone sends.
      expect(r.native.requests).toEqual(r.node.requests);
    });
  });

  describe('the reply', () => {
    const value = (v: string | Buffer): Buffer =>
      Buffer.concat([
        Buffer.from('{"v":1,"ok":true,"profile":"work","value":"'),
        Buffer.isBuffer(v) ? v : Buffer.from(v),
        Buffer.from('","stale":false}\n'),
      ]);
    const cases: Array<[string, Buffer | string | null]> = [
      ['every escape', value('a\\"b\\\\c\\/d\\b\\f\\n\\r\\t\\u0041\\u00e9\\u20AC\\ud83d\\ude00\\u0000end')],
      ['lone surrogates', value('\\ud800x\\udc00\\ud83d\\u0041\\ud83d')],
      ['UTF-8 as is', value('ключ🔑 ')],
      [
        'bytes that are not UTF-8',
        value(
          Buffer.from([
            0x61, 0xff, 0x62, 0xc3, 0x28, 0xed, 0xa0, 0x80, 0xf0, 0x9f, 0x98, 0x63, 0xe0, 0x80, 0xf4, 0x90, 0x80, 0x80,
            0xc0, 0xaf,
          ]),
        ),
      ],
      ['no newline before the end', '{"ok":true,"value":"sk-eof"}'],
      ['more after the first line', '{"ok":true,"value":"sk-first"}\n{"ok":true,"value":"sk-second"}\n'],
      ['duplicate keys: the last wins', '{"ok":false,"value":"a","ok":true,"value":"b","error":{"code":"TIMEOUT"}}\n'],
      ['keys spelled with escapes', '{"\\u006fk":true,"valu\\u0065":"sk-esc"}\n'],
      [
        'deep nesting in another field',
        `{"ok":true,"value":"sk-deep","x":${'['.repeat(50_000)}${']'.repeat(50_000)},"y":${'{"a":'.repeat(1000)}1${'}'.repeat(1000)}}\n`,
      ],
      [
        'numbers, literals and whitespace elsewhere',
        ' {"ok" : true ,"n":[-0,1.5e+3,0.0,-12E-2,true,false,null,{}],"value":"sk-ws"} \n',
      ],
      [
        'stale, with a warning on several lines',
        reply({
          ok: true,
          value: 'sk-st',
          stale: true,
          warning: { code: 'SOURCE_ERROR', message: 'exec:x … exited 1:\n  cat: nope\u00a0\n\u2028tail  \n' },
        }),
      ],
      [
        'stale, with a warning that is not an object',
        reply({ ok: true, value: 'sk-st', stale: true, warning: 'source down' }),
      ],
      [
        'stale, with a warning without a message',
        reply({ ok: true, value: 'sk-st', stale: 1, warning: { message: 5 } }),
      ],
      ['stale false, with a warning', reply({ ok: true, value: 'sk-st', stale: '', warning: { message: 'm' } })],
      ['stale as a number that is zero', '{"ok":true,"value":"sk-z","stale":1e-400,"warning":{"message":"m"}}\n'],
      ['stale as a non-empty string', reply({ ok: true, value: 'sk-s', stale: 'yes', warning: { message: 'm' } })],
      ['ok without a value', reply({ ok: true, profile: 'work' })],
      ['a value that is not a string', reply({ ok: true, value: 42 })],
      [
        'an error on several lines',
        reply({ ok: false, error: { code: 'SOURCE_ERROR', message: 'first\r\n\tsecond \n third\n' } }),
      ],
      [
        'a TIMEOUT worded as a client’s own',
        reply({
          ok: false,
          error: { code: 'TIMEOUT', message: 'no reply from the keybroker daemon on /x within 5 ms' },
        }),
      ],
      [
        'an error with a profile and a fix on several lines',
        reply({
          ok: false,
          error: { code: 'NOT_FOUND', message: 'm\n', profile: 'wörk "a"', fix: '\n do\r\nthis \n' },
        }),
      ],
      [
        'an error whose profile and fix are not strings',
        reply({ ok: false, error: { code: 'NOT_FOUND', message: 'm', profile: 5, fix: { run: 'x' } } }),
      ],
      [
        'an error with an empty profile and fix',
        reply({ ok: false, error: { code: 'NOT_FOUND', message: 'm', profile: '', fix: '' } }),
      ],
      [
        'an error whose profile and fix are given twice: the last wins',
        '{"ok":false,"error":{"code":"NOT_FOUND","message":"m","profile":"a","fix":"x","profile":null,"fix":"y"}}\n',
      ],
      [
        'stale, with a warning that has a profile and a fix',
        reply({
          ok: true,
          value: 'sk-st',
          stale: true,
          warning: { code: 'UNAVAILABLE', message: 'down', profile: 'p', fix: 'f\ng' },
        }),
      ],
      [
        'stale, with a warning whose fix is not a string',
        reply({ ok: true, value: 'sk-st', stale: true, warning: { message: 'down', profile: 'p', fix: 7 } }),
      ],
      [
        'stale, with a warning given twice: the last wins whole',
        '{"ok":true,"value":"sk-st","stale":true,"warning":{"message":"a","fix":"x"},"warning":{"message":"b"}}\n',
      ],
      ['an error of an unknown code', reply({ ok: false, error: { code: 'SOMETHING_NEW', message: 'new' } })],
      ['an error without a message', reply({ ok: false, error: { code: 'TIMEOUT' } })],
      ['an error that is not an object', reply({ ok: false, error: 'TIMEOUT' })],
      ['ok neither true nor false', reply({ ok: 1, value: 'x' })],
      ['an array', '[{"ok":true,"value":"x"}]\n'],
      ['a number', '42\n'],
      ['a string', '"sk"\n'],
      ['null', 'null\n'],
      ['not JSON', 'sk-plain\n'],
      ['a trailing comma', '{"ok":true,"value":"x",}\n'],
      ['a leading zero', '{"ok":true,"value":"x","n":01}\n'],
      ['an unknown escape', '{"ok":true,"value":"\\x41"}\n'],
      ['a raw control character in a string', '{"ok":true,"value":"a\tb"}\n'],
      ['a short \\u escape', '{"ok":true,"value":"\\u12"}\n'],
      ['text after the object', '{"ok":true,"value":"x"} x\n'],
      ['an unterminated string', '{"ok":true,"value":"x\n'],
      ['only whitespace', '   \n'],
      ['too long', Buffer.alloc(MAX_REPLY_BYTES + 10, 0x61)],
    ];
    it.each(cases)('%s', async (_what, r) => {
      await expectSame({ args: ['work'], reply: r, handover: false });
    });

    it('a hang-up without a reply, autostart off', async () => {
      const r = await expectSame({ args: ['work'], reply: null, handover: false });
      expect(r.node.code).toBe(ERROR_CODES.DAEMON_UNREACHABLE);
    });

    // Errors as data: both shims put the line together from the fields, the same way.
    const fields: Array<[string, Record<string, string>, string]> = [
      ['a profile', { message: 'it broke', profile: 'work' }, 'profile "work": it broke'],
      ['a fix', { message: 'it broke', fix: 'run: keybroker status' }, 'it broke — run: keybroker status'],
      [
        'a profile and a fix',
        { message: 'it broke', profile: 'work', fix: 'chmod 600 ~/work.key, then run: keybroker refresh work' },
        'profile "work": it broke — chmod 600 ~/work.key, then run: keybroker refresh work',
      ],
    ];
    it.each(fields)('an error with %s: rendered from its fields', async (_what, error, line) => {
      const r = await expectSame({
        args: ['work'],
        reply: reply({ ok: false, error: { code: 'PERMISSION_DENIED', ...error } }),
        handover: false,
      });
      expect(r.native.code).toBe(ERROR_CODES.PERMISSION_DENIED);
      expect(r.native.stderr).toBe(`keybroker: ${line}\n`);
    });

    it('a daemon’s TIMEOUT worded as a client’s own is the daemon’s: printed as it is', async () => {
      // Only the shim's own wait running out says "no answer within …": no text is taken for it.
      const message = 'no reply from the keybroker daemon on /x within 5 ms';
      const r = await expectSame({
        args: ['work'],
        reply: reply({ ok: false, error: { code: 'TIMEOUT', message } }),
        handover: false,
      });
      expect(r.native.code).toBe(ERROR_CODES.TIMEOUT);
      expect(r.native.stderr).toBe(`keybroker: ${message}\n`);
    });

    it('a stale value’s warning: rendered from its fields', async () => {
      const warning = { code: 'UNAVAILABLE', message: 'source down', profile: 'work', fix: 'run: keybroker status' };
      const r = await expectSame({
        args: ['work'],
        reply: reply({ ok: true, value: 'sk-st', stale: true, warning }),
        handover: false,
      });
      expect(r.native.code).toBe(0);
      expect(r.native.stderr).toBe(
        'keybroker: warning: serving a cached value past its TTL: profile "work": source down — run: keybroker status\n',
      );
    });

    it.each(Object.entries(ERROR_CODES))('error %s: its exit status', async (code, status) => {
      const r = await expectSame({
        args: ['work'],
        reply: reply({ ok: false, error: { code, message: `because ${code}` } }),
        handover: false,
      });
      expect(r.native.code).toBe(status);
      // (DAEMON_UNREACHABLE also says that autostart is off.)
      expect(r.native.stderr.startsWith(`keybroker: because ${code}`)).toBe(true);
    });
  });

  describe('another build of the daemon (an upgrade with the old daemon running)', () => {
    const ok = (daemon: unknown): string => reply({ ok: true, profile: 'work', value: 'sk-1', stale: false, daemon });
    const cases: Array<[string, unknown, boolean]> = [
      [
        'another version, started in the foreground',
        { pid: 4242, version: '9.9.9', build: 'abc123', startedBy: 'foreground' },
        true,
      ],
      [
        'another build id, under systemd',
        { pid: 4242, version: VERSION, build: 'not-this-build', startedBy: 'systemd' },
        true,
      ],
      ['another version, under launchd', { pid: 4242, version: '0.0.1', startedBy: 'launchd' }, true],
      ['another version, no build, no startedBy', { pid: 1e3, version: '0.0.1' }, true],
      ['an empty build', { pid: 4242, version: '9.9.9', build: '' }, false],
      ['a version that is not one word', { pid: 4242, version: '9.9.9\nrm -rf' }, false],
      ['a pid that is not an integer', { pid: 42.5, version: '9.9.9' }, false],
      ['a pid of 0', { pid: 0, version: '9.9.9' }, false],
      ['a startedBy that is not a string', { pid: 4242, version: '9.9.9', startedBy: 7 }, false],
      ['not an object', '9.9.9', false],
      [
        'this very build',
        { pid: 4242, version: VERSION, ...(BUILD_ID ? { build: BUILD_ID } : {}), startedBy: 'foreground' },
        false,
      ],
    ];
    it.each(cases)('%s', async (_what, daemon, warns) => {
      const r = await expectSame({ args: ['work'], reply: ok(daemon), handover: false });
      expect(r.native.code).toBe(0);
      expect(r.native.stdout).toBe('sk-1\n');
      expect(r.native.stderr.startsWith('keybroker: warning: the running daemon')).toBe(warns);
      expect(r.native.stderr.split('\n')).toHaveLength(warns ? 2 : 1);
    });

    it('a daemon that autostart started is asked to stop after the reply, without a warning', async () => {
      for (const shim of [SHIM, NATIVE_SHIM]) {
        const dir = path.join(root, `c${caseNo++}`);
        fs.mkdirSync(dir, { mode: 0o700 });
        const env = baseEnv(dir, { KEYBROKER_NODE: nodeWrapper, KB_TEST_HANDOVER_LOG: path.join(dir, 'handover.log') });
        // Looks like a daemon on Linux: "daemon" and an entry point ending in main.js in its argv.
        const old = spawn(
          process.execPath,
          ['-e', 'setInterval(() => {}, 1000)', path.join(dir, 'main.js'), 'daemon'],
          { stdio: 'ignore' },
        );
        const gone = new Promise<NodeJS.Signals | null>((resolve) =>
          old.on('exit', (_code, signal) => resolve(signal)),
        );
        const server = await recordingServer(
          env.KEYBROKER_SOCKET!,
          Buffer.from(ok({ pid: old.pid, version: '0.0.1', startedBy: 'autostart' })),
        );
        try {
          const r = await run('/bin/sh', ['-c', `${shim} work`], { env });
          expect(r).toMatchObject({ code: 0, stdout: 'sk-1\n', stderr: '' });
          const late = new Promise<string>((resolve) =>
            setTimeout(() => resolve('still running after 5 s'), 5_000).unref(),
          );
          expect(await Promise.race([gone, late])).toBe('SIGTERM');
          expect(server.requests).toHaveLength(1);
        } finally {
          old.kill('SIGKILL');
          await server.close();
        }
      }
    });

    const pong = (fields: object): Buffer => Buffer.from(reply({ ok: true, pong: true, ...fields }));
    const refusal = Buffer.from(reply({ ok: false, error: { code: 'BAD_REQUEST', message: 'unknown field "x"' } }));
    const refusals: Array<[string, (line: string) => Buffer | null]> = [
      [
        'refused by another build: named, with the command that restarts it',
        (line) => (line.includes('"ping"') ? pong({ pid: 4242, version: '0.0.1', startedBy: 'systemd' }) : refusal),
      ],
      [
        'refused by another build that autostart started, which is not a daemon: named',
        (line) => (line.includes('"ping"') ? pong({ pid: 1, version: '0.0.1', startedBy: 'autostart' }) : refusal),
      ],
      [
        'refused by this build: the refusal as it is',
        (line) =>
          line.includes('"ping"')
            ? pong({ pid: 4242, version: VERSION, ...(BUILD_ID ? { build: BUILD_ID } : {}) })
            : refusal,
      ],
      ['refused, and the ping unanswered', (line) => (line.includes('"ping"') ? null : refusal)],
      [
        'refused, and the ping answered without pong',
        (line) => (line.includes('"ping"') ? Buffer.from(reply({ ok: true, pid: 4242, version: '0.0.1' })) : refusal),
      ],
    ];
    it.each(refusals)('%s', async (what, answer) => {
      const r = await expectSame({ args: ['work'], reply: answer, handover: false });
      expect(r.native.code).toBe(ERROR_CODES.BAD_REQUEST);
      expect(r.native.requests).toHaveLength(2);
      expect(r.native.requests[1]).toBe('{"v":1,"op":"ping"}');
      expect(r.native.stderr.includes('the running daemon (pid')).toBe(what.includes('named'));
    });
  });

  describe('socket checks: refused the same way, before anything is sent', () => {
    const refusals: Array<[string, (dir: string, socketPath: string) => string | void, boolean]> = [
      ['a socket directory others can enter', (dir) => fs.chmodSync(path.join(dir, 's'), 0o755), false],
      [
        'a socket directory that is a symbolic link',
        (dir) => {
          fs.renameSync(path.join(dir, 's'), path.join(dir, 'real'));
          fs.symlinkSync(path.join(dir, 'real'), path.join(dir, 's'));
        },
        false,
      ],
      [
        'a file that is not a socket',
        (_dir, socketPath) => {
          fs.rmSync(socketPath);
          fs.writeFileSync(socketPath, '');
        },
        false,
      ],
      ['a socket another user owns', (_dir, socketPath) => fs.lchownSync(socketPath, 65534, 65534), true],
      ['a socket directory another user owns', (dir) => fs.chownSync(path.join(dir, 's'), 65534, 65534), true],
      // The directory above the socket's: whoever can write there can swap the socket directory.
      ['a directory above it that others can write, without the sticky bit', (dir) => fs.chmodSync(dir, 0o777), false],
      ['a directory above it that its group can write', (dir) => fs.chmodSync(dir, 0o770), false],
      ['a directory above it that another user owns', (dir) => fs.chownSync(dir, 65534, 65534), true],
      [
        'a directory above it, reached through a symbolic link, that others can write',
        (dir) => {
          // The socket path goes through a link; the directory it resolves to is what counts.
          fs.mkdirSync(path.join(dir, 'open'), { mode: 0o777 });
          fs.chmodSync(path.join(dir, 'open'), 0o777);
          fs.renameSync(path.join(dir, 's'), path.join(dir, 'open', 's'));
          fs.symlinkSync(path.join(dir, 'open'), path.join(dir, 'via'));
          return path.join(dir, 'via', 's', 'kb.sock');
        },
        false,
      ],
    ];
    it.for(refusals)('%s', async ([, prepare, needsRoot], ctx) => {
      if (needsRoot && process.getuid?.() !== 0) ctx.skip('needs root to give it to another user');
      const outcomes: RunResult[] = [];
      for (const shim of [SHIM, NATIVE_SHIM]) {
        const dir = path.join(root, `c${caseNo++}`);
        fs.mkdirSync(dir, { mode: 0o700 });
        const env = baseEnv(dir, { KEYBROKER_NODE: nodeWrapper, KB_TEST_HANDOVER_LOG: path.join(dir, 'handover.log') });
        const socketPath = path.join(dir, 's', 'kb.sock');
        const server = await recordingServer(socketPath, Buffer.from(OK_REPLY));
        try {
          const connectTo = prepare(dir, socketPath) ?? socketPath;
          const r = await run('/bin/sh', ['-c', `${shim} --socket ${connectTo} work`], { env });
          expect(r.code).toBe(ERROR_CODES.UNSAFE_PATH);
          expect(r.stdout).toBe('');
          expect(server.requests).toEqual([]);
          expect(fs.existsSync(path.join(dir, 'handover.log'))).toBe(false);
          // The paths differ per directory; the rest of the line must not.
          outcomes.push({ ...r, stderr: r.stderr.replaceAll(dir, '<dir>') });
        } finally {
          await server.close();
        }
      }
      expect(outcomes[1]!.stderr).toBe(outcomes[0]!.stderr);
    });
  });
});
