// Values that carry their own expiry (a JWT's exp, exec JSON expiresAt, AWS credentials'
// Expiration): when a cached entry is fresh until, how long it may be served stale, and the error
// once it is gone. The profile's TTL and maxStale still apply; the expiry only ever shortens them.
//
//   fetched at t, value expires at E, margin m = min(60 s, 10% of the value's lifetime):
//   [t, min(t+TTL, E-m))   fresh (refresh-ahead fires at ~75% of this)
//   … min(t+TTL+S, E)      stale, served only while the source is failing
//   E                      never served again; a failing source now gives EXPIRED
import { formatDuration } from '../duration.js';
import { BrokerError } from '../errors.js';
import type { SecretValue } from '../secret.js';
import { readJwtTimes } from './jwt.js';

export const MAX_REFRESH_MARGIN_MS = 60_000;
export const REFRESH_MARGIN_FRACTION = 0.1;

/** Where a value's expiry came from, for status and messages. */
export type ExpirySource = 'jwt' | 'source';

export interface ValueExpiry {
  at: number;
  from: ExpirySource;
  /** When the value's validity began, if known (a JWT's iat/nbf, the source's issuedAt). */
  issuedAt?: number;
}

/**
 * The earlier of the expiry the source reported and a JWT value's own `exp`. The value is
 * decoded here, once per fetch, never verified and never logged.
 */
export function expiryOf(
  value: SecretValue,
  reported: { expiresAt?: number | undefined; issuedAt?: number | undefined },
): ValueExpiry | undefined {
  let expiry: ValueExpiry | undefined;
  if (reported.expiresAt !== undefined && Number.isFinite(reported.expiresAt)) {
    expiry = { at: reported.expiresAt, from: 'source' };
    if (reported.issuedAt !== undefined && Number.isFinite(reported.issuedAt)) expiry.issuedAt = reported.issuedAt;
  }
  const jwt = value.peek(readJwtTimes);
  if (jwt?.expiresAt !== undefined && (expiry === undefined || jwt.expiresAt < expiry.at)) {
    expiry = { at: jwt.expiresAt, from: 'jwt' };
    if (jwt.issuedAt !== undefined) expiry.issuedAt = jwt.issuedAt;
  }
  return expiry;
}

/** How long before its expiry a value stops being fresh: min(60 s, 10% of its lifetime). */
export function refreshMargin(lifetimeMs: number): number {
  return Math.max(0, Math.min(MAX_REFRESH_MARGIN_MS, lifetimeMs * REFRESH_MARGIN_FRACTION));
}

export interface EntryTimes {
  freshUntil: number;
  staleUntil: number;
}

/**
 * Fresh and stale limits of a value fetched at `t`. With an expiry (which must be after `t`),
 * freshness ends a margin before it, and staleness at it.
 */
export function entryTimes(t: number, ttlMs: number, maxStaleMs: number, expiry: ValueExpiry | undefined): EntryTimes {
  if (!expiry) return { freshUntil: t + ttlMs, staleUntil: t + ttlMs + maxStaleMs };
  const start = expiry.issuedAt !== undefined && expiry.issuedAt < expiry.at ? expiry.issuedAt : t;
  const margin = refreshMargin(expiry.at - start);
  // Keep at least half of what is left: a source that keeps handing out a token close to its
  // expiry must not be refetched on every read.
  const freshUntil = Math.min(t + ttlMs, Math.max(expiry.at - margin, t + (expiry.at - t) / 2));
  return { freshUntil, staleUntil: Math.min(freshUntil + maxStaleMs, expiry.at) };
}

function what(from: ExpirySource): string {
  return from === 'jwt' ? 'token (its JWT exp)' : 'value (its expiry as the source reported it)';
}

/** A fetch returned a value already past its expiry. */
export function alreadyExpiredError(source: string, expiry: ValueExpiry, t: number): BrokerError {
  return new BrokerError(
    'EXPIRED',
    `${source} returned a ${what(expiry.from)} that expired ${formatDuration(t - expiry.at)} ago`,
    { transient: true, fix: 'make the source hand out a fresh one' },
  );
}

/** The cached value has expired and refreshing it failed: say both. */
export function expiredAndRefreshFailedError(
  source: string,
  expiry: ValueExpiry,
  t: number,
  cause: BrokerError,
): BrokerError {
  // What fixes the source fixes this: the next read fetches again (nothing expired is kept).
  const options: ConstructorParameters<typeof BrokerError>[2] = {
    transient: cause.transient,
    fix: cause.fix ?? 'fix the source',
  };
  if (cause.retryAfterMs !== undefined) options.retryAfterMs = cause.retryAfterMs;
  if (cause.status !== undefined) options.status = cause.status;
  return new BrokerError(
    'EXPIRED',
    `the ${what(expiry.from)} from ${source} expired ${formatDuration(t - expiry.at)} ago and refreshing it failed (${cause.code}: ${cause.message})`,
    options,
  );
}
