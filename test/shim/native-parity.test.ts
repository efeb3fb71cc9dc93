// The native shim and the Node shim, side by side against a recording stand-in daemon: for the
// same arguments, environment and working directory they must send the daemon the same request
// line, byte for byte (the native one adds "framed":true, asking for a framed reply), and for the
// same reply print the same stdout and stderr and exit with the same status. The stand-in answers
// as the daemon does: a reply object goes out through the daemon's own encoders, as a frame to a
// request that asked for one and as JSON otherwise. Each case also says whether the native shim
// answers itself or hands over to the Node shim (seen through KEYBROKER_NODE, pointed at a wrapper
// that leaves a mark), so a native shim that handed everything over could not pass.
//
// A hand-over does not run node a second time: the wrapper writes down what it was handed (its
// arguments, working directory, umask and environment) and exits, and the case checks that the
// native shim printed nothing of its own, sent only what it should have, and handed node exactly
// what a shell gives it for the Node shim. node's part from there on is the Node shim's own run,
// which each case makes anyway: together they are what the native shim's caller sees.
import { spawn } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ERROR_CODES, MAX_REPLY_BYTES, renderError } from '../../src/protocol/messages.js';
import { oneLine, SHIM_TEXT } from '../../src/shim/shim-messages.js';
import { VERSION } from '../../src/client/build-info.js';
import { SANDBOX } from '../../src/client/sandbox.js';
import {
  baseEnv,
  NATIVE_SHIM,
  privateTempDir,
  ROOT,
  run,
  SHIM,
  SHIMS,
  type RunResult,
  shellQuote,
} from '../helpers/daemon.js';
import { buildDenyUnixSockets } from '../helpers/deny-unix-sockets.js';
import { CLAUDE_ENV, startFakeClaude, startFakeCodex, UNMARKED_CLAUDE_ENV } from '../helpers/fake-claude.js';
import { asksForFrame, framed, recordingServer, type Answer, type Reply } from '../helpers/stand-in-daemon.js';

const native = SHIMS.find((s) => s.name === 'native')!;
/** The build id stamped into the built shims (the sources are unstamped). */
const BUILD_ID = (fs
  .readFileSync(path.join(ROOT, 'dist', 'src', 'client', 'build-info.js'), 'utf8')
  .match(/'([0-9a-f]{12})' \/\* build-id \*\//) ?? [])[1];

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
  reply?: Answer | string;
  /** Does the native shim hand this one to the Node shim, before sending anything? */
  handover: boolean;
  /**
   * Does it send its request, read that it was not served (a JSON reply, a refusal, a hang-up)
   * and hand over, so that the Node shim asks again?
   */
  reasks?: boolean;
}

interface Outcome extends RunResult {
  requests: string[];
  handedOver: boolean;
}

/** What the hand-over wrapper exits with, in node's place. */
const HANDED_OVER = 97;

let root: string;
let nodeWrapper: string;
beforeAll(() => {
  root = privateTempDir('kb-parity-');
  // KEYBROKER_NODE for the native shim's hand-over: writes down what it was given, in place of node.
  nodeWrapper = path.join(root, 'node-wrapper');
  fs.writeFileSync(
    nodeWrapper,
    `#!/bin/sh\n{ printf '%s\\0' "$@"; printf '\\n'; pwd -P; umask; env; } > "$KB_TEST_HANDOVER_LOG"\nexit ${HANDED_OVER}\n`,
    { mode: 0o755 },
  );
});
afterAll(() => fs.rmSync(root, { recursive: true, force: true }));

const OK_REPLY = { ok: true, profile: 'work', value: 'sk-1', stale: false, source: 'env', expiresInMs: 1000 };

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
  const reply = c.reply === undefined ? OK_REPLY : typeof c.reply === 'string' ? Buffer.from(c.reply) : c.reply;
  /** The command, run as Claude Code runs a helper; `first`: a word before the arguments. */
  const inShell = (command: string, first = ''): Promise<RunResult> =>
    run('/bin/sh', ['-c', `${c.prefix ?? ''}"$0" ${first}${c.shell ?? '"$@"'}`, command, ...(c.args ?? [])], {
      env,
      cwd,
    });
  const outcome = async (shim: string): Promise<Outcome> => {
    fs.rmSync(handoverLog, { force: true });
    const server = await recordingServer(socketPath, reply);
    try {
      const r = await inShell(shim);
      return { ...r, requests: [...server.requests], handedOver: fs.existsSync(handoverLog) };
    } finally {
      await server.close();
      fs.rmSync(socketPath, { force: true });
    }
  };
  const node = await outcome(SHIM);
  const native = await outcome(NATIVE_SHIM);
  if (!native.handedOver) return { node, native };
  // It handed over: it printed nothing itself, and node got what the Node shim's #! line gives it,
  // the Node shim (as the native shim finds it, beside itself) and then the arguments.
  expect({ code: native.code, stdout: native.stdout, stderr: native.stderr }).toEqual({
    code: HANDED_OVER,
    stdout: '',
    stderr: '',
  });
  const handedOver = fs.readFileSync(handoverLog, 'latin1');
  fs.rmSync(handoverLog);
  await inShell(nodeWrapper, `${shellQuote(fs.realpathSync(SHIM))} `);
  expect(handedOver).toBe(fs.readFileSync(handoverLog, 'latin1'));
  // node's part is the Node shim's run: to the caller and the daemon, what follows what the native shim sent.
  return { node, native: { ...node, requests: [...native.requests, ...node.requests], handedOver: true } };
}

