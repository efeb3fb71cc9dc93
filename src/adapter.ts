// The interface every secret source implements. Adapters live in adapters/<kind>/ and may import
// only this file, src/errors.ts and src/secret.ts (plus their own SDK).
//
// Life of an adapter: the daemon creates one per source kind and settings block (construction is
// cheap and offline: no network, no SDK loading), parses every profile's source URI with it when
// the config loads (offline validation), then calls fetch() whenever the cache needs a value.
import type { Logger } from 'pino';
import type { SecretValue } from './secret.js';

export type { Logger } from 'pino';

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
