// Real daemons and shims for process tests: the built CLI and shim from dist/, a private temp
// directory per daemon, and the shim run through `sh -c` the way Claude Code runs apiKeyHelper.
//
// The fixtures clean up after themselves (cleanup.ts): a directory privateTempDir or workspace()
// made is removed, and a daemon start() began is stopped, when the test that made it finishes, or,
// made in a beforeAll or at the top of a file, when the file's tests are done. A new test file
// needs one line for a daemon: `const d = sharedDaemon({ config })` for the file's tests, or
// `const d = await startDaemon({ config })` in a test.
import { spawn, type ChildProcess } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { sendRequest } from '../../src/client/client.js';
import { DAEMON_NODE_FLAGS } from '../../src/client/daemon-node-flags.js';
import { shellQuote } from '../../src/integration/helper-command.js';
import type { Reply, Request, StatusReply } from '../../src/protocol/messages.js';
import { beforeAll, expect } from 'vitest';
import { cleanUp, killWhenDone, privateTempDir } from './cleanup.js';

/** A path as one word of a `sh -c` command line: the checkout may lie on a path with spaces. */
export { shellQuote };
export { privateTempDir };

export const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..', '..');
export const CLI = path.join(ROOT, 'dist', 'src', 'cli', 'main.js');
/**
 * `keybroker daemon` with the Node options autostart and the units give it, after `node` (one
 * started without them execs itself with them on Node 22.15+: a second start-up for nothing).
 */
export const DAEMON_ARGV: readonly string[] = [...DAEMON_NODE_FLAGS, CLI, 'daemon'];
export const SHIM = path.join(ROOT, 'dist', 'src', 'shim', 'keybroker-shim.cjs');
/** The C fast path, built by `npm run build` only where a C compiler exists. */
export const NATIVE_SHIM = path.join(ROOT, 'dist', 'native', 'keybroker-shim');

export interface ShimUnderTest {
  name: 'node' | 'native';
  path: string;
  /** Why this shim's tests are skipped here, if they are. */
  skip: string | undefined;
}

/**
 * Both shims, for `describe.each(SHIMS)`: every shim test runs against each, since the native
 * shim must behave as the Node shim byte for byte.
 */
export const SHIMS: readonly ShimUnderTest[] = [
  { name: 'node', path: SHIM, skip: undefined },
  {
    name: 'native',
    path: NATIVE_SHIM,
    skip: fs.existsSync(NATIVE_SHIM)
      ? undefined
      : `${NATIVE_SHIM} was not built (no C compiler when npm run build ran)`,
  },
];
for (const s of SHIMS) if (s.skip) console.log(`skipping the ${s.name} shim's tests: ${s.skip}`);

/** What `setup claude` writes for apiKeyHelper: the native fast path where this machine built one, else the Node shim. */
export const SETUP_SHIM = SHIMS.find((s) => s.name === 'native')!.skip === undefined ? NATIVE_SHIM : SHIM;

/** Every file under `root` whose bytes hold `needle` (a key must be in none). */
export function filesHolding(root: string, needle: string): string[] {
  const hits: string[] = [];
  for (const entry of fs.readdirSync(root, { withFileTypes: true, recursive: true })) {
    const file = path.join(entry.parentPath, entry.name);
    if (entry.isFile() && fs.readFileSync(file).includes(needle)) hits.push(file);
  }
  return hits;
}

if (!fs.existsSync(CLI) || !fs.existsSync(SHIM)) {
  throw new Error('dist/ is missing: run `npm run build` (npm test does it for you)');
}

export interface RunResult {
  code: number | null;
  stdout: string;
  stderr: string;
  ms: number;
}

