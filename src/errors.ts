// One error type for the whole broker. Messages are written for the person who will read them
// (often through Claude Code's "apiKeyHelper failed" line) and never carry a secret value or token.
import { exitCodeFor, type ErrorCode, type WireError } from './protocol/messages.js';

export type { ErrorCode } from './protocol/messages.js';

export interface BrokerErrorOptions {
  /** Retrying later may succeed: stale-if-error applies and backoff is used. */
  transient?: boolean;
  /** The backend's own status (HTTP status, SDK error name): safe, useful in status output. */
  status?: string | number;
}

const TRANSIENT_BY_DEFAULT: ReadonlySet<ErrorCode> = new Set(['TIMEOUT', 'UNAVAILABLE', 'RATE_LIMITED', 'DAEMON_UNREACHABLE']);

export class BrokerError extends Error {
  readonly code: ErrorCode;
  readonly transient: boolean;
  readonly status: string | number | undefined;

  constructor(code: ErrorCode, message: string, options: BrokerErrorOptions = {}) {
    super(message);
    this.name = 'BrokerError';
    this.code = code;
    this.transient = options.transient ?? TRANSIENT_BY_DEFAULT.has(code);
    this.status = options.status;
  }

  get exitCode(): number {
    return exitCodeFor(this.code);
  }

  toWire(): WireError {
    return { code: this.code, message: this.message, transient: this.transient };
  }
}

export function isBrokerError(err: unknown): err is BrokerError {
  return err instanceof BrokerError;
}

/**
 * Turn anything thrown into a BrokerError without copying its message: an unknown error's text
 * may quote the data that caused it (JSON.parse does), and that data may be a secret.
 */
export function toBrokerError(err: unknown, context: string): BrokerError {
  if (err instanceof BrokerError) return err;
  const name = err instanceof Error ? err.name : typeof err;
  return new BrokerError('INTERNAL', `${context}: unexpected ${name} (details withheld; run with --log-level debug)`);
}

/** Names the kind of an unknown error for logs, without its message. */
export function describeUnknownError(err: unknown): { errName: string; errCode?: string } {
  if (err instanceof Error) {
    const code = (err as NodeJS.ErrnoException).code;
    return code ? { errName: err.name, errCode: String(code) } : { errName: err.name };
  }
  return { errName: typeof err };
}
