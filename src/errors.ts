// One error type for the whole broker. Messages are written for the person who will read them
// (often through Claude Code's "apiKeyHelper failed" line) and never carry a secret value or token.
import fs from 'node:fs';
import { exitCodeFor, type ErrorCode, type WireError } from './protocol/messages.js';

export type { ErrorCode } from './protocol/messages.js';
// For scripts/bundle.mjs's main.js, which can load only this module when descriptors run out.
export { renderError } from './protocol/messages.js';

export interface BrokerErrorOptions {
  /** Retrying later may succeed: stale-if-error applies and backoff is used. */
  transient?: boolean;
  /** The backend's own status (HTTP status, SDK error name): safe, useful in status output. */
  status?: string | number;
  /**
   * The backend asked not to be called again for this long (HTTP 429 Retry-After, a rate limit
   * pause): the cache retries no earlier. Milliseconds from when the error was made.
   */
  retryAfterMs?: number;
  /** The profile the error is about; the daemon sets it at the edge when the request named one. */
  profile?: string | undefined;
  /** What to do about it, e.g. `run: chmod 600 ~/work.key`: never part of the message. */
  fix?: string | undefined;
}

const TRANSIENT_BY_DEFAULT: ReadonlySet<ErrorCode> = new Set([
  'TIMEOUT',
  'UNAVAILABLE',
  'RATE_LIMITED',
  'DAEMON_UNREACHABLE',
]);

export class BrokerError extends Error {
  readonly code: ErrorCode;
  readonly transient: boolean;
  readonly status: string | number | undefined;
  readonly retryAfterMs: number | undefined;
  readonly profile: string | undefined;
  readonly fix: string | undefined;

  constructor(code: ErrorCode, message: string, options: BrokerErrorOptions = {}) {
    super(message);
    this.name = 'BrokerError';
    this.code = code;
    this.transient = options.transient ?? TRANSIENT_BY_DEFAULT.has(code);
    this.status = options.status;
    this.retryAfterMs =
      options.retryAfterMs !== undefined && Number.isFinite(options.retryAfterMs) && options.retryAfterMs > 0
        ? options.retryAfterMs
        : undefined;
    this.profile = options.profile;
    this.fix = options.fix;
  }

  get exitCode(): number {
    return exitCodeFor(this.code);
  }

  /** The same error with some of its parts replaced (a redacted message, the profile it is about). */
  with(changes: { message?: string; profile?: string; fix?: string; retryAfterMs?: number }): BrokerError {
    return new BrokerError(this.code, changes.message ?? this.message, {
      transient: this.transient,
      status: this.status,
      retryAfterMs: changes.retryAfterMs ?? this.retryAfterMs,
      profile: changes.profile ?? this.profile,
      fix: changes.fix ?? this.fix,
    });
  }

  toWire(): WireError {
    const wire: WireError = { code: this.code, message: this.message, transient: this.transient };
    if (this.profile !== undefined) wire.profile = this.profile;
    if (this.fix !== undefined) wire.fix = this.fix;
    return wire;
  }
}

/**
 * `err` itself when it is a BrokerError (an adapter's mapped error, a timeout's or shutdown's abort
 * reason); anything else becomes a new BrokerError with `code` and `message`. The unknown error's own
 * text is never copied: it may quote the data it choked on (JSON.parse does), and that may be a secret.
 */
export function asBrokerError(err: unknown, code: ErrorCode, message: string): BrokerError {
  return err instanceof BrokerError ? err : new BrokerError(code, message);
}

/**
 * Running out of file descriptors is the user's limit, not a bug: say which limit and how to raise
 * it. EMFILE is this process's limit (ulimit -n); ENFILE is the whole system's.
 */
export function resourceError(err: unknown): BrokerError | undefined {
  const code = (err as NodeJS.ErrnoException | undefined)?.code;
  if (code === 'EMFILE') {
    const limit = OPEN_FILE_LIMIT;
    return new BrokerError('RESOURCE_EXHAUSTED', `too many open files (limit ${limit ?? 'unknown'})`, {
      status: code,
      fix: `raise it with: ulimit -n ${Math.max(1024, (limit ?? 0) * 4)}`,
    });
  }
  if (code === 'ENFILE')
    return new BrokerError('RESOURCE_EXHAUSTED', 'the system has too many open files (ENFILE)', {
      status: code,
      fix: 'close some programs, or raise fs.file-max',
    });
  return undefined;
}

/**
 * Read when this module loads: once the limit is reached, /proc/self/limits cannot be opened to
 * say what it is. One small read, Linux only.
 */
const OPEN_FILE_LIMIT = process.platform === 'linux' ? openFileLimit() : undefined;

function openFileLimit(): number | undefined {
  try {
    const line = fs
      .readFileSync('/proc/self/limits', 'utf8')
      .split('\n')
      .find((l) => l.startsWith('Max open files'));
    const soft = Number(line?.split(/\s{2,}/)[1]);
    return Number.isInteger(soft) ? soft : undefined;
  } catch {
    return undefined;
  }
}

/** Names the kind of an unknown error for logs, without its message. */
export function describeUnknownError(err: unknown): { errName: string; errCode?: string } {
  if (err instanceof Error) {
    const code = (err as NodeJS.ErrnoException).code;
    return code ? { errName: err.name, errCode: String(code) } : { errName: err.name };
  }
  return { errName: typeof err };
}