/** Run a command to completion, collecting output. */
export function run(
  command: string,
  args: string[],
  options: {
    env?: NodeJS.ProcessEnv;
    cwd?: string;
    timeoutMs?: number;
    input?: string;
    /** Run as another user (the tests run as root): see other-user.ts. */
    user?: { uid: number; gid: number };
  } = {},
): Promise<RunResult> {
  return new Promise((resolve, reject) => {
    const started = performance.now();
    const child = spawn(command, args, {
      env: options.env ?? process.env,
      cwd: options.cwd,
      stdio: ['pipe', 'pipe', 'pipe'],
      ...(options.user && { uid: options.user.uid, gid: options.user.gid }),
    });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (d: Buffer) => (stdout += d.toString()));
    child.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
    const timer = setTimeout(() => child.kill('SIGKILL'), options.timeoutMs ?? 20_000);
    child.on('error', reject);
    child.on('close', (code) => {
      clearTimeout(timer);
      resolve({ code, stdout, stderr, ms: performance.now() - started });
    });
    if (options.input !== undefined) child.stdin.end(options.input);
    else child.stdin.end();
  });
}

/** A daemon's private directory, environment and config, and the clients that talk to it. */
export interface DaemonWorkspace {
  dir: string;
  socket: string;
  configPath: string;
  env: NodeJS.ProcessEnv;
  request(req: Request, timeoutMs?: number): Promise<Reply>;
  /**
   * Run the shim the way Claude Code does: `sh -c "<shim> <args>"`, with the shim `setup claude`
   * writes (SETUP_SHIM: the native fast path where it was built) unless given. A test about the
   * shim itself runs each (SHIMS); a test about the daemon uses the one users run, and saves a
   * Node start-up (~0.15 s of CPU) per call.
   */
  shim(args?: string, env?: NodeJS.ProcessEnv, shimPath?: string): Promise<RunResult>;
  /** Run the CLI; `input` is its stdin (a pipe, closed after it), else an empty pipe. */
  cli(args: string[], env?: NodeJS.ProcessEnv, input?: string): Promise<RunResult>;
  /** Write the config, private (0600) as the daemon requires. */
  writeConfig(yaml: string): void;
  /** Start `keybroker daemon` here; it is stopped when the test (or file) that started it is done. */
  start(options?: DaemonOptions): Promise<DaemonHandle>;
}

export interface WorkspaceOptions {
  /** The config to write; without one, none is written (for what happens with no config). */
  config?: string;
  /** Variables over baseEnv's; they win over its paths too (HOME, KEYBROKER_SOCKET, …). */
  env?: NodeJS.ProcessEnv;
  /** Use this directory (its maker removes it) instead of a fresh private one. */
  dir?: string;
  /** The fresh directory's name under /tmp: prefix and six random characters. */
  prefix?: string;
  /**
   * Let the shim and CLI start a daemon here (KEYBROKER_NO_AUTOSTART empty), and stop one that is
   * still running when the test (or file) is done.
   */
  autostart?: boolean;
}

/** How `start()` runs `keybroker daemon`. */
export interface DaemonOptions {
  logLevel?: string;
  /** Wait for the socket to answer (default true). */
  wait?: boolean;
  /** Run this keybroker CLI instead of the checkout's (another build, for upgrade tests). */
  cli?: string;
  /** More arguments for `keybroker daemon` (e.g. --telemetry-env). */
  args?: string[];
  /**
   * Node options on the daemon's command line. Default: DAEMON_NODE_FLAGS, as autostart and the
   * service units start it. `[]` is a daemon started by hand, which on Node 22.15+/24 execs itself
   * with them (test/daemon/node-flags.test.ts) — a second Node start-up, ~40% more CPU per daemon.
   */
  nodeFlags?: readonly string[];
}

/**
 * A place for a daemon: a fresh private directory (or `dir`), baseEnv's environment for it, and
 * the config written there.
 */
export function workspace(options: WorkspaceOptions = {}): DaemonWorkspace {
  const dir = options.dir ?? privateTempDir(options.prefix);
  const env = baseEnv(dir, { ...(options.autostart && { KEYBROKER_NO_AUTOSTART: '' }), ...options.env });
  const socket = env.KEYBROKER_SOCKET!;
  const configPath = env.KEYBROKER_CONFIG!;
  const writeConfig = (yaml: string): void => {
    fs.writeFileSync(configPath, yaml, { mode: 0o600 });
    fs.chmodSync(configPath, 0o600);
  };
  if (options.config !== undefined) writeConfig(options.config);
  if (options.autostart) cleanUp(() => stopAutostarted(env));
  const ws: DaemonWorkspace = {
    dir,
    socket,
    configPath,
    env,
    request: (req, timeoutMs = 10_000) => sendRequest(socket, req, { timeoutMs }),
    shim: (args = '', extra = {}, shimPath = SETUP_SHIM) =>
      run('/bin/sh', ['-c', `${shellQuote(shimPath)} ${args}`], { env: { ...env, ...extra } }),
    cli: (args, extra = {}, input) =>
      run(process.execPath, [CLI, ...args], { env: { ...env, ...extra }, ...(input !== undefined && { input }) }),
    writeConfig,
    start: (daemonOptions = {}) => spawnDaemon(ws, daemonOptions),
  };
  return ws;
}

