#!/usr/bin/env node
// keybroker-shim: what Claude Code's apiKeyHelper points at. It asks the daemon for a profile's
// key over the private socket and prints it: exactly the value and a newline on stdout, exit 0.
// On failure: nothing on stdout, one line on stderr (Claude Code shows it to the user), and an
// exit status per cause. It never prompts and never reads stdin.
//
// Start-up time is the product here, so this file imports only Node built-ins and the protocol
// module (no commander, pino, yaml or zod), and writes with fs.writeSync rather than
// process.stdout (which would load the stream machinery). The build bundles it with the protocol
// module into one CommonJS file (dist/src/shim/keybroker-shim.cjs): Node 20 sets up its ES-module
// loader only for an ES-module entry point, which costs more than everything else the shim does.
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { sendRequest } from '../protocol/client.js';
import { exitCodeFor, ERROR_CODES, type ConsumerInfo, type GetRequest, type Reply } from '../protocol/messages.js';
import { resolveSocketPath } from '../protocol/socket-path.js';

const USAGE = `usage: keybroker-shim [--refresh] [--format FORMAT] [--socket PATH] [PROFILE]

Prints the key of PROFILE (default: "default") from the keybroker daemon, starting the
daemon if none is running (unless KEYBROKER_NO_AUTOSTART=1). For Claude Code:
  "apiKeyHelper": "${'/path/to/keybroker-shim'} work"   (or run: keybroker setup claude)

  --refresh      fetch from the source now instead of the cache
  --format F     raw (default): the value itself
                 aws-credentials: awsCredentialExport's JSON, for an aws-credentials:// profile
                 headers: otelHeadersHelper's JSON object (the value as a Bearer token, or a
                 JSON object value passed through)
  --socket PATH  the daemon's socket (default: $KEYBROKER_SOCKET, then
                 $XDG_RUNTIME_DIR/keybroker/keybroker.sock, then ~/.local/state/keybroker/)

Exit status: 0 ok, 3 daemon unreachable, 4 unknown profile, 5 source error, 6 timeout,
7 key rejected, 8 config invalid; see the README for the rest.`;

/** Long enough for the daemon to report its own fetch timeout (8 s by default) first. */
const REQUEST_TIMEOUT_MS = 9_500;
const AUTOSTART_DEADLINE_MS = 8_000;
const SHELLS = new Set(['sh', 'bash', 'dash', 'zsh', 'fish', 'ksh', 'mksh', 'pdksh', 'ash', 'busybox', 'tcsh', 'csh', 'nu', 'xonsh']);
const DEFAULT_HELPER_TTL_MS = 300_000;

const FORMATS = ['raw', 'aws-credentials', 'headers'] as const;
type Format = (typeof FORMATS)[number];

interface Args {
  profile: string;
  refresh: boolean;
  socket: string | undefined;
  format: Format;
}

function parseArgs(argv: string[]): Args | { help: true } | { error: string } {
  const args: Args = { profile: 'default', refresh: false, socket: undefined, format: 'raw' };
  let sawProfile = false;
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i]!;
    if (a === '-h' || a === '--help') return { help: true };
    if (a === '--refresh') args.refresh = true;
    else if (a === '--socket') {
      const v = argv[++i];
      if (!v) return { error: '--socket needs a path' };
      args.socket = v;
    } else if (a.startsWith('--socket=')) args.socket = a.slice('--socket='.length);
    else if (a === '--format' || a.startsWith('--format=')) {
      const v = a === '--format' ? argv[++i] : a.slice('--format='.length);
      if (!v || !(FORMATS as readonly string[]).includes(v)) return { error: `--format takes one of: ${FORMATS.join(', ')}` };
      args.format = v as Format;
    }
    else if (a.startsWith('-')) return { error: `unknown option ${a}` };
    else if (sawProfile) return { error: `one profile only (got "${args.profile}" and "${a}")` };
    else {
      args.profile = a;
      sawProfile = true;
    }
  }
  return args;
}

function fail(code: string, message: string): never {
  // One line: Claude Code shows it as "apiKeyHelper failed: exited N: <stderr>".
  fs.writeSync(2, `keybroker: ${message.replace(/\s*\n\s*/g, '; ')}\n`);
  process.exit(exitCodeFor(code));
}

// ---- the consumer: the nearest ancestor that is not a shell ----

interface ProcInfo {
  ppid: number;
  comm: string;
  start: string | undefined;
}

function procInfoLinux(pid: number): ProcInfo | undefined {
  try {
    const stat = fs.readFileSync(`/proc/${pid}/stat`, 'latin1');
    // "pid (comm) state ppid …": comm may hold spaces and parentheses, so cut at the last ')'.
    const open = stat.indexOf('(');
    const close = stat.lastIndexOf(')');
    const fields = stat.slice(close + 2).split(' ');
    return { comm: stat.slice(open + 1, close), ppid: Number(fields[1]), start: fields[19] };
  } catch {
    return undefined;
  }
}

