// Asking the daemon, starting one when none answers, and stopping one (to replace it, or for
// good): shared by the shim (apiKeyHelper), `keybroker run`, `keybroker restart` and
// `keybroker stop`. Built-ins only: the shim's start-up time depends on it.
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { BUILD_ID, daemonIdentity, describeBuild, isOtherBuild, otherBuild, VERSION } from './build-info.js';
import { sendRequest } from './client.js';
import { lastDaemonFailure } from './daemon-log.js';
import { DAEMON_NODE_FLAGS } from './daemon-node-flags.js';
import { errorReply, type Reply, type Request, type WireError } from '../protocol/messages.js';
import { inSandbox } from './sandbox.js';
import { ancestorsProblem, privateDirProblem } from './socket-check.js';

export const AUTOSTART_DEADLINE_MS = 8_000;
/** How long a daemon asked to stop (SIGTERM) gets to finish replies in flight and go. */
export const STOP_DEADLINE_MS = 5_000;
/** After this long, a caller waiting for a daemon to stop is told (a fetch in flight can keep one a while). */
const STOP_NOTICE_MS = 1_000;

export interface AutostartOptions {
  /** The CLI entry point (dist/src/cli/main.js) to run `daemon` with. */
  cli: string;
  env?: NodeJS.ProcessEnv;
  /**
   * Leave the daemon no parent but init: the caller is about to exec another program, which
   * would otherwise inherit the daemon as an unexpected child (a shell's bare `wait` would
   * wait for it forever). Costs the early "daemon exited" report: the shell in between is gone.
   */
  orphan?: boolean;
}

export interface RequestOptions extends AutostartOptions {
  /** Give up on one exchange after this long. */
  timeoutMs: number;
  /** The error for no reply within timeoutMs (see SendOptions.noReply). */
  noReply?: WireError;
  /** When the caller started: autostart gives up AUTOSTART_DEADLINE_MS after it. */
  startedAt: number;
}

const ME = { version: VERSION, build: BUILD_ID };

/** KEYBROKER_NO_AUTOSTART=1 turns autostart off. */
export const NO_AUTOSTART_ENV = 'KEYBROKER_NO_AUTOSTART';

/** Nothing answered and autostart is off: the error, after why nothing answered. */
export const autostartOffError = (unreachable: string): WireError => ({
  code: 'DAEMON_UNREACHABLE',
  message: `${unreachable}; autostart is off (${NO_AUTOSTART_ENV}=1)`,
  transient: true,
  fix: 'install the service: keybroker service install, or run keybroker daemon in a terminal of its own',
});

/**
 * How a daemon's command line looks (the `daemon` command, an entry point ending in one of these),
 * checked before signalling a pid a reply named. As data: the native shim's copy is generated.
 */
export const DAEMON_ARGV = { command: 'daemon', entrySuffixes: ['main.js', 'keybroker'] } as const;

/**
 * Send a request; when no daemon answers, start one (unless KEYBROKER_NO_AUTOSTART=1) and send
 * it again. When the daemon refuses the request and is another build (an old daemon after an
 * upgrade, which does not know a field), one that autostart started is replaced and asked again;
 * any other is named with the command that restarts it. A failure comes back as an error reply
 * whose message says what to do.
 */
export async function requestWithAutostart(
  socketPath: string,
  request: Request,
  options: RequestOptions,
): Promise<Reply> {
  const env = options.env ?? process.env;
  const deadline = options.startedAt + AUTOSTART_DEADLINE_MS;
  const ask = (): Promise<Reply> =>
    sendRequest(socketPath, request, {
      timeoutMs: options.timeoutMs,
      ...(options.noReply && { noReply: options.noReply }),
    });
  let reply = await ask();
  if (!reply.ok && reply.error.code === 'DAEMON_UNREACHABLE') {
    // (A refused connect in a sandbox is SANDBOXED already.) A daemon that went away mid-request,
    // seen from inside a sandbox, is not replaced from there: a daemon started in the sandbox
    // would hold its keys where the sandbox's commands can reach them.
    if (inSandbox(env)) return reply;
    if (env[NO_AUTOSTART_ENV] === '1') return { v: 1, ok: false, error: autostartOffError(reply.error.message) };
    const failed = await start(socketPath, deadline, options, reply.error.message);
    if (failed) return failed;
    reply = await ask();
  }
  if (!reply.ok && reply.error.code === 'BAD_REQUEST') {
    const old = await otherBuildDaemon(socketPath);
    if (old?.startedBy === 'autostart' && !(await stopDaemon(socketPath, old.pid))) {
      const failed = await start(socketPath, deadline, options, `replaced keybroker daemon ${describeBuild(old)}`);
      if (failed) return failed;
      reply = await ask();
    } else if (old) {
      const { message, fix } = otherBuild(ME, old, process.getuid?.());
      return errorReply('BAD_REQUEST', `${message} (it refused this request: ${reply.error.message})`, { fix });
    }
  }
  return reply;
}

