// The one logger factory. JSON lines on stderr (stdout belongs to replies and CLI output).
// Secret values are SecretValue objects, which serialise as "[redacted]"; the redact list below
// is the second line of defence for plain strings under names that usually hold secrets.
import pino, { type Logger as PinoLogger, type LevelWithSilent } from 'pino';

export type Logger = PinoLogger;

export const LOG_LEVELS: readonly LevelWithSilent[] = ['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent'];

const REDACT_PATHS = [
  'value', '*.value',
  'token', '*.token',
  'secret', '*.secret',
  'password', '*.password',
  'authorization', '*.authorization', 'headers.authorization', '*.headers.authorization',
  'secret_id', '*.secret_id',
  'client_token', '*.client_token',
  'SecretString', '*.SecretString',
];

export interface LoggerOptions {
  level?: string | undefined;
  /** Defaults to stderr (fd 2). Tests pass a stream to capture lines. */
  destination?: pino.DestinationStream;
}

export function isLogLevel(level: string): level is LevelWithSilent {
  return (LOG_LEVELS as readonly string[]).includes(level);
}

export function createLogger(options: LoggerOptions = {}): Logger {
  const level = options.level ?? 'info';
  // Synchronous writes: a crash must not lose the lines that explain it.
  const destination = options.destination ?? pino.destination({ dest: 2, sync: true });
  return pino(
    {
      name: 'keybroker',
      level: isLogLevel(level) ? level : 'info',
      redact: { paths: REDACT_PATHS, censor: '[redacted]' },
      base: { pid: process.pid },
      timestamp: pino.stdTimeFunctions.isoTime,
      // Errors are logged by code and name only: see toBrokerError for why messages of unknown
      // errors are withheld.
      serializers: { err: serializeError },
    },
    destination,
  );
}

function serializeError(err: unknown): Record<string, unknown> {
  if (err && typeof err === 'object' && 'code' in err && (err as { name?: unknown }).name === 'BrokerError') {
    const e = err as { code: string; message: string; transient?: boolean; status?: unknown };
    return { type: 'BrokerError', code: e.code, message: e.message, transient: e.transient, status: e.status };
  }
  if (err instanceof Error) {
    const code = (err as NodeJS.ErrnoException).code;
    return code === undefined ? { type: err.name } : { type: err.name, code };
  }
  return { type: typeof err };
}
