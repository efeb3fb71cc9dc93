// exec: — run a command and use what it prints. Wraps any existing helper:
//
//   profiles:
//     work:
//       source: exec:op read op://Work/Anthropic/credential
//       ttl: 1h
//
// The command runs under /bin/sh -c in its own session (no controlling terminal, so it cannot
// prompt), with stdin closed, the daemon's environment, and your home directory as working
// directory. It is killed when the profile's timeout elapses: its whole process group, and on
// Linux every process below it, even one that left the group with setsid.
// stdout is trimmed and used whole; a non-zero exit fails with the first line of stderr.
//
// With `output: json` in the profile the command prints one JSON object instead, for a value that
// expires (like git's credential protocol's password_expiry_utc):
//
//     work:
//       source: exec:mint-gateway-token --audience llm
//       output: json        # prints {"value": "eyJ…", "expiresAt": "2026-11-26T15:04:05Z"}
//
// `value` (a non-empty string) is required; `expiresAt` (RFC 3339 with a time zone) is optional
// and caps how long the cache keeps and serves the value. Anything else is refused, and no
// message ever quotes the output (it holds the secret).
//
// The variables that env: profiles read are other keys: the command runs without them, unless
// an exec: block (top level, or the profile's own, which replaces it) lets some through:
//
//     work:
//       source: exec:my-helper
//       exec:
//         passEnv: [ANTHROPIC_API_KEY]
import { isUtf8 } from 'node:buffer';
import { spawn } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import {
  ENV_VAR_NAME,
  type Adapter,
  type AdapterInit,
  type FetchContext,
  type FetchResult,
  type OutputFormat,
} from '../../src/adapter.js';
import { asBrokerError, BrokerError } from '../../src/errors.js';
import { redactText, SecretValue } from '../../src/secret.js';

interface ExecRef {
  command: string;
  label: string;
  output: OutputFormat;
  /** Variables the command runs without: other profiles' env: variables not in passEnv. */
  withheld: string[];
}

interface ExecSettings {
  passEnv?: string[];
}

const MAX_STDOUT_BYTES = 64 * 1024;
const MAX_STDERR_BYTES = 8 * 1024;
const KILL_GRACE_MS = 1000;

export function createAdapter(init: AdapterInit): Adapter<ExecRef> {
  const cwd = init.env.HOME || os.homedir();
  return {
    kind: 'exec',
    parse(uri, options) {
      const command = uri.slice('exec:'.length).trim();
      if (command.length === 0) {
        throw new BrokerError(
          'CONFIG_INVALID',
          `"exec:" needs a command, e.g. exec:op read op://Private/Anthropic/credential`,
        );
      }
      const top = parseExecSettings(init.settings, 'the top-level exec: block');
      const own = parseExecSettings(options.overrides, "this profile's exec: block");
      const passEnv = own.passEnv ?? top.passEnv ?? [];
      const withheld = (options.secretEnv ?? []).filter((name) => !passEnv.includes(name));
      return { command, label: labelFor(command), output: options.output ?? 'text', withheld };
    },
    describe: (ref) => ref.label,
    fetch: (ref, ctx) => runCommand(ref, ctx, withoutVariables(init.env, ref.withheld), cwd),
    async close() {},
  };
}

/**
 * A printable name for a command: its program only. Arguments may carry a literal secret
 * (`exec:echo sk-…`), and a leading VAR=value word certainly might.
 */