/** The workspace in `dir` with `config` written: workspace() as older tests call it. */
export function daemonWorkspace(dir: string, config: string, extraEnv?: NodeJS.ProcessEnv): DaemonWorkspace {
  return workspace({ dir, config, env: extraEnv });
}

export interface DaemonHandle extends Omit<DaemonWorkspace, 'start'> {
  proc: ChildProcess;
  /** Everything the daemon wrote to stderr so far (its JSON log). */
  log(): string;
  signal(sig: NodeJS.Signals): void;
  /** SIGTERM and wait for exit; resolves with the exit code. */
  stop(): Promise<number | null>;
}

export interface StartOptions extends WorkspaceOptions, DaemonOptions {
  config: string;
}

export function baseEnv(dir: string, extra: NodeJS.ProcessEnv = {}): NodeJS.ProcessEnv {
  const env: NodeJS.ProcessEnv = { ...process.env, ...extra };
  // Nothing from the developer's own session may leak into a test daemon or shim.
  for (const key of Object.keys(env)) {
    // (The session bus too: a developer's Secret Service would change what a first run writes.)
    if (
      key.startsWith('CLAUDE_CODE_') ||
      key === 'AI_AGENT' ||
      key.startsWith('CODEX_') ||
      key.startsWith('KEYBROKER_') ||
      key === 'DBUS_SESSION_BUS_ADDRESS' ||
      // Colour is decided per test: a runner's FORCE_COLOR would colour every piped output.
      key === 'FORCE_COLOR' ||
      key === 'NO_COLOR' ||
      // (And a sandbox's marker: the tests that mean it set it themselves.)
      key === 'SANDBOX_RUNTIME'
    ) {
      if (!(key in extra)) delete env[key];
    }
  }
  env.HOME = extra.HOME ?? dir;
  env.XDG_RUNTIME_DIR = extra.XDG_RUNTIME_DIR ?? path.join(dir, 'run');
  env.XDG_CONFIG_HOME = extra.XDG_CONFIG_HOME ?? path.join(dir, 'config');
  env.XDG_STATE_HOME = extra.XDG_STATE_HOME ?? path.join(dir, 'state');
  env.KEYBROKER_SOCKET = extra.KEYBROKER_SOCKET ?? path.join(dir, 'sock', 'kb.sock');
  env.KEYBROKER_CONFIG = extra.KEYBROKER_CONFIG ?? path.join(dir, 'config.yaml');
  env.KEYBROKER_NO_AUTOSTART = extra.KEYBROKER_NO_AUTOSTART ?? '1';
  return env;
}

/**
 * This process's variables whose names start with `prefix`, each set to undefined: spread into a
 * daemon's `env` so that none of the developer's own (AWS_…) reaches it.
 */
export function unsetEnv(prefix: string): NodeJS.ProcessEnv {
  return Object.fromEntries(Object.keys(process.env).flatMap((k) => (k.startsWith(prefix) ? [[k, undefined]] : [])));
}

/**
 * Whether process `pid` runs: it exists and is not a zombie waiting to be reaped (a container's
 * pid 1 may never reap orphans). Where there is no /proc (macOS), whether it exists.
 */
export function isRunning(pid: number): boolean {
  try {
    const stat = fs.readFileSync(`/proc/${pid}/stat`, 'utf8');
    return stat.slice(stat.lastIndexOf(')') + 2)[0] !== 'Z';
  } catch {
    if (fs.existsSync('/proc/self')) return false;
    try {
      process.kill(pid, 0);
      return true;
    } catch {
      return false;
    }
  }
}

