// The one logger factory. JSON lines on stderr (stdout belongs to replies and CLI output); on a
// terminal, readable lines instead (the same records, formatted by formatLogLine).
// Secret values are SecretValue objects, which serialise as "[redacted]"; the redact list below
// is the second line of defence for plain strings under names that usually hold secrets.
import fs from 'node:fs';
import pino, { type Logger as PinoLogger, type LevelWithSilent } from 'pino';
import { renderError, type WireError } from './protocol/messages.js';

export type Logger = PinoLogger;

export const LOG_LEVELS: readonly LevelWithSilent[] = ['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent'];

const REDACT_PATHS = [
  'value',
  '*.value',
  'token',
  '*.token',
  'secret',
  '*.secret',
  'password',
  '*.password',
  'authorization',
  '*.authorization',
  'headers.authorization',
  '*.headers.authorization',
  'secret_id',
  '*.secret_id',
  'client_token',
  '*.client_token',
  'SecretString',
  '*.SecretString',
];

export interface LoggerOptions {
  level?: string | undefined;
  /** Defaults to stderr (fd 2). Tests pass a stream to capture lines. */
  destination?: pino.DestinationStream;
  /** Readable lines instead of JSON (for a person at a terminal). */
  pretty?: boolean;
}

/**
 * Readable lines when stderr is a terminal, JSON otherwise (a service manager, a log file, a
 * pipe). KEYBROKER_LOG_FORMAT=json or pretty overrides the guess.
 */
export function wantsPrettyLog(env: NodeJS.ProcessEnv, stderrIsTty: boolean = process.stderr.isTTY === true): boolean {
  if (env.KEYBROKER_LOG_FORMAT === 'json') return false;
  if (env.KEYBROKER_LOG_FORMAT === 'pretty') return true;
  return stderrIsTty;
}

export function isLogLevel(level: string): level is LevelWithSilent {
  return (LOG_LEVELS as readonly string[]).includes(level);
}

export function createLogger(options: LoggerOptions = {}): Logger {
  const level = options.level ?? 'info';
  // Synchronous writes: a crash must not lose the lines that explain it.
  const destination =
    options.destination ??
    (options.pretty
      ? { write: (line: string) => void fs.writeSync(2, formatLogLine(line)) }
      : pino.destination({ dest: 2, sync: true }));
  return pino(
    {
      name: 'keybroker',
      level: isLogLevel(level) ? level : 'info',
      redact: { paths: REDACT_PATHS, censor: '[redacted]' },
      base: { pid: process.pid },
      timestamp: pino.stdTimeFunctions.isoTime,
      // Errors are logged by code and name only: an unknown error's message may quote the data it
      // choked on, which may be a secret (see describeUnknownError).
      serializers: { err: serializeError },
    },
    destination,
  );
}

function serializeError(err: unknown): Record<string, unknown> {
  if (err && typeof err === 'object' && 'code' in err && (err as { name?: unknown }).name === 'BrokerError') {
    const e = err as {
      code: string;
      message: string;
      transient?: boolean;
      status?: unknown;
      profile?: string;
      fix?: string;
    };
    // The error's fields as they are, as the wire carries them: readers render, never parse.
    return {
      type: 'BrokerError',
      code: e.code,
      message: e.message,
      transient: e.transient,
      status: e.status,
      profile: e.profile,
      fix: e.fix,
    };
  }
  if (err instanceof Error) {
    const code = (err as NodeJS.ErrnoException).code;
    return code === undefined ? { type: err.name } : { type: err.name, code };
  }
  return { type: typeof err };
}

const LEVEL_NAMES: Readonly<Record<number, string>> = {
  10: 'TRACE',
  20: 'DEBUG',
  30: 'INFO',
  40: 'WARN',
  50: 'ERROR',
  60: 'FATAL',
};
/** Shown by the line's layout (time, level, message) or the same on every line (name, pid). */
const LAYOUT_KEYS = new Set(['level', 'time', 'msg', 'name', 'pid', 'hostname']);

/**
 * One JSON log record as a line for a person: `12:04:31 WARN  fetch failed: … profile=work
 * err=UNAVAILABLE: …`. It formats the record pino already serialised and redacted, so it can
 * show nothing the JSON line would not.
 */
export function formatLogLine(json: string, options: LogLineOptions = {}): string {
  let record: Record<string, unknown>;
  try {
    record = JSON.parse(json) as Record<string, unknown>;
  } catch {
    return json.endsWith('\n') ? json : `${json}\n`;
  }
  const time = typeof record.time === 'string' ? new Date(record.time) : new Date();
  const valid = !Number.isNaN(time.getTime());
  const clock = valid ? time.toTimeString().slice(0, 8) : '--:--:--';
  const day = options.date ? `${valid ? localDate(time) : '----------'} ` : '';
  const name = LEVEL_NAMES[Number(record.level)] ?? String(record.level);
  const level = options.styleLevel ? options.styleLevel(name, name.padEnd(5)) : name.padEnd(5);
  const fields: string[] = [];
  for (const [key, value] of Object.entries(record)) {
    if (LAYOUT_KEYS.has(key) || value === undefined) continue;
    fields.push(`${key}=${formatField(key, value)}`);
  }
  const rest = fields.length > 0 ? `  ${options.dim ? options.dim(fields.join(' ')) : fields.join(' ')}` : '';
  return `${day}${clock} ${level} ${String(record.msg ?? '')}${rest}\n`;
}

export interface LogLineOptions {
  /** Start with the local date (keybroker logs shows days of history; the live log does not). */
  date?: boolean;
  /** Colour the level word (TRACE … FATAL), given padded; the caller decides whether to colour. */
  styleLevel?: (level: string, padded: string) => string;
  /** Colour the fields after the message. */
  dim?: (text: string) => string;
}

function localDate(d: Date): string {
  const pad = (n: number): string => String(n).padStart(2, '0');
  return `${d.getFullYear()}-${pad(d.getMonth() + 1)}-${pad(d.getDate())}`;
}

function formatField(key: string, value: unknown): string {
  if (key === 'err' && value && typeof value === 'object') {
    const e = value as { code?: unknown; message?: unknown; type?: unknown };
    if (typeof e.message === 'string')
      return JSON.stringify(`${typeof e.code === 'string' ? `${e.code}: ` : ''}${renderError(e as WireError)}`);
    return String(e.code ?? e.type ?? 'error');
  }
  if (typeof value === 'string') return /^[^\s"=]+$/.test(value) ? value : JSON.stringify(value);
  if (Array.isArray(value) && value.every((v) => typeof v === 'string')) return value.join(',');
  return JSON.stringify(value);
}