/** Autostart, as an error reply when it fails (undefined: a daemon answers now). */
async function start(
  socketPath: string,
  deadline: number,
  options: AutostartOptions,
  unreachable: string,
): Promise<Reply | undefined> {
  let why: string | undefined;
  try {
    why = await autostart(socketPath, deadline, options);
  } catch (err) {
    if (err instanceof UnsafeAutostart) return errorReply('UNSAFE_PATH', err.message, { fix: err.fix });
    throw err;
  }
  return why
    ? errorReply('DAEMON_UNREACHABLE', `${unreachable} and starting one failed: ${why}`, { transient: true })
    : undefined;
}

/** The daemon on `socketPath`, when it is another build than this client. */
async function otherBuildDaemon(socketPath: string): Promise<ReturnType<typeof daemonIdentity>> {
  const ping = await sendRequest(socketPath, { v: 1, op: 'ping' }, { timeoutMs: 2_000 });
  if (!ping.ok || !('pong' in ping)) return undefined;
  const daemon = daemonIdentity(ping);
  return daemon && isOtherBuild(ME, daemon) ? daemon : undefined;
}

/**
 * Autostart refused to create files in an unsafe place (a socket directory others can write, a
 * log that is a symlink): the client reports it as UNSAFE_PATH with this message and fix.
 */
export class UnsafeAutostart extends Error {
  constructor(
    message: string,
    readonly fix: string,
  ) {
    super(message);
  }
}

// Files autostart creates in the socket directory are opened without following a symlink (a link
// planted as daemon.log would have the daemon's output appended to, say, ~/.bashrc) and without
// blocking on a FIFO; O_NOFOLLOW and O_NONBLOCK are 0 where the platform lacks them.
const { O_WRONLY, O_CREAT, O_EXCL, O_APPEND } = fs.constants;
const O_NOFOLLOW = fs.constants.O_NOFOLLOW ?? 0;
const O_NONBLOCK = fs.constants.O_NONBLOCK ?? 0;

function sleep(ms: number): Promise<void> {
  return new Promise((r) => setTimeout(r, ms));
}

async function ping(socketPath: string, timeoutMs = 1000): Promise<boolean> {
  const reply = await sendRequest(socketPath, { v: 1, op: 'ping' }, { timeoutMs });
  return reply.ok;
}

/** Take the autostart lock: an exclusively created file; one older than 10 s is a leftover. */
function tryLock(lock: string): boolean {
  for (let attempt = 0; attempt < 2; attempt++) {
    try {
      fs.closeSync(fs.openSync(lock, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW, 0o600));
      return true;
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'EEXIST') return false;
      try {
        if (Date.now() - fs.lstatSync(lock).mtimeMs < 10_000) return false;
        fs.rmSync(lock, { force: true });
      } catch {
        return false;
      }
    }
  }
  return false;
}

/**
 * Start a daemon and wait until it answers; undefined on success, else why not (one line: the
 * daemon's own reason and fix when it stopped, from its log). Throws UnsafeAutostart for an
 * unsafe socket directory or log. Race-free across clients: one takes the lock, re-checks,
 * spawns; the others wait for the daemon to answer.
 */
export async function autostart(
  socketPath: string,
  deadline: number,
  options: AutostartOptions,
): Promise<string | undefined> {
  const dir = path.dirname(socketPath);
  try {
    fs.mkdirSync(dir, { recursive: true, mode: 0o700 });
  } catch {
    return `cannot create ${dir}`;
  }
  // Verified after creating it (it may have existed, or been swapped in between): everything below
  // creates files in it.
  const problem = privateDirProblem(dir, fs.lstatSync(dir)) ?? ancestorsProblem(dir);
  if (problem) throw new UnsafeAutostart(`not starting a daemon: ${problem.what}`, problem.fix);
  const lock = path.join(dir, 'autostart.lock');
  const logFile = path.join(dir, 'daemon.log');
  if (!tryLock(lock)) return waitForDaemon(socketPath, deadline, logFile, undefined);
  try {
    if (await ping(socketPath)) return undefined;
    const child = await spawnDaemon(socketPath, logFile, options);
    return await waitForDaemon(socketPath, deadline, logFile, child);
  } finally {
    fs.rmSync(lock, { force: true });
  }
}