function argvLinux(pid: number): string[] {
  try {
    return fs.readFileSync(`/proc/${pid}/cmdline`, 'latin1').slice(0, 4096).split('\0').slice(0, 2);
  } catch {
    return [];
  }
}

async function procTableDarwin(): Promise<Map<number, ProcInfo>> {
  const { spawnSync } = await import('node:child_process');
  const out = spawnSync('/bin/ps', ['-A', '-o', 'pid=,ppid=,comm='], { encoding: 'utf8', timeout: 2000 });
  const table = new Map<number, ProcInfo>();
  for (const line of (out.stdout ?? '').split('\n')) {
    const m = /^\s*(\d+)\s+(\d+)\s+(.*)$/.exec(line);
    if (m) table.set(Number(m[1]), { ppid: Number(m[2]), comm: path.basename(m[3]!.trim()), start: undefined });
  }
  return table;
}

async function findConsumer(): Promise<ConsumerInfo | undefined> {
  const linux = process.platform === 'linux';
  const table = linux ? undefined : process.platform === 'darwin' ? await procTableDarwin() : undefined;
  if (!linux && !table) return undefined;
  let pid = process.ppid;
  for (let depth = 0; depth < 8 && pid > 1; depth++) {
    const info = linux ? procInfoLinux(pid) : table!.get(pid);
    if (!info) return undefined;
    const name = info.comm.replace(/^-/, '');
    if (!SHELLS.has(name)) {
      const consumer: ConsumerInfo = { pid, name, claudeCode: isClaudeCode(name, () => (linux ? argvLinux(pid) : [])) };
      if (info.start) consumer.start = info.start;
      const ttl = Number(process.env.CLAUDE_CODE_API_KEY_HELPER_TTL_MS);
      consumer.helperTtlMs = Number.isInteger(ttl) && ttl > 0 ? ttl : DEFAULT_HELPER_TTL_MS;
      return consumer;
    }
    pid = info.ppid;
  }
  return undefined;
}

/**
 * Claude Code's environment reached us through the shell, and the consumer process is claude:
 * the native binary, or node running the npm package. A tool Claude Code runs inherits the same
 * environment but is another process.
 */
function isClaudeCode(name: string, argv: () => string[]): boolean {
  const env = process.env;
  const envSaysClaude = Boolean(env.CLAUDE_CODE_ENTRYPOINT) || (env.AI_AGENT ?? '').startsWith('claude-code');
  if (!envSaysClaude) return false;
  if (/^claude\b/i.test(name)) return true;
  return argv().some((arg) => /(^|\/)claude$/.test(arg) || arg.includes('@anthropic-ai/claude-code/'));
}

// ---- autostart ----

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
      fs.closeSync(fs.openSync(lock, 'wx', 0o600));
      return true;
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'EEXIST') return false;
      try {
        if (Date.now() - fs.statSync(lock).mtimeMs < 10_000) return false;
        fs.rmSync(lock, { force: true });
      } catch {
        return false;
      }
    }
  }
  return false;
}

/**
 * Start a daemon and wait until it answers. Race-free across shims: one takes the lock,
 * re-checks, spawns; the others wait for the daemon to answer.
 */
async function autostart(socketPath: string, deadline: number): Promise<string | undefined> {
  const dir = path.dirname(socketPath);
  try {
    fs.mkdirSync(dir, { recursive: true, mode: 0o700 });
  } catch {
    return `cannot create ${dir}`;
  }
  const lock = path.join(dir, 'autostart.lock');
  const logFile = path.join(dir, 'daemon.log');
  if (!tryLock(lock)) return waitForDaemon(socketPath, deadline, logFile, undefined);
  try {
    if (await ping(socketPath)) return undefined;
    const child = await spawnDaemon(socketPath, logFile);
    return await waitForDaemon(socketPath, deadline, logFile, child);
  } finally {
    fs.rmSync(lock, { force: true });
  }
}

interface ChildState {
  exited: boolean;
  code: number | null;
}

async function spawnDaemon(socketPath: string, logFile: string): Promise<ChildState> {
  const { spawn } = await import('node:child_process');
  // argv[1], resolved through npm's bin symlink: the built shim is a CommonJS bundle, where
  // import.meta does not exist.
  const cli = path.join(path.dirname(fs.realpathSync(process.argv[1]!)), '..', 'cli', 'main.js');
  try {
    // Keep one previous log; a daemon's log should not grow without bound across restarts.
    if (fs.statSync(logFile).size > 1024 * 1024) fs.renameSync(logFile, `${logFile}.1`);
  } catch {
    // no log yet
  }
  const out = fs.openSync(logFile, 'a', 0o600);
  const state: ChildState = { exited: false, code: null };
  const child = spawn(process.execPath, [cli, 'daemon', '--socket', socketPath], {
    detached: true,
    stdio: ['ignore', 'ignore', out],
    cwd: os.homedir(),
    env: process.env,
  });
  fs.closeSync(out);
  child.on('exit', (code) => Object.assign(state, { exited: true, code }));
  child.on('error', () => Object.assign(state, { exited: true, code: null }));
  child.unref();
  return state;
}

