// The interface every secret source implements. Adapters live in adapters/<kind>/ and may import
// only this file, src/errors.ts and src/secret.ts (plus their own SDK).
//
// Life of an adapter: the daemon creates one per source kind and settings block (construction is
// cheap and offline: no network, no SDK loading), parses every profile's source URI with it when
// the config loads (offline validation), then calls fetch() whenever the cache needs a value.
import path from 'node:path';
import type { Logger } from 'pino';
import { BrokerError } from './errors.js';
import type { SecretValue } from './secret.js';

export type { Logger } from 'pino';
// Durations in adapter settings read and print like every other duration in the config.
export { formatDuration, parseDuration } from './duration.js';
// One capped, jittered backoff for every retry loop (the cache's, an adapter's login).
export { backoffDelay, type BackoffOptions } from './client/backoff.js';
// The `aws:` block's schema and parser, shared by the aws-sm: and aws-credentials: sources, and
// where the AWS SDK finds credentials on this machine (what leads to a key kept in AWS).
export { AWS_REGION_PATTERN, awsSecretLocations, parseAwsSettings, type AwsSettings } from './aws-settings.js';
// One clock for everything that schedules, so tests drive time by hand.
export { deadline, systemClock, type Clock, type ClockTimer, type Deadline } from './clock.js';

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
  /**
   * The backend suggests refetching after this long (a KV lease, an advisory TTL); caps the profile
   * TTL. The value may still work afterwards, so stale-if-error still applies: for a value that
   * stops working, set expiresAt.
   */
  ttlMs?: number;
  /**
   * The instant (epoch ms) the value itself stops working: a credential's Expiration, an exec
   * JSON `expiresAt`. A hard cap: the cache refreshes ahead of it and never serves the value at
   * or after it, stale or not. (A JWT value's `exp` is read by the cache itself.)
   */
  expiresAt?: number;
  /** When the value's validity began (epoch ms), to size the refresh margin; default: fetch time. */
  issuedAt?: number;
  /** A non-secret version label (KV version, version id), for logs and status. */
  version?: string;
}

export interface AdapterInit {
  /** The top-level config block named by the adapter's configKey (e.g. `vault:`), unvalidated. */
  settings: Record<string, unknown> | undefined;
  env: NodeJS.ProcessEnv;
  log: Logger;
}

/** How a source prints its value: the value alone, or JSON {"value", "expiresAt"} (exec only). */
export type OutputFormat = 'text' | 'json';

export interface ParseOptions {
  /** The profile's own block under the adapter's configKey, overriding `settings`, unvalidated. */
  overrides: Record<string, unknown> | undefined;
  profile: string;
  /** The profile's `output:`; only adapters whose registry entry has jsonOutput get 'json'. */
  output?: OutputFormat;
  /**
   * Keys of this adapter's settings block that the organisation's managed config locks (`aws.region`
   * → 'region'; a whole locked block → '*'), and the file that locks them. A source URI parameter
   * must not override a locked key: the adapter ignores it and calls `warn`.
   */
  locked?: { keys: readonly string[]; by: string };
  /** Report something that works but is not what the profile says (a parameter ignored by a lock). */
  warn?: (message: string) => void;
  /**
   * For adapters that run programs (registry `childEnv`): the environment variables that other
   * profiles' env: sources read. Their values are other keys: withhold them from the program.
   */
  secretEnv?: readonly string[];
}

/** An environment variable's name, as env: sources and exec.passEnv write it. */
export const ENV_VAR_NAME = /^[A-Za-z_][A-Za-z0-9_]*$/;