async function expectSame(c: Case): Promise<{ node: Outcome; native: Outcome }> {
  const r = await runBoth(c);
  expect(r.node.handedOver).toBe(false);
  expect(r.native.handedOver).toBe(c.handover || c.reasks === true);
  const sent = c.handover ? r.node.requests : r.node.requests.map(framed);
  expect(r.native.requests).toEqual(c.reasks ? [framed(r.node.requests[0]!), ...r.node.requests] : sent);
  expect({
    code: r.native.code,
    stdout: r.native.stdout,
    stderr: r.native.stderr,
  }).toEqual({
    code: r.node.code,
    stdout: r.node.stdout,
    stderr: r.node.stderr,
  });
  return r;
}

const reply = (fields: object): string => `${JSON.stringify({ v: 1, ...fields })}\n`;

interface Agent {
  pid: number;
  close(): void;
}
interface Started<A extends Agent> {
  agent: A;
  env: NodeJS.ProcessEnv;
  dir: string;
}

/**
 * The stand-in agents (`start`) for these environments, one for each distinct one: the cases that
 * differ only in how the agent runs the shim share it (a stand-in keeps nothing between calls, and
 * each is a Node start). Started before the describe's tests, so that they outlive each test
 * (test/helpers/cleanup.ts closes them after the file); `agentFor(env)` gives a case its own.
 */
function sharedAgents<A extends Agent>(
  agentEnvs: NodeJS.ProcessEnv[],
  start: (dir: string, env: NodeJS.ProcessEnv) => A,
): (agentEnv: NodeJS.ProcessEnv) => Started<A> {
  const agents = new Map<string, Started<A>>();
  beforeAll(() => {
    for (const agentEnv of agentEnvs) {
      if (agents.has(JSON.stringify(agentEnv))) continue;
      const dir = path.join(root, `c${caseNo++}`);
      fs.mkdirSync(dir, { mode: 0o700 });
      const env = baseEnv(dir, {
        ...agentEnv,
        KEYBROKER_NODE: nodeWrapper,
        KB_TEST_HANDOVER_LOG: path.join(dir, 'handover.log'),
      });
      agents.set(JSON.stringify(agentEnv), { agent: start(dir, env), env, dir });
    }
  });
  return (agentEnv) => agents.get(JSON.stringify(agentEnv))!;
}

/**
 * The stand-in agent runs each shim once through `call`, in the environment its agentEnv adds;
 * both must print the key, send the same request (the native one framed) and not hand over. The
 * request, parsed, with the agent's pid as `agentPid`.
 */