interface ChildState {
  /** Not known when the daemon was orphaned: the shell in between is gone. */
  exited: boolean;
  code: number | null;
  /** Where this daemon's lines start in the log: an earlier daemon's reason is not this one's. */
  logOffset: number;
}

async function spawnDaemon(
  socketPath: string,
  logFile: string,
  options: AutostartOptions,
): Promise<ChildState | undefined> {
  const { spawn } = await import('node:child_process');
  try {
    // Keep one previous log; a daemon's log should not grow without bound across restarts.
    if (fs.lstatSync(logFile).size > 1024 * 1024) fs.renameSync(logFile, `${logFile}.1`);
  } catch {
    // no log yet
  }
  const out = openLog(logFile);
  const state: ChildState = { exited: false, code: null, logOffset: fs.fstatSync(out).size };
  // --autostarted: a client of a newer build may replace this daemon (see requestWithAutostart).
  const daemonArgv = [
    process.execPath,
    ...DAEMON_NODE_FLAGS,
    options.cli,
    'daemon',
    '--autostarted',
    '--socket',
    socketPath,
  ];
  // `sh -c '"$@" &'` forks the daemon and exits at once, so the daemon is re-parented to init.
  const [file, ...args] = options.orphan ? ['/bin/sh', '-c', '"$@" &', 'sh', ...daemonArgv] : daemonArgv;
  const child = spawn(file!, args, {
    detached: true,
    stdio: ['ignore', 'ignore', out],
    cwd: os.homedir(),
    env: daemonEnv(options.env ?? process.env),
  });
  fs.closeSync(out);
  child.on('exit', (code) => Object.assign(state, { exited: true, code }));
  child.on('error', () => Object.assign(state, { exited: true, code: null }));
  child.unref();
  return options.orphan ? undefined : state;
}

function openLog(logFile: string): number {
  let fd: number;
  try {
    fd = fs.openSync(logFile, O_WRONLY | O_CREAT | O_APPEND | O_NOFOLLOW | O_NONBLOCK, 0o600);
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    throw new UnsafeAutostart(
      `not starting a daemon: cannot open its log ${logFile} (${code === 'ELOOP' ? 'it is a symbolic link' : (code ?? 'error')})`,
      `run: rm ${logFile}`,
    );
  }
  const st = fs.fstatSync(fd);
  const uid = process.geteuid?.();
  if (!st.isFile() || (uid !== undefined && st.uid !== uid)) {
    fs.closeSync(fd);
    throw new UnsafeAutostart(
      `not starting a daemon: its log ${logFile} is not a regular file of yours`,
      `run: rm ${logFile}`,
    );
  }
  return fd;
}

/**
 * The daemon outlives the shell that autostarted it and keeps its environment: give it a defined
 * one. NODE_OPTIONS could open an inspector or preload code; Claude Code's per-session variables
 * describe one session (and would make every later exec: source look like an agent tool run).
 */
function daemonEnv(env: NodeJS.ProcessEnv): NodeJS.ProcessEnv {
  const clean: NodeJS.ProcessEnv = {};
  for (const [name, value] of Object.entries(env)) {
    if (
      name === 'NODE_OPTIONS' ||
      name === 'CLAUDECODE' ||
      name === 'AI_AGENT' ||
      name === 'CLAUDE_PID' ||
      name.startsWith('CLAUDE_CODE_')
    )
      continue;
    clean[name] = value;
  }
  return clean;
}

async function waitForDaemon(
  socketPath: string,
  deadline: number,
  logFile: string,
  child: ChildState | undefined,
): Promise<string | undefined> {
  let delay = 20;
  while (Date.now() < deadline) {
    if (await ping(socketPath, Math.max(100, deadline - Date.now()))) return undefined;
    if (child?.exited) {
      // The daemon's own last words say what is wrong and how to fix it; the log is the fallback.
      const reason = lastDaemonFailure(logFile, child.logOffset);
      return reason
        ? `the daemon it started stopped: ${reason}`
        : `the daemon it started exited (status ${child.code}); see ${logFile}`;
    }
    await sleep(delay);
    delay = Math.min(delay * 2, 200);
  }
  return `no daemon answered within ${Math.round(AUTOSTART_DEADLINE_MS / 1000)} s; see ${logFile}`;
}