/**
 * The daemon's status, asked over its socket (the reply `keybroker status --json` prints); the
 * test fails if the daemon refuses it.
 */
export async function daemonStatus(h: Pick<DaemonWorkspace, 'request'>): Promise<StatusReply> {
  const reply = await h.request({ v: 1, op: 'status' });
  expect(reply).toMatchObject({ ok: true, profiles: expect.any(Array) });
  return reply as StatusReply;
}

/** The pid of the daemon answering in this environment (one a shim autostarted), if any. */
export async function daemonPid(env: NodeJS.ProcessEnv): Promise<number | undefined> {
  // Asked over the socket, as `keybroker status --json` would (it prints this reply), without a CLI start.
  const reply = await sendRequest(env.KEYBROKER_SOCKET!, { v: 1, op: 'status' }, { timeoutMs: 10_000 }).catch(
    () => undefined,
  );
  return reply?.ok ? (reply as StatusReply).daemon.pid : undefined;
}

/** Stop the daemon a shim autostarted in this environment, if one runs, and wait for its socket to go. */
export async function stopAutostarted(env: NodeJS.ProcessEnv): Promise<void> {
  const pid = await daemonPid(env);
  // (An in-process daemon answers with this process's pid.)
  if (pid === undefined || pid === process.pid) return;
  process.kill(pid, 'SIGTERM');
  await waitFor(() => !fs.existsSync(env.KEYBROKER_SOCKET!), 5_000, 'autostarted daemon to stop').catch(() => {});
}

export async function waitFor(
  check: () => Promise<boolean> | boolean,
  timeoutMs = 10_000,
  what = 'condition',
): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    if (await check()) return;
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 25));
  }
}

/**
 * A daemon started as systemd starts one (SYSTEMD_EXEC_PID is its own pid, so it says
 * startedBy: systemd), answering in `workspace`; stopped, if it still runs, when the test (or
 * file) is done.
 */
export async function startAsSystemd(workspace: DaemonWorkspace): Promise<ChildProcess> {
  const daemon = spawn('/bin/sh', ['-c', `SYSTEMD_EXEC_PID=$$ exec "${process.execPath}" "${CLI}" daemon`], {
    env: workspace.env,
    stdio: 'ignore',
  });
  killWhenDone(daemon);
  await waitFor(async () => (await workspace.request({ v: 1, op: 'ping' }, 500)).ok, 10_000, 'daemon');
  return daemon;
}

/** A daemon in a workspace of its own (or in `dir`), answering before this resolves unless `wait: false`. */
export function startDaemon(options: StartOptions): Promise<DaemonHandle> {
  return workspace(options).start(options);
}

/** An exec source that prints ./NAME.key of the daemon's directory and counts its runs in ./NAME.count. */
function countedSource(name: string): string {
  return `exec:echo x >> ./${name}.count; cat ./${name}.key`;
}

/** A countedSource's fetches so far, and the key it prints next. */
export interface CountedKey {
  /** How many times the source ran. */
  fetches(): number;
  /** Write the key the next fetch reads. */
  setKey(value: string): void;
}

function countedKey(dir: string, name: string): CountedKey {
  const file = (ext: string): string => path.join(dir, `${name}.${ext}`);
  return {
    fetches: () => fs.readFileSync(file('count'), 'utf8').split('\n').length - 1,
    setKey: (value) => fs.writeFileSync(file('key'), value),
  };
}

/** A daemon whose one profile, work, is a countedSource. */
export type CountingDaemon = DaemonHandle & CountedKey;

/** A daemon for tests of how often an agent's key command reaches the source. */
export async function startCountingDaemon(): Promise<CountingDaemon> {
  const d = await startDaemon({
    config: `profiles:\n  work:\n    source: ${countedSource('work')}\n    ttl: 1h\n`,
    logLevel: 'info',
  });
  return { ...d, ...countedKey(d.dir, 'work') };
}

/**
 * The daemon the tests of a file (or of a describe, where it is called) share: started by a
 * beforeAll registered here, stopped when the file's tests are done. Its handle is filled in by
 * that beforeAll, so use it in tests and later hooks. `options` may be a function, run then, for
 * a config that needs something made first (a fake server's address, files in `dir`).
 */