/** Does the managed config lock this settings key for the profile being parsed? */
export function isLocked(options: Pick<ParseOptions, 'locked'>, key: string): boolean {
  return options.locked !== undefined && (options.locked.keys.includes('*') || options.locked.keys.includes(key));
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
  /**
   * Where this source's key, or a credential that leads to it, sits on this machine: files (a key
   * file, a token file, a client key; absolute paths) and environment variables (a token). What
   * an agent's sandbox must keep from its commands (`setup claude --sandbox`, doctor). Offline, and
   * never a value. A keychain source says `keychain`: its key sits behind a service, not a file.
   * Sources with nothing of the kind (a command) leave it out.
   */
  secretLocations?(ref: Ref): SecretLocations;
  /**
   * A source you can write to (the OS keychain): store `value` where `ref` points, replacing
   * what is there (`keybroker key set`). Sources that are read-only leave it out.
   */
  store?(ref: Ref, value: SecretValue, ctx: WriteContext): Promise<void>;
  /** A source you can write to: remove the entry; resolves false when there was none (`keybroker key delete`). */
  remove?(ref: Ref, ctx: WriteContext): Promise<boolean>;
  /** Release clients, timers and sockets. */
  close(): Promise<void>;
}

export interface SecretLocations {
  files: string[];
  env: string[];
  /**
   * The key sits in the OS keychain, reached through a service (the Secret Service over the D-Bus
   * session bus, the login keychain), not a file: nothing a deny list could name.
   */
  keychain?: boolean;
}

/** What store() and remove() are given: a bound in time, and who asks. */
export type WriteContext = Omit<FetchContext, 'reason'>;

/** Whether a source kind works on this machine now; `why` says what is missing when it does not. */
export type ProbeResult = { ok: true; what: string } | { ok: false; why: string };

export interface AdapterModule {
  createAdapter(init: AdapterInit): Adapter;
  /**
   * Does this kind of source answer here (a keychain's service, say)? Cheap, and bounded by
   * `timeoutMs` whatever the backend does: the first run picks the starter config's source by it.
   */
  probe?(options: { env: NodeJS.ProcessEnv; timeoutMs: number }): Promise<ProbeResult>;
}

/**
 * Where a source kind's module comes from: adapters/registry.ts's adapterFor, handed in by whoever
 * builds an AdapterPool (the daemon, `config check`, `doctor`), so the cache never imports adapters.
 */
export type FindAdapter = (scheme: string) => { load(): Promise<AdapterModule> } | undefined;

/**
 * Settle with `pending` or, as soon as the signal aborts, reject with `reasonFor(signal)` (the
 * abort reason by default) — for SDK calls that ignore an AbortSignal. A late rejection of
 * `pending` is swallowed.
 */
export function abortable<T>(
  pending: Promise<T>,
  signal: AbortSignal,
  reasonFor: (signal: AbortSignal) => unknown = (s) => s.reason,
): Promise<T> {
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
    throw new BrokerError(
      'CONFIG_INVALID',
      `${where} must be an absolute path or start with ~/ (the daemon's working directory is not yours)`,
    );
  }
  return path.normalize(p);
}

// Key and token files are read through the one checked-file reader (see src/checked-file.ts).
export { readCheckedFile, readPrivateFile, type CheckedFileOptions } from './checked-file.js';

/** Retry-After values past this are capped: a backend's typo must not park a profile for a year. */
export const MAX_RETRY_AFTER_MS = 60 * 60_000;

/**
 * An HTTP Retry-After header (RFC 9110: delay-seconds or an HTTP-date) as milliseconds from `now`,
 * capped at MAX_RETRY_AFTER_MS; undefined when absent, unparsable or already past.
 */
export function parseRetryAfter(header: string | readonly string[] | undefined, now: number): number | undefined {
  const text = (Array.isArray(header) ? header[0] : header)?.trim();
  if (!text) return undefined;
  let ms: number;
  if (/^\d{1,10}$/.test(text)) ms = Number(text) * 1000;
  else if (/^[A-Za-z]{3}, \d{2} [A-Za-z]{3} \d{4} \d{2}:\d{2}:\d{2} GMT$/.test(text)) ms = Date.parse(text) - now;
  else return undefined;
  if (!Number.isFinite(ms) || ms <= 0) return undefined;
  return Math.min(ms, MAX_RETRY_AFTER_MS);
}