/** Is `pid` a keybroker daemon? On Linux, by its command line; elsewhere the socket's word is taken. */
export function looksLikeDaemon(pid: number): boolean {
  if (process.platform !== 'linux') return true;
  try {
    const argv = fs.readFileSync(`/proc/${pid}/cmdline`, 'latin1').split('\0');
    return argv.includes(DAEMON_ARGV.command) && argv.some((a) => DAEMON_ARGV.entrySuffixes.some((s) => a.endsWith(s)));
  } catch {
    return false;
  }
}

/**
 * Why a daemon was not stopped: it is not a keybroker daemon of this user's, kill failed, or it
 * was still there at the deadline.
 */
export type StopFailure =
  | { reason: 'not-ours'; why: string }
  | { reason: 'kill-failed'; errno: string }
  | { reason: 'timeout'; waitedMs: number };

/**
 * SIGTERM a keybroker daemon of this user's: it finishes the replies in flight, removes its socket
 * and exits. Undefined when it was signalled (or is gone already); else why it was not.
 */
export function askToStop(pid: number): Exclude<StopFailure, { reason: 'timeout' }> | undefined {
  if (!Number.isInteger(pid) || pid <= 1 || pid === process.pid)
    return { reason: 'not-ours', why: 'that is not a daemon pid' };
  if (process.platform === 'linux') {
    let owner: number;
    try {
      owner = fs.statSync(`/proc/${pid}`).uid;
    } catch {
      return undefined; // already gone: nothing to signal
    }
    if (owner !== process.geteuid?.()) return { reason: 'not-ours', why: `it belongs to uid ${owner}, not to you` };
  }
  if (!looksLikeDaemon(pid)) return { reason: 'not-ours', why: 'its command line is not keybroker daemon' };
  try {
    process.kill(pid, 'SIGTERM');
  } catch (err) {
    const errno = (err as NodeJS.ErrnoException).code;
    if (errno !== 'ESRCH') return { reason: 'kill-failed', errno: errno ?? 'error' };
  }
  return undefined;
}

export interface StopOptions {
  /** When to give up waiting (default: STOP_DEADLINE_MS after the signal). */
  deadline?: number;
  /**
   * What counts as stopped: `socket` (the default), nothing answers on the socket any more, which
   * is enough to start another daemon there; `exit`, the process has exited, which
   * `keybroker stop` promises (a daemon closes its socket before it has finished its replies).
   */
  until?: 'socket' | 'exit';
  /** Called once when the daemon is still there STOP_NOTICE_MS after the signal. */
  onWaiting?: () => void;
}

/**
 * Ask the daemon `pid` answering on `socketPath` to stop (askToStop) and wait until it has
 * (StopOptions.until). Undefined once it has; else why not.
 */
export async function stopDaemon(
  socketPath: string,
  pid: number,
  options: StopOptions = {},
): Promise<StopFailure | undefined> {
  const refused = askToStop(pid);
  if (refused) return refused;
  const signalledAt = Date.now();
  const deadline = options.deadline ?? signalledAt + STOP_DEADLINE_MS;
  const stopped = async (): Promise<boolean> =>
    options.until === 'exit' ? processGone(pid) : !(await ping(socketPath, 500));
  let noticed = false;
  while (!(await stopped())) {
    const waitedMs = Date.now() - signalledAt;
    if (Date.now() > deadline) return { reason: 'timeout', waitedMs };
    if (!noticed && waitedMs > STOP_NOTICE_MS) {
      noticed = true;
      options.onWaiting?.();
    }
    await sleep(50);
  }
  return undefined;
}

/** The process has exited (a zombie waiting for its parent counts: it serves nothing). */
function processGone(pid: number): boolean {
  try {
    process.kill(pid, 0);
  } catch (err) {
    return (err as NodeJS.ErrnoException).code === 'ESRCH';
  }
  if (process.platform !== 'linux') return false;
  try {
    // The state follows the command name's closing parenthesis.
    const stat = fs.readFileSync(`/proc/${pid}/stat`, 'latin1');
    return stat.slice(stat.lastIndexOf(')') + 2).startsWith('Z');
  } catch {
    return true;
  }
}
