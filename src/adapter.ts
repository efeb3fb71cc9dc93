// The interface every secret source implements. Adapters live in adapters/<kind>/ and may import
// only this file, src/errors.ts and src/secret.ts (plus their own SDK).
//
// Life of an adapter: the daemon creates one per source kind and settings block (construction is
// cheap and offline: no network, no SDK loading), parses every profile's source URI with it when
// the config loads (offline validation), then calls fetch() whenever the cache needs a value.
import fs from 'node:fs/promises';
import { constants as fsConstants } from 'node:fs';
import path from 'node:path';
import type { Logger } from 'pino';
import { BrokerError, type ErrorCode } from './errors.js';
import type { SecretValue } from './secret.js';

export type { Logger } from 'pino';
// Durations in adapter settings read and print like every other duration in the config.
export { formatDuration, parseDuration } from './config/duration.js';

/** Why the cache is asking. Adapters with a read budget may refuse background fetches. */
export type FetchReason = 'miss' | 'refresh-ahead' | 'retry' | 'rejected' | 'explicit' | 'check';

export interface FetchContext {
  /** Aborted when the profile's timeout elapses or the daemon shuts down. Honour it. */
  signal: AbortSignal;
  profile: string;
  reason: FetchReason;
  log: Logger;
}

export interface FetchResult {
  value: SecretValue;
  /** The backend says the value is good for this long (a lease, an expiry); caps the profile TTL. */
  ttlMs?: number;
  /** A non-secret version label (KV version, version id), for logs and status. */
  version?: string;
}

export interface AdapterInit {
  /** The top-level config block named by the adapter's configKey (e.g. `vault:`), unvalidated. */
  settings: Record<string, unknown> | undefined;
  env: NodeJS.ProcessEnv;
  log: Logger;
}

export interface ParseOptions {
  /** The profile's own block under the adapter's configKey, overriding `settings`, unvalidated. */
  overrides: Record<string, unknown> | undefined;
  profile: string;
}

export interface Adapter<Ref = unknown> {
  /** The URI scheme this adapter serves, e.g. "exec". */
  readonly kind: string;
  /**
   * Validate a source URI offline and return what fetch() needs. Throw
   * BrokerError('CONFIG_INVALID', …) with a message that says what is wrong and how to fix it.
   */
  parse(uri: string, options: ParseOptions): Promise<Ref> | Ref;
  /** A printable description of the reference: never a value, never a credential. */
  describe(ref: Ref): string;
  /** Fetch the current value. Throw BrokerError; map backend errors, never wrap them. */
  fetch(ref: Ref, ctx: FetchContext): Promise<FetchResult>;
  /** Short non-secret facts for `keybroker status` (read budgets, sign-in state). */
  status?(): string[];
  /** Release clients, timers and sockets. */
  close(): Promise<void>;
}

export interface AdapterModule {
  createAdapter(init: AdapterInit): Adapter;
}

/**
 * Settle with `pending` or, as soon as the signal aborts, reject with `reasonFor(signal)` (the
 * abort reason by default) — for SDK calls that ignore an AbortSignal. A late rejection of
 * `pending` is swallowed.
 */
export function abortable<T>(pending: Promise<T>, signal: AbortSignal, reasonFor: (signal: AbortSignal) => unknown = (s) => s.reason): Promise<T> {
  pending.catch(() => {});
  if (signal.aborted) return Promise.reject(reasonFor(signal));
  return new Promise<T>((resolve, reject) => {
    const onAbort = (): void => reject(reasonFor(signal));
    signal.addEventListener('abort', onAbort, { once: true });
    pending.then(
      (value) => {
        signal.removeEventListener('abort', onAbort);
        resolve(value);
      },
      (err: unknown) => {
        signal.removeEventListener('abort', onAbort);
        reject(err);
      },
    );
  });
}

/**
 * A path from config or the environment, made absolute: `~` and `~/…` expand to `home`. A relative
 * path is refused: the daemon's working directory is not the user's shell's.
 */
export function resolveUserPath(written: string, home: string | undefined, where: string): string {
  let p = written;
  if (p === '~' || p.startsWith('~/')) {
    if (!home) throw new BrokerError('CONFIG_INVALID', `${where}: cannot expand ~ because HOME is unset`);
    p = path.join(home, p.slice(1));
  }
  if (!path.isAbsolute(p)) {
    throw new BrokerError('CONFIG_INVALID', `${where} must be an absolute path or start with ~/ (the daemon's working directory is not yours)`);
  }
  return path.normalize(p);
}

export interface PrivateFileOptions {
  /** How messages name the file, e.g. "token file ~/op-token". */
  label: string;
  maxBytes: number;
  /** The code for a file that is not a regular file, or is too large to be what it should hold. */
  invalid: ErrorCode;
}

/**
 * Read a file that holds a secret (a key, a token), refusing one that is not a regular file, that
 * group or others can read, that belongs to someone else, or that is larger than `maxBytes`.
 * Errors from opening or reading it are thrown as they are, for the adapter's own translator.
 * The caller wipes the returned buffer once it has taken the secret out.
 */
export async function readPrivateFile(file: string, options: PrivateFileOptions): Promise<Buffer> {
  // O_NONBLOCK: a FIFO opens at once and is refused below instead of hanging the fetch.
  // O_NOFOLLOW is not used: a symlink into a private directory is a common, fine setup; the
  // checks apply to the file actually opened.
  const handle = await fs.open(file, fsConstants.O_RDONLY | fsConstants.O_NONBLOCK);
  try {
    const st = await handle.stat();
    if (!st.isFile()) throw new BrokerError(options.invalid, `${options.label} is not a regular file`);
    if ((st.mode & 0o077) !== 0) {
      const mode = (st.mode & 0o777).toString(8).padStart(4, '0');
      throw new BrokerError('PERMISSION_DENIED', `${options.label} is readable by others (mode ${mode}); refusing to use it — run: chmod 600 ${file}`);
    }
    if (typeof process.getuid === 'function' && st.uid !== process.getuid()) {
      throw new BrokerError('PERMISSION_DENIED', `${options.label} is owned by uid ${st.uid}, not by you; refusing to use it`);
    }
    if (st.size > options.maxBytes) {
      throw new BrokerError(options.invalid, `${options.label} is ${st.size} bytes; it may hold at most ${options.maxBytes}`);
    }
    return await handle.readFile();
  } finally {
    await handle.close();
  }
}