async function fromAgentProcess<A extends Agent>(
  { agent, env, dir }: Started<A>,
  call: (agent: A, shim: string) => Promise<unknown>,
): Promise<Record<string, unknown> & { agentPid: number }> {
  fs.rmSync(path.join(dir, 'handover.log'), { force: true });
  const lines: string[] = [];
  for (const shim of [SHIM, NATIVE_SHIM]) {
    const server = await recordingServer(env.KEYBROKER_SOCKET!, OK_REPLY);
    try {
      expect(await call(agent, shim)).toEqual({ code: 0, stdout: 'sk-1\n', stderr: '' });
    } finally {
      await server.close();
      fs.rmSync(env.KEYBROKER_SOCKET!, { force: true });
    }
    lines.push(...server.requests);
  }
  expect(lines).toHaveLength(2);
  expect(lines[1]).toBe(framed(lines[0]!));
  expect(fs.existsSync(path.join(dir, 'handover.log'))).toBe(false);
  return { ...(JSON.parse(lines[0]!) as Record<string, unknown>), agentPid: agent.pid };
}

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
      ['--refresh-interval-ms', { args: ['--refresh-interval-ms', '60000', 'work'], handover: false }],
      [
        '--refresh-interval-ms=, with zeros, over a helper TTL',
        {
          args: ['work', '--refresh-interval-ms=007'],
          env: { CLAUDE_CODE_API_KEY_HELPER_TTL_MS: '60000' },
          handover: false,
        },
      ],
      ['--refresh-interval-ms at its largest', { args: ['--refresh-interval-ms=2147483647'], handover: false }],
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
    const claude = sharedAgents(
      markers.map(([, claudeEnv]) => claudeEnv),
      startFakeClaude,
    );
    it.each(markers)('from a claude process: %s', async (_what, claudeEnv, kind, invocation) => {
      const request = await fromAgentProcess(claude(claudeEnv), (claude, shim) =>
        kind === 'helper' ? claude.callHelper(`${shellQuote(shim)} work`) : claude.bashTool(`${shellQuote(shim)} work`),
      );
      expect(request).toMatchObject({
        consumer: { pid: request.agentPid, name: 'claude', claudeCode: true, invocation },
      });
    });
  });

  // The stand-in Codex runs an auth command directly and its exec_command tool through bash -c with
  // Codex's markers (test/helpers/fake-codex.mjs); AGENT_RULES decides, in both shims alike.
  describe('from a codex process', () => {
    const FLAG = ['--refresh-interval-ms', '900000'];
    const cases: Array<[string, NodeJS.ProcessEnv, 'auth' | 'tool', string[], object]> = [
      [
        'its auth command, as setup codex writes it',
        {},
        'auth',
        FLAG,
        { invocation: 'api-key-helper', helperTtlMs: 900000 },
      ],
      [
        'an auth command without --refresh-interval-ms',
        {},
        'auth',
        [],
        { invocation: 'unmarked', helperTtlMs: 300000 },
      ],
      ['its exec_command tool running the same command', {}, 'tool', FLAG, { invocation: 'agent-tool' }],
      ['its exec_command tool', {}, 'tool', [], { invocation: 'agent-tool' }],
      // A Codex started from another one's tool inherits its markers: never counted as a 401.
      [
        'a nested Codex: its auth command, with the outer one’s markers inherited',
        { CODEX_THREAD_ID: 'outer', CODEX_TOOL_CALL_ID: 'call_1' },
        'auth',
        FLAG,
        { invocation: 'agent-tool' },
      ],
      // Claude Code's markers say nothing about a codex process (a Codex run from Claude's Bash tool).
      [
        'Claude Code’s markers inherited',
        { ...CLAUDE_ENV, CLAUDECODE: '1', AI_AGENT: 'claude-code_2.1.332_agent' },
        'auth',
        FLAG,
        { invocation: 'api-key-helper' },
      ],
    ];
    const codex = sharedAgents(
      cases.map(([, codexEnv]) => codexEnv),
      startFakeCodex,
    );
    it.each(cases)('%s', async (_what, codexEnv, kind, args, expected) => {
      const request = await fromAgentProcess(codex(codexEnv), (codex, shim) =>
        kind === 'auth' ? codex.runAuth([shim, ...args, 'work']) : codex.tool([shim, ...args, 'work'].join(' ')),
      );
      expect(request).toMatchObject({
        consumer: { pid: request.agentPid, name: 'codex', claudeCode: false, agent: 'codex', ...expected },
      });
    });
  });

  // Claude Code re-runs its helper when a settings file changes; both shims tell the daemon the
  // newest mtime of them, to the same millisecond (floor of the nanoseconds).
  describe('the newest mtime of Claude Code’s settings files', () => {
    const at = (file: string, seconds: number): void => {
      fs.mkdirSync(path.dirname(file), { recursive: true });
      fs.writeFileSync(file, '{}\n');
      fs.utimesSync(file, seconds, seconds);
    };
    const cases: Array<[string, (dir: string, project: string) => NodeJS.ProcessEnv, number]> = [
      ['none exists', () => ({}), 0],
      [
        'the user’s, under HOME',
        (dir) => (at(path.join(dir, '.claude', 'settings.json'), 1_790_000_000.123456), {}),
        1_790_000_000_123,
      ],
      [
        'the project’s local settings, newer than the project’s',
        (_dir, project) => {
          at(path.join(project, '.claude', 'settings.json'), 1_790_000_000.5);
          at(path.join(project, '.claude', 'settings.local.json'), 1_790_000_100.987654);
          return {};
        },
        1_790_000_100_987,
      ],
      [
        'CLAUDE_CONFIG_DIR’s, instead of HOME’s',
        (dir) => {
          at(path.join(dir, '.claude', 'settings.json'), 1_790_000_900);
          at(path.join(dir, 'cc', 'settings.json'), 1_790_000_001.25);
          return { CLAUDE_CONFIG_DIR: path.join(dir, 'cc') };
        },
        1_790_000_001_250,
      ],
    ];
    it.each(cases)('%s', async (_what, setUp, expected) => {
      const dir = path.join(root, `c${caseNo++}`);
      const project = path.join(dir, 'project');
      fs.mkdirSync(project, { recursive: true, mode: 0o700 });
      fs.chmodSync(dir, 0o700);
      const extra = setUp(dir, project);
      const env = baseEnv(dir, {
        ...CLAUDE_ENV,
        ...extra,
        KEYBROKER_NODE: nodeWrapper,
        KB_TEST_HANDOVER_LOG: path.join(dir, 'handover.log'),
      });
      const claude = startFakeClaude(dir, env, 'claude', project);
      try {
        const lines: string[] = [];
        for (const shim of [SHIM, NATIVE_SHIM]) {
          const server = await recordingServer(env.KEYBROKER_SOCKET!, OK_REPLY);
          expect((await claude.callHelper(`${shim} work`)).code).toBe(0);
          await server.close();
          fs.rmSync(env.KEYBROKER_SOCKET!, { force: true });
          lines.push(...server.requests);
        }
        expect(lines[1]).toBe(framed(lines[0]!));
        const consumer = (JSON.parse(lines[0]!) as { consumer: { settingsMtimeMs?: number } }).consumer;
        // The managed file of this machine, if it has one, may be newer still.
        const managed = fs.statSync('/etc/claude-code/managed-settings.json', { throwIfNoEntry: false });
        if (!managed) expect(consumer.settingsMtimeMs).toBe(expected);
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
      ['--refresh-interval-ms without a value', { args: ['work', '--refresh-interval-ms'], handover: true }],
      ['--refresh-interval-ms 0', { args: ['--refresh-interval-ms', '0', 'work'], handover: true }],
      ['--refresh-interval-ms=', { args: ['--refresh-interval-ms=', 'work'], handover: true }],
      ['--refresh-interval-ms too large', { args: ['--refresh-interval-ms=2147483648'], handover: true }],
      ['--refresh-interval-ms in exponent form', { args: ['--refresh-interval-ms', '1e3'], handover: true }],
      ['--refresh-interval-ms negative', { args: ['--refresh-interval-ms', '-5'], handover: true }],
      ['no daemon answering', { args: ['work'], socket: 'elsewhere/kb.sock', handover: true }],
    ];
    it.each(cases)('%s', async (_what, c) => {
      const r = await expectSame(c);
      // Handed over before sending: the daemon saw exactly what the Node shim alone sends.
      expect(r.native.requests).toEqual(r.node.requests);
    });
  });

  describe('the reply', () => {
    const value = (v: string, more: object = {}): Record<string, unknown> => ({
      ok: true,
      profile: 'work',
      value: v,
      stale: false,
      ...more,
    });
    const error = (e: object): Record<string, unknown> => ({ ok: false, error: e });
    const cases: Array<[string, Record<string, unknown>]> = [
      ['every character JSON escapes', value('a"b\\c/d\b\f\n\r\t\u0041\u00e9\u20AC\ud83d\ude00\u0000\u001f\u000bend')],
      ['lone surrogates', value('\ud800x\udc00\ud83d\u0041\ud83d')],
      ['UTF-8 as is', value('ключ🔑 ')],
      ['an empty value', value('')],
      ['a value of many lines and spaces', value('  a\n\nb \r\n')],
      [
        'stale, with a warning on several lines',
        value('sk-st', {
          stale: true,
          warning: { code: 'SOURCE_ERROR', message: 'exec:x … exited 1:\n  cat: nope\u00a0\n\u2028tail  \n' },
        }),
      ],
      ['stale false, with a warning', value('sk-st', { stale: '', warning: { code: 'X', message: 'm' } })],
      ['stale as a zero', value('sk-z', { stale: 0, warning: { code: 'X', message: 'm' } })],
      ['stale as a non-empty string', value('sk-s', { stale: 'yes', warning: { code: 'X', message: 'm' } })],
      [
        'stale, with a warning of many spaces',
        value('sk-s', { stale: true, warning: { code: 'X', message: ' \t\n \u3000x\ufeff\n' } }),
      ],
      ['an error on several lines', error({ code: 'SOURCE_ERROR', message: 'first\r\n\tsecond \n third\n' })],
      ['an error of an unknown code', error({ code: 'SOMETHING_NEW', message: 'new' })],
      ['an error with an empty message', error({ code: 'TIMEOUT', message: '' })],
      ['a value over the reply limit', value('k'.repeat(MAX_REPLY_BYTES))],
    ];
    it.each(cases)('%s', async (_what, r) => {
      await expectSame({ args: ['work'], reply: r, handover: false });
    });

    // Errors as data: the daemon sends an error's and a stale warning's profile and fix as fields,
    // to both shims (a frame to the native one, JSON to the Node one), and both put the line
    // together in renderError's words: the same bytes, whatever the fields hold.
    const fields: Array<[string, Record<string, string>]> = [
      ['a profile', { profile: 'work' }],
      ['a fix', { fix: 'run: keybroker status' }],
      ['a profile and a fix', { profile: 'work', fix: 'chmod 600 ~/work.key, then run: keybroker refresh work' }],
      ['a profile to escape and a fix on several lines', { profile: 'wörk "a"', fix: '\n do\r\nthis \n' }],
      ['an empty profile and fix', { profile: '', fix: '' }],
      ['an empty message, with a profile and a fix', { message: '', profile: 'p', fix: 'f' }],
      ['NUL bytes in each', { message: 'it\u0000broke', profile: 'a\u0000b', fix: 'x\u0000y' }],
    ];
    it.each(fields)('an error with %s', async (_what, f) => {
      const error = { code: 'PERMISSION_DENIED', message: 'it broke\n', ...f };
      const r = await expectSame({ args: ['work'], reply: { ok: false, error }, handover: false });
      expect(r.native.code).toBe(ERROR_CODES.PERMISSION_DENIED);
      expect(r.native.stderr).toBe(`${SHIM_TEXT.prefix}${oneLine(renderError(error))}\n`);
    });
    it.each(fields)('a stale warning with %s', async (_what, f) => {
      const warning = { code: 'UNAVAILABLE', message: 'source down', ...f };
      const r = await expectSame({ args: ['work'], reply: value('sk-st', { stale: true, warning }), handover: false });
      expect(r.native).toMatchObject({ code: 0, stdout: 'sk-st\n' });
      expect(r.native.stderr).toBe(`${SHIM_TEXT.prefix}${SHIM_TEXT.staleWarning}${oneLine(renderError(warning))}\n`);
    });

    // A JSON reply to a framed request comes from a daemon that did not read it (one from before
    // frames refuses the field), so it was not served: the Node shim asks again and reads JSON.
    const json: Array<[string, string]> = [
      [
        'a refusal from a daemon before frames',
        reply({ ok: false, error: { code: 'BAD_REQUEST', message: 'unknown field "framed"' } }),
      ],
      ['a stopping daemon', reply({ ok: false, error: { code: 'SHUTTING_DOWN', message: 'stopping' } })],
      ['a value', '{"ok":true,"value":"sk-json"}'],
      ['ok without a value', reply({ ok: true, profile: 'work' })],
      ['a value that is not a string', reply({ ok: true, value: 42 })],
      [
        'stale, with a warning that is not an object',
        reply({ ok: true, value: 'sk-st', stale: true, warning: 'down' }),
      ],
      ['an error without a message', reply({ ok: false, error: { code: 'TIMEOUT' } })],
      ['JSON that is not valid', '{"ok":true,"value":"x",}\n'],
    ];
    it.each(json)('JSON: %s', async (_what, r) => {
      await expectSame({ args: ['work'], reply: r, handover: false, reasks: true });
    });

    // Neither a frame nor JSON: both fail with INTERNAL and one line, never printing the reply
    // (the Node shim says "not JSON", the native one "not a valid frame").
    const garbage: Array<[string, Buffer | string]> = [
      ['not JSON', 'sk-plain\n'],
      ['a JSON array', '[{"ok":true,"value":"x"}]\n'],
      ['only whitespace', '   \n'],
      ['too long', Buffer.alloc(MAX_REPLY_BYTES + 10, 0x61)],
    ];
    it.each(garbage)('garbage: %s', async (_what, r) => {
      const { node, native: nat } = await runBoth({ args: ['work'], reply: r, handover: false });
      for (const o of [node, nat]) {
        expect(o).toMatchObject({ code: ERROR_CODES.INTERNAL, stdout: '', handedOver: false });
        expect(o.stderr).toMatch(/^keybroker: [^\n]+\n$/);
      }
    });

    it('a hang-up without a reply, autostart off', async () => {
      const r = await expectSame({ args: ['work'], reply: null, handover: false });
      expect(r.node.code).toBe(ERROR_CODES.DAEMON_UNREACHABLE);
    });

    it('a daemon’s TIMEOUT worded as a client’s own is the daemon’s: printed as it is', async () => {
      // Only the shim's own wait running out says "no answer within …": no text is taken for it.
      const message = 'no reply from the keybroker daemon on /x within 5 ms';
      const r = await expectSame({
        args: ['work'],
        reply: { ok: false, error: { code: 'TIMEOUT', message } },
        handover: false,
      });
      expect(r.native.code).toBe(ERROR_CODES.TIMEOUT);
      expect(r.native.stderr).toBe(`keybroker: ${message}\n`);
    });

    it.each(Object.entries(ERROR_CODES))('error %s: its exit status', async (code, status) => {
      const r = await expectSame({
        args: ['work'],
        reply: error({ code, message: `because ${code}` }),
        handover: false,
        // A refusal was not served: the Node shim asks again, and pings to see which daemon refused.
        reasks: code === 'BAD_REQUEST',
      });
      expect(r.native.code).toBe(status);
      // (DAEMON_UNREACHABLE also says that autostart is off.)
      expect(r.native.stderr.startsWith(`keybroker: because ${code}`)).toBe(true);
    });
  });

  describe('a frame it cannot read: INTERNAL, one line, nothing printed, nothing asked again', () => {
    const field = (name: string, v: string | Buffer): Buffer[] => {
      const bytes = Buffer.isBuffer(v) ? v : Buffer.from(v);
      return [Buffer.from(`${name} ${bytes.length}\n`), bytes, Buffer.from('\n')];
    };
    /** A frame of these fields; `length`: what its header says, when not their length. */
    const frame = (fields: Array<[string, string | Buffer]>, length?: string): Buffer => {
      const body = Buffer.concat(fields.flatMap(([n, v]) => field(n, v)));
      return Buffer.concat([Buffer.from(`KB1 ${length ?? body.length}\n`), body]);
    };
    const err: Array<[string, string]> = [
      ['error.code', 'SOURCE_ERROR'],
      ['error.status', '5'],
      ['error.message', 'm'],
    ];
    const cases: Array<[string, Buffer]> = [
      ['cut short', frame([['value', 'sk-cut']], '40')],
      ['a header cut short', Buffer.from('KB1 1')],
      ['a header with a leading zero', frame([['value', 'sk-0']], '012')],
      ['a header that is not a number', Buffer.from('KB1 x\nvalue 1\nk\n')],
      ['a header over the reply limit', Buffer.from(`KB1 ${MAX_REPLY_BYTES}\nvalue 1\nk\n`)],
      ['a field over its frame', Buffer.from('KB1 10\nvalue 9\nsk-over\n')],
      ['a field without its newline', Buffer.from('KB1 10\nvalue 2\nskX')],
      [
        'a field twice',
        frame([
          ['value', 'a'],
          ['value', 'b'],
        ]),
      ],
      ['a value and an error', frame([['value', 'sk-both'], ...err])],
      [
        'neither a value nor an error',
        frame([
          ['daemon.pid', '1'],
          ['daemon.version', '1.0'],
        ]),
      ],
      ['an error without a status', frame(err.filter(([n]) => n !== 'error.status'))],
      ...['0', '256', 'x', '05', ''].map((s): [string, Buffer] => [
        `an exit status of "${s}"`,
        frame(err.map(([n, v]) => [n, n === 'error.status' ? s : v])),
      ]),
      [
        'a pid of 0',
        frame([
          ['value', 'sk-p'],
          ['daemon.pid', '0'],
          ['daemon.version', '1.0'],
        ]),
      ],
      [
        'a pid of 2^31',
        frame([
          ['value', 'sk-p'],
          ['daemon.pid', '2147483648'],
          ['daemon.version', '1.0'],
        ]),
      ],
      [
        'a version that is not a word',
        frame([
          ['value', 'sk-v'],
          ['daemon.pid', '9'],
          ['daemon.version', '1.0 x'],
        ]),
      ],
      [
        'an identity without its version',
        frame([
          ['value', 'sk-v'],
          ['daemon.pid', '9'],
        ]),
      ],
      [
        'a warning fix without its message',
        frame([
          ['value', 'sk-w'],
          ['warning.fix', 'f'],
        ]),
      ],
      ['a message that is not UTF-8', frame([...err.slice(0, 2), ['error.message', Buffer.from([0x61, 0xff])]])],
      [
        'a field name over 32 bytes',
        frame([
          ['value', 'sk-n'],
          ['x'.repeat(33), ''],
        ]),
      ],
    ];
    it.each(cases)('%s', async (_what, bytes) => {
      const dir = path.join(root, `c${caseNo++}`);
      fs.mkdirSync(dir, { mode: 0o700 });
      const env = baseEnv(dir, { KEYBROKER_NODE: nodeWrapper, KB_TEST_HANDOVER_LOG: path.join(dir, 'handover.log') });
      const server = await recordingServer(env.KEYBROKER_SOCKET!, bytes);
      try {
        const r = await run(NATIVE_SHIM, ['work'], { env, cwd: dir });
        expect(r).toMatchObject({ code: ERROR_CODES.INTERNAL, stdout: '' });
        expect(r.stderr).toMatch(/^keybroker: [^\n]+\n$/);
        expect(server.requests).toHaveLength(1);
        expect(fs.existsSync(path.join(dir, 'handover.log'))).toBe(false);
      } finally {
        await server.close();
      }
    });

    it('unknown fields are skipped, for later versions', async () => {
      const r = await runBoth({
        args: ['work'],
        reply: (line) =>
          asksForFrame(line)
            ? frame([
                ['later.field', 'x'],
                ['value', 'sk-1'],
                ['later', ''],
              ])
            : OK_REPLY,
        handover: false,
      });
      expect(r.native).toMatchObject({ code: 0, stdout: 'sk-1\n', stderr: '', handedOver: false });
    });
  });

  describe('another build of the daemon (an upgrade with the old daemon running)', () => {
    const ok = (daemon: unknown): Record<string, unknown> => ({
      ok: true,
      profile: 'work',
      value: 'sk-1',
      stale: false,
      daemon,
    });
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
          ok({ pid: old.pid, version: '0.0.1', startedBy: 'autostart' }),
        );
        try {
          const r = await run('/bin/sh', ['-c', `${shellQuote(shim)} work`], { env });
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

    // The refusal goes to the native shim as a frame (it asked for one): nothing was served, so it
    // hands over, and the Node shim asks again and pings to see which daemon refused.
    const pong = (fields: object): Record<string, unknown> => ({ ok: true, pong: true, ...fields });
    const refusal = { ok: false, error: { code: 'BAD_REQUEST', message: 'unknown field "x"' } };
    const refusals: Array<[string, (line: string) => Reply]> = [
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
        (line) => (line.includes('"ping"') ? { ok: true, pid: 4242, version: '0.0.1' } : refusal),
      ],
    ];
    it.each(refusals)('%s', async (what, answer) => {
      const r = await expectSame({ args: ['work'], reply: answer, handover: false, reasks: true });
      expect(r.native.code).toBe(ERROR_CODES.BAD_REQUEST);
      expect(r.native.requests).toHaveLength(3);
      expect(r.native.requests[2]).toBe('{"v":1,"op":"ping"}');
      expect(r.native.stderr.includes('the running daemon (pid')).toBe(what.includes('named'));
    });
  });

  // Inside Claude Code's sandbox: the kernel refuses the Unix socket (a seccomp filter, as the
  // sandbox's own: test/helpers/deny-unix-sockets.c), or the environment carries its marker. Both
  // shims say SANDBOXED in the same words; neither starts a daemon there.
  describe('inside a sandbox', () => {
    let wrapper: string;
    beforeAll(async () => {
      if (process.platform === 'linux') wrapper = await buildDenyUnixSockets(root);
    }, 60_000);
    const marker = { [SANDBOX.env]: SANDBOX.envValue };

    it.skipIf(process.platform !== 'linux')('connect refused (EPERM): answered by the native shim itself', async () => {
      const r = await expectSame({ args: ['work'], prefix: `"${wrapper}" `, handover: false });
      expect(r.native.code).toBe(ERROR_CODES.SANDBOXED);
      expect(r.native.requests).toEqual([]);
    });

    it('the marker, and no daemon there', async () => {
      const r = await expectSame({ args: ['work'], socket: 'elsewhere/kb.sock', env: marker, handover: false });
      expect(r.native.code).toBe(ERROR_CODES.SANDBOXED);
    });

    it('the marker, and a daemon that hangs up after the request: no daemon started, said as it is', async () => {
      const r = await expectSame({
        args: ['work'],
        reply: null,
        env: { ...marker, KEYBROKER_NO_AUTOSTART: '0' },
        handover: false,
      });
      expect(r.native.code).toBe(ERROR_CODES.DAEMON_UNREACHABLE);
    });

    it('the marker, and a daemon that answers: the key', async () => {
      const r = await expectSame({ args: ['work'], env: marker, handover: false });
      expect(r.native).toMatchObject({ code: 0, stdout: 'sk-1\n' });
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
        const server = await recordingServer(socketPath, OK_REPLY);
        try {
          const connectTo = prepare(dir, socketPath) ?? socketPath;
          const r = await run('/bin/sh', ['-c', `${shellQuote(shim)} --socket ${connectTo} work`], { env });
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