export function sharedDaemon(options: StartOptions | (() => StartOptions | Promise<StartOptions>)): DaemonHandle {
  const shared = {} as DaemonHandle;
  beforeAll(async () => {
    Object.assign(shared, await startDaemon(typeof options === 'function' ? await options() : options));
  });
  return shared;
}

/** One of rotatingProfiles' profiles: a test's own. */
export interface RotatingProfile extends CountedKey {
  name: string;
  /** The daemon's "its key was probably rejected" log lines about it since it was taken. */
  rejections(): number;
}

/**
 * One daemon for a file's tests of what the daemon remembers about a profile (fetches, suspected
 * rejections, forced fetches, consumers): `count` profiles, p0, p1, …, each a countedSource, and
 * take() in a beforeEach gives each test one no test has used, its key set to `key`. A daemon
 * start per test otherwise.
 */
export function rotatingProfiles(count: number): { daemon: DaemonHandle; take(key: string): RotatingProfile } {
  const names = Array.from({ length: count }, (_, i) => `p${i}`);
  const daemon = sharedDaemon({
    config: `profiles:\n${names.map((p) => `  ${p}:\n    source: ${countedSource(p)}\n    ttl: 1h\n`).join('')}`,
  });
  let unused = 0;
  const take = (key: string): RotatingProfile => {
    const name = names[unused++];
    // More tests than profiles: fail, rather than let two tests share one.
    if (name === undefined) throw new Error(`rotatingProfiles(${count}) has no profile left: ask for more`);
    const logFrom = daemon.log().length;
    const profile: RotatingProfile = {
      name,
      ...countedKey(daemon.dir, name),
      rejections: () =>
        daemon
          .log()
          .slice(logFrom)
          .split('\n')
          .filter((l) => l.includes(`"profile":"${name}"`) && l.includes('its key was probably rejected')).length,
    };
    profile.setKey(key);
    return profile;
  };
  return { daemon, take };
}

async function spawnDaemon(ws: DaemonWorkspace, options: DaemonOptions): Promise<DaemonHandle> {
  const { start: _start, ...place } = ws;
  const argv = [options.cli ?? CLI, 'daemon', '--log-level', options.logLevel ?? 'debug', ...(options.args ?? [])];
  const proc = spawn(process.execPath, [...(options.nodeFlags ?? DAEMON_NODE_FLAGS), ...argv], {
    env: ws.env,
    cwd: ws.dir,
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let stderr = '';
  proc.stderr!.on('data', (d: Buffer) => (stderr += d.toString()));
  proc.stdout!.on('data', (d: Buffer) => (stderr += d.toString()));
  const exited = new Promise<number | null>((resolve) => proc.on('exit', (code) => resolve(code)));
  let terminating = false;
  const handle: DaemonHandle = {
    ...place,
    proc,
    log: () => stderr,
    signal: (sig) => {
      if (sig === 'SIGTERM' || sig === 'SIGINT') terminating = true;
      proc.kill(sig);
    },
    stop: async () => {
      // A daemon already told to stop is left to finish: a second SIGTERM in the moment between
      // its removing its handlers and exiting would kill it with the default action (exit null).
      if (!terminating && proc.exitCode === null && proc.signalCode === null) proc.kill('SIGTERM');
      terminating = true;
      return exited;
    },
  };
  cleanUp(async () => {
    if (proc.exitCode !== null || proc.signalCode !== null) return;
    // A test may have left it stopped (SIGSTOP): it must run to hear SIGTERM.
    proc.kill('SIGCONT');
    const hung = setTimeout(() => proc.kill('SIGKILL'), 10_000);
    await handle.stop();
    clearTimeout(hung);
  });
  if (options.wait !== false) {
    let exitCode: number | null | undefined;
    void exited.then((c) => (exitCode = c));
    await waitFor(
      async () => {
        if (exitCode !== undefined) throw new Error(`daemon exited with ${exitCode}:\n${stderr}`);
        return (await handle.request({ v: 1, op: 'ping' }, 500)).ok;
      },
      10_000,
      'daemon to answer',
    );
  }
  return handle;
}