export function labelFor(command: string): string {
  const first = command.trim().split(/[\s;&|()<>]+/)[0] ?? '';
  if (first === '' || first.includes('=') || /['"$`\\]/.test(first)) return 'exec:(command)';
  const program = first.slice(first.lastIndexOf('/') + 1);
  return command.trim() === first ? `exec:${program}` : `exec:${program} …`;
}

interface Proc {
  pid: number;
  /** Its start time (/proc/<pid>/stat field 22): a pid reused meanwhile is not signalled. */
  start: string;
}

/** pid, parent pid and start time of a process, from /proc (Linux). */
function procStat(pid: string): (Proc & { ppid: number }) | undefined {
  try {
    const stat = fs.readFileSync(`/proc/${pid}/stat`, 'latin1');
    // "pid (comm) state ppid …": comm may hold spaces and parentheses, so cut at the last ')'.
    const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
    return { pid: Number(pid), ppid: Number(fields[1]), start: fields[19] ?? '' };
  } catch {
    return undefined;
  }
}

/**
 * Every process below `pid` on Linux: a command that left its process group (setsid) is still
 * its parent's child, which the group kill would miss. Elsewhere none — the group is what there is.
 */
function descendants(pid: number): Proc[] {
  if (process.platform !== 'linux') return [];
  let names: string[];
  try {
    names = fs.readdirSync('/proc');
  } catch {
    return [];
  }
  const children = new Map<number, Proc[]>();
  for (const name of names) {
    if (!/^\d+$/.test(name)) continue;
    const p = procStat(name);
    if (p) children.set(p.ppid, [...(children.get(p.ppid) ?? []), { pid: p.pid, start: p.start }]);
  }
  const found: Proc[] = [];
  for (let queue = [pid]; queue.length > 0;) {
    for (const c of children.get(queue.shift()!) ?? []) {
      found.push(c);
      queue.push(c.pid);
    }
  }
  return found;
}

function signalProcs(procs: readonly Proc[], signal: NodeJS.Signals): void {
  for (const p of procs) {
    if (procStat(String(p.pid))?.start !== p.start) continue; // gone, or its pid reused
    try {
      process.kill(p.pid, signal);
    } catch {
      // gone meanwhile
    }
  }
}

function parseExecSettings(raw: unknown, where: string): ExecSettings {
  if (raw === undefined || raw === null) return {};
  const invalid = (what: string): BrokerError => new BrokerError('CONFIG_INVALID', `${where}: ${what}`);
  if (typeof raw !== 'object' || Array.isArray(raw)) throw invalid('must be a mapping with passEnv');
  const unknown = Object.keys(raw).filter((k) => k !== 'passEnv');
  if (unknown.length > 0) throw invalid(`unknown key "${unknown[0]}" — known keys: passEnv`);
  const { passEnv } = raw as { passEnv?: unknown };
  if (passEnv === undefined) return {};
  if (!Array.isArray(passEnv) || !passEnv.every((v) => typeof v === 'string' && ENV_VAR_NAME.test(v))) {
    throw invalid('passEnv must be a list of environment variable names, e.g. [ANTHROPIC_API_KEY]');
  }
  return { passEnv: passEnv as string[] };
}

function withoutVariables(env: NodeJS.ProcessEnv, names: readonly string[]): NodeJS.ProcessEnv {
  if (names.length === 0) return env;
  const out = { ...env };
  for (const name of names) delete out[name];
  return out;
}

function runCommand(ref: ExecRef, ctx: FetchContext, env: NodeJS.ProcessEnv, cwd: string): Promise<FetchResult> {
  return new Promise((resolve, reject) => {
    if (ctx.signal.aborted) {
      reject(abortError(ctx.signal, ref));
      return;
    }
    const child = spawn('/bin/sh', ['-c', ref.command], {
      stdio: ['ignore', 'pipe', 'pipe'],
      detached: true,
      env,
      cwd,
    });
    const out: Buffer[] = [];
    const err: Buffer[] = [];
    let outBytes = 0;
    let errBytes = 0;
    let overflow = false;
    let settled = false;
    let killTimer: NodeJS.Timeout | undefined;

    const killGroup = (signal: NodeJS.Signals, tree: readonly Proc[] = []): void => {
      if (child.pid === undefined) return;
      try {
        process.kill(-child.pid, signal);
      } catch {
        // already gone
      }
      signalProcs(tree, signal);
    };
    const settle = (fn: () => void): void => {
      if (settled) return;
      settled = true;
      ctx.signal.removeEventListener('abort', onAbort);
      fn();
    };
    const onAbort = (): void => {
      // Found before the group is signalled: once the shell is gone, what it started is
      // re-parented and no longer found below it.
      const tree = child.pid === undefined ? [] : descendants(child.pid);
      killGroup('SIGTERM', tree);
      killTimer = setTimeout(() => {
        killGroup('SIGKILL', tree);
        // Something that escaped anyway (a daemon that double-forked) may hold our pipes open:
        // let go of them, so a stuck command costs no descriptors.
        child.stdout.destroy();
        child.stderr.destroy();
      }, KILL_GRACE_MS);
      killTimer.unref();
      settle(() => reject(abortError(ctx.signal, ref)));
    };
    ctx.signal.addEventListener('abort', onAbort, { once: true });

    child.stdout.on('data', (chunk: Buffer) => {
      outBytes += chunk.length;
      if (outBytes > MAX_STDOUT_BYTES) {
        if (!overflow) {
          overflow = true;
          killGroup('SIGKILL', child.pid === undefined ? [] : descendants(child.pid));
        }
        return;
      }
      out.push(chunk);
    });
    child.stderr.on('data', (chunk: Buffer) => {
      if (errBytes < MAX_STDERR_BYTES) err.push(chunk.subarray(0, MAX_STDERR_BYTES - errBytes));
      errBytes += chunk.length;
    });
    child.on('error', (e: NodeJS.ErrnoException) => {
      settle(() =>
        reject(new BrokerError('SOURCE_ERROR', `${ref.label}: could not start /bin/sh (${e.code ?? e.name})`)),
      );
    });
    child.on('close', (code, signal) => {
      if (killTimer) clearTimeout(killTimer);
      const stdout = Buffer.concat(out);
      settle(() => {
        try {
          resolve(commandResult(ref, env, { code, signal, overflow, stdout, stderr: err }));
        } catch (e) {
          reject(e);
        }
        stdout.fill(0);
      });
    });
  });
}

interface CommandExit {
  code: number | null;
  signal: NodeJS.Signals | null;
  /** It printed more than MAX_STDOUT_BYTES (and was killed for it). */
  overflow: boolean;
  stdout: Buffer;
  stderr: readonly Buffer[];
}

/** What a finished command's exit and output make: the value, or the error it throws. */
function commandResult(ref: ExecRef, env: NodeJS.ProcessEnv, exit: CommandExit): FetchResult {
  const { code, signal, overflow, stdout } = exit;
  if (overflow)
    throw new BrokerError(
      'INVALID_VALUE',
      `${ref.label} printed more than ${MAX_STDOUT_BYTES} bytes; a key is expected`,
    );
  if (code === 127)
    // The shell's own statuses: the program is missing or not executable. Under a service
    // manager this is usually PATH (launchd's default PATH lacks /opt/homebrew/bin).
    throw new BrokerError('NOT_FOUND', `${ref.label}: command not found (exit 127)`, {
      status: code,
      fix: `is it installed and on the daemon's PATH (${env.PATH ?? 'unset'})?`,
    });
  const firstLine = code === 0 ? undefined : firstStderrLine(Buffer.concat(exit.stderr));
  if (code === 126)
    throw new BrokerError(
      'PERMISSION_DENIED',
      `${ref.label}: command is not executable (exit 126)${firstLine ? `: ${firstLine}` : ''}`,
      { status: code },
    );
  if (code !== 0) {
    const how = signal ? `was killed by ${signal}` : `exited ${code}`;
    throw new BrokerError('SOURCE_ERROR', `${ref.label} ${how}${firstLine ? `: ${firstLine}` : ' (no stderr)'}`, {
      status: code ?? signal ?? undefined,
    });
  }
  if (ref.output === 'json') {
    if (!isUtf8(stdout))
      throw new BrokerError('INVALID_VALUE', `${ref.label} (output: json) printed bytes that are not UTF-8 text`);
    return parseJsonOutput(stdout.toString('utf8'), ref.label);
  }
  // Decoding bytes that are not UTF-8 would replace them (U+FFFD) and make a wrong key look
  // like text: hand those over as they are, for the cache's one "not text" refusal.
  return {
    value: isUtf8(stdout) ? SecretValue.fromString(stdout.toString('utf8').trim()) : SecretValue.fromBytes(stdout),
  };
}

const JSON_KEYS = new Set(['value', 'expiresAt']);
/** RFC 3339 date-time: a full date, a time, and a zone (Z or ±hh:mm); no local times. */
const RFC3339 = /^(\d{4})-(\d{2})-(\d{2})[Tt ](\d{2}):(\d{2}):(\d{2})(\.\d{1,9})?([Zz]|[+-]\d{2}:\d{2})$/;

/**
 * What a command prints under `output: json`: {"value": "…", "expiresAt": "RFC 3339"}. Errors say
 * what is wrong with the shape, never what was printed.
 */
export function parseJsonOutput(text: string, label: string): FetchResult {
  const wrong = (what: string): BrokerError =>
    new BrokerError('INVALID_VALUE', `${label} (output: json) ${what}`, {
      fix: 'it must print one JSON object like {"value": "…", "expiresAt": "2026-01-01T00:00:00Z"}',
    });
  let parsed: unknown;
  try {
    parsed = JSON.parse(text);
  } catch {
    // JSON.parse's message quotes the text around the error: that may be the secret.
    throw wrong('did not print valid JSON');
  }
  if (typeof parsed !== 'object' || parsed === null || Array.isArray(parsed))
    throw wrong('printed JSON that is not an object');
  const record = parsed as Record<string, unknown>;
  const unknown = Object.keys(record).filter((k) => !JSON_KEYS.has(k));
  // The keys are not named: a command that printed the secret as a key would see it quoted.
  if (unknown.length > 0)
    throw wrong(`printed ${unknown.length} key${unknown.length === 1 ? '' : 's'} other than "value" and "expiresAt"`);
  if (typeof record.value !== 'string')
    throw wrong(record.value === undefined ? 'printed no "value"' : 'printed a "value" that is not a string');
  if (record.value.trim() === '') throw wrong('printed an empty "value"');
  const result: FetchResult = { value: SecretValue.fromString(record.value) };
  if (record.expiresAt !== undefined && record.expiresAt !== null) {
    const at = typeof record.expiresAt === 'string' ? parseRfc3339(record.expiresAt) : undefined;
    if (at === undefined) throw wrong('printed an "expiresAt" that is not an RFC 3339 date-time with a time zone');
    result.expiresAt = at;
  }
  return result;
}

function parseRfc3339(text: string): number | undefined {
  const m = RFC3339.exec(text);
  if (!m) return undefined;
  const [year, month, day, hour, minute, second] = m.slice(1, 7).map(Number) as [
    number,
    number,
    number,
    number,
    number,
    number,
  ];
  // Date.parse accepts 2026-02-30 and rolls it over to March; RFC 3339 does not.
  const daysInMonth = new Date(Date.UTC(year, month, 0)).getUTCDate();
  if (month < 1 || month > 12 || day < 1 || day > daysInMonth || hour > 23 || minute > 59 || second > 60)
    return undefined;
  // A leap second (:60) is read as :59; Date.parse wants an upper-case T and Z.
  const ms = Date.parse(
    text
      .toUpperCase()
      .replace(' ', 'T')
      .replace(/:60(?=[.Z+-])/, ':59'),
  );
  return Number.isFinite(ms) ? ms : undefined;
}

function firstStderrLine(stderr: Buffer): string {
  const text = stderr.toString('utf8');
  const line = text.split(/\r?\n/).find((l) => l.trim().length > 0) ?? '';
  // eslint-disable-next-line no-control-regex -- stripping control characters is the point
  const oneLine = line.replace(/[\u0000-\u001f\u007f]/g, ' ').trim();
  // Masked before it is cut short: a key cut in half no longer looks like one. (The cache also
  // redacts every value the daemon has served from the whole error.)
  const clean = redactText(oneLine);
  return clean.length > 200 ? `${clean.slice(0, 200)}…` : clean;
}

function abortError(signal: AbortSignal, ref: ExecRef): BrokerError {
  return asBrokerError(signal.reason, 'TIMEOUT', `${ref.label} was stopped before it finished`);
}