async function waitForDaemon(socketPath: string, deadline: number, logFile: string, child: ChildState | undefined): Promise<string | undefined> {
  let delay = 20;
  while (Date.now() < deadline) {
    if (await ping(socketPath, Math.max(100, deadline - Date.now()))) return undefined;
    if (child?.exited) return `the daemon it started exited (status ${child.code}); see ${logFile}`;
    await sleep(delay);
    delay = Math.min(delay * 2, 200);
  }
  return `no daemon answered within ${AUTOSTART_DEADLINE_MS / 1000} s; see ${logFile}`;
}

// ---- main ----

async function main(): Promise<void> {
  const started = Date.now();
  const parsed = parseArgs(process.argv.slice(2));
  if ('help' in parsed) {
    fs.writeSync(1, `${USAGE}\n`);
    process.exit(0);
  }
  if ('error' in parsed) fail('USAGE', `${parsed.error} (see keybroker-shim --help)`);
  const socketPath = resolveSocketPath({ flag: parsed.socket }).path;
  const request: GetRequest = { v: 1, op: 'get', profile: parsed.profile };
  if (parsed.refresh) request.refresh = true;
  const consumer = await findConsumer();
  if (consumer) request.consumer = consumer;

  let reply: Reply = await sendRequest(socketPath, request, { timeoutMs: REQUEST_TIMEOUT_MS });
  if (!reply.ok && reply.error.code === 'DAEMON_UNREACHABLE') {
    if (process.env.KEYBROKER_NO_AUTOSTART === '1') {
      fail('DAEMON_UNREACHABLE', `${reply.error.message}; autostart is off (KEYBROKER_NO_AUTOSTART=1) — start it with: keybroker daemon`);
    }
    const why = await autostart(socketPath, started + AUTOSTART_DEADLINE_MS);
    if (why) fail('DAEMON_UNREACHABLE', `${reply.error.message} and starting one failed: ${why}`);
    reply = await sendRequest(socketPath, request, { timeoutMs: REQUEST_TIMEOUT_MS });
  }
  if (!reply.ok) fail(reply.error.code, reply.error.message);
  if (!('value' in reply) || typeof reply.value !== 'string') fail('INTERNAL', 'the daemon answered without a value');
  if (reply.stale && reply.warning) {
    fs.writeSync(2, `keybroker: warning: serving a cached value past its TTL: ${reply.warning.message.replace(/\s*\n\s*/g, '; ')}\n`);
  }
  fs.writeSync(1, `${formatValue(reply.value, parsed.format, parsed.profile)}\n`);
  process.exit(0);
}

// ---- output formats for Claude Code's sibling helpers ----

function formatValue(value: string, format: Format, profile: string): string {
  if (format === 'raw') return value;
  let json: unknown;
  try {
    json = JSON.parse(value);
  } catch {
    json = undefined;
  }
  const isObject = typeof json === 'object' && json !== null && !Array.isArray(json);
  if (format === 'aws-credentials') {
    // awsCredentialExport wants {"Credentials":{AccessKeyId,SecretAccessKey,SessionToken,Expiration}}.
    const creds = isObject ? ((json as { Credentials?: unknown }).Credentials ?? json) : undefined;
    const c = creds as Record<string, unknown> | undefined;
    if (!c || typeof c.AccessKeyId !== 'string' || typeof c.SecretAccessKey !== 'string') {
      fail('INVALID_VALUE', `profile "${profile}" does not hold AWS credentials; give it a source such as aws-credentials://default`);
    }
    const out: Record<string, string> = { AccessKeyId: c.AccessKeyId, SecretAccessKey: c.SecretAccessKey };
    if (typeof c.SessionToken === 'string') out.SessionToken = c.SessionToken;
    if (typeof c.Expiration === 'string') out.Expiration = c.Expiration;
    return JSON.stringify({ Credentials: out });
  }
  // headers: otelHeadersHelper wants a flat object of header name to string.
  if (isObject && Object.values(json as object).every((v) => typeof v === 'string')) return JSON.stringify(json);
  return JSON.stringify({ Authorization: `Bearer ${value}` });
}

main().catch(() => {
  // Never print the error itself: nothing here should throw, and if it does it may hold a value.
  fs.writeSync(2, 'keybroker: internal error in keybroker-shim\n');
  process.exit(ERROR_CODES.INTERNAL);
});
