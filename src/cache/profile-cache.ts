// The caching layer for one profile: TTL, refresh-ahead, single-flight, stale-if-error, and the
// consumer-repeat (401) inference. It wraps an adapter behind one call, get(), the way Vault
// Agent's LeaseCache wraps its proxier.
//
// Timeline of a value fetched at t with TTL T and maxStale S:
//   [t, t+T)        fresh: served from memory; refreshed in the background at ~0.75T while it
//                   has been read within the last T (so a profile in use never makes a reader wait)
//   [t+T, t+T+S)    stale: served only while the source is failing (with a warning), else refetched
//   t+T+S           dropped from memory (node-cache expiry)
import type NodeCache from 'node-cache';
import { abortable, type Adapter, type FetchReason, type Logger } from '../adapter.js';
import type { ResolvedProfile } from '../config/load.js';
import { formatDuration, MAX_DURATION_MS } from '../config/duration.js';
import { BrokerError, describeUnknownError } from '../errors.js';
import type { ConsumerInfo, ProfileStatus } from '../protocol/messages.js';
import type { SecretValue } from '../secret.js';
import { backoffDelay, REFRESH_BACKOFF } from './backoff.js';
import { ConsumerTracker, isSuspectedRejection, type ConsumerRecord } from './consumers.js';
import { SingleFlight } from './single-flight.js';

export interface CacheEntry {
  value: SecretValue;
  fetchedAt: number;
  freshUntil: number;
  staleUntil: number;
  version: string | undefined;
}

export interface Served {
  value: SecretValue;
  stale: boolean;
  freshUntil: number;
  /** Why a stale value is being served. */
  warning?: BrokerError;
}

export interface GetOptions {
  consumer?: ConsumerInfo | undefined;
  /** Skip the cache: fetch from the source now. */
  refresh?: boolean | undefined;
}

export interface ProfileCacheOptions {
  profile: ResolvedProfile;
  adapter: Adapter;
  ref: unknown;
  store: NodeCache;
  log: Logger;
  now?: () => number;
  random?: () => number;
  /** Suspected-rejection refetches within this interval share one fetch (N sessions, one 401 storm). */
  rejectionRefetchIntervalMs?: number;
  /** A second suspected rejection of the same value within this window fails the request. */
  rejectionWindowMs?: number;
}

/** Refresh-ahead fires at this fraction of the TTL, ± REFRESH_JITTER. */
export const REFRESH_AT = 0.75;
export const REFRESH_JITTER = 0.05;
const MIN_TTL_MS = 1000;

let nextId = 0;

export class ProfileCache {
  readonly name: string;
  readonly profile: ResolvedProfile;
  readonly #adapter: Adapter;
  readonly #ref: unknown;
  readonly #store: NodeCache;
  readonly #log: Logger;
  readonly #now: () => number;
  readonly #random: () => number;
  readonly #rejectionRefetchIntervalMs: number;
  readonly #rejectionWindowMs: number;
  readonly #key: string;
  readonly #flight = new SingleFlight<CacheEntry>();
  readonly #consumers = new ConsumerTracker();
  readonly #description: string;

  #timer: NodeJS.Timeout | undefined;
  #lastReadAt = -Infinity;
  /**
   * The outcome of the latest fetch. An error here means the source has been failing since the
   * cached value was fetched (a success replaces it).
   */
  #lastFetch: { startedAt: number; endedAt: number; entry?: CacheEntry; error?: BrokerError } | undefined;
  #failures = 0;
  #retryAfter = -Infinity;
  #disposed = false;
  #abort = new AbortController();
  readonly stats = { hits: 0, misses: 0, fetches: 0, staleServed: 0, suspectedRejections: 0, rejected: 0 };

  constructor(options: ProfileCacheOptions) {
    this.profile = options.profile;
    this.name = options.profile.name;
    this.#adapter = options.adapter;
    this.#ref = options.ref;
    this.#store = options.store;
    this.#log = options.log.child({ profile: this.name, source: options.adapter.kind });
    this.#now = options.now ?? Date.now;
    this.#random = options.random ?? Math.random;
    this.#rejectionRefetchIntervalMs = options.rejectionRefetchIntervalMs ?? 5_000;
    this.#rejectionWindowMs = options.rejectionWindowMs ?? 60_000;
    this.#key = `${this.name}#${++nextId}`;
    this.#description = options.adapter.describe(options.ref);
  }

  /** The source, described without secrets: "exec:op …", "vault:secret/anthropic#api_key". */
  get description(): string {
    return this.#description;
  }

  async get(options: GetOptions = {}): Promise<Served> {
    const t = this.#now();
    this.#lastReadAt = t;
    const { consumer } = options;
    if (options.refresh) {
      this.stats.misses++;
      const entry = await this.#fetch('explicit');
      return this.#serve(entry, consumer);
    }
    if (consumer) {
      const record = this.#consumers.lookup(consumer);
      if (isSuspectedRejection(record, consumer, this.profile.repeatDetection, t)) {
        return this.#onSuspectedRejection(consumer, record, t);
      }
    }
    const entry = this.#entry();
    if (entry && t < entry.freshUntil) {
      this.stats.hits++;
      this.#log.trace({ expiresInMs: entry.freshUntil - t, value: entry.value }, 'cache hit');
      return this.#serve(entry, consumer);
    }
    const failure = this.#lastFetch?.error;
    if (entry && t < entry.staleUntil && failure) {
      // The source has been failing since this value was fetched: answer now, retry behind.
      this.stats.hits++;
      if (t >= this.#retryAfter) this.#fetch('retry').catch(() => {});
      return this.#serve(entry, consumer, failure);
    }
    this.stats.misses++;
    try {
      return this.#serve(await this.#fetch('miss'), consumer);
    } catch (err) {
      const fallback = this.#entry();
      if (fallback && this.#now() < fallback.staleUntil && err instanceof BrokerError) {
        return this.#serve(fallback, consumer, err);
      }
      throw err;
    }
  }

  /** Fetch from the source now (joining a fetch already running). */
  async refresh(reason: FetchReason = 'explicit'): Promise<void> {
    await this.#fetch(reason);
  }

  status(): ProfileStatus {
    const t = this.#now();
    const entry = this.#entry();
    const last = this.#lastFetch;
    const lastError = last?.error ? { ...last.error.toWire(), atMs: last.endedAt } : null;
    return {
      name: this.name,
      kind: this.#adapter.kind,
      source: this.#description,
      state: this.#state(entry, t),
      ttlMs: this.profile.ttlMs,
      ageMs: entry ? t - entry.fetchedAt : null,
      expiresInMs: entry ? entry.freshUntil - t : null,
      hits: this.stats.hits,
      misses: this.stats.misses,
      fetches: this.stats.fetches,
      consumers: this.#consumers.count(t),
      lastError,
    };
  }

  /** Stop timers and abort a running fetch; the value is dropped from memory. */
  dispose(): void {
    this.#disposed = true;
    if (this.#timer) clearTimeout(this.#timer);
    this.#abort.abort(new BrokerError('SHUTTING_DOWN', `profile "${this.name}" was removed or the daemon is stopping`));
    this.#store.del(this.#key);
  }

  /** Wait for fetches still running (for a graceful shutdown). */
  async settle(): Promise<void> {
    await Promise.allSettled(this.#flight.pending());
  }

  #entry(): CacheEntry | undefined {
    return this.#store.get<CacheEntry>(this.#key);
  }

  #state(entry: CacheEntry | undefined, t: number): ProfileStatus['state'] {
    if (entry) {
      if (t < entry.freshUntil) return 'fresh';
      if (this.#lastFetch?.error) return 'stale';
      return 'expired';
    }
    if (this.#lastFetch?.error) return 'error';
    return this.#lastFetch ? 'expired' : 'cold';
  }

  #serve(entry: CacheEntry, consumer: ConsumerInfo | undefined, warning?: BrokerError): Served {
    const t = this.#now();
    if (consumer) this.#consumers.served(consumer, entry.value, t);
    const stale = t >= entry.freshUntil;
    if (stale) this.stats.staleServed++;
    const served: Served = { value: entry.value, stale, freshUntil: entry.freshUntil };
    if (stale && warning) served.warning = warning;
    return served;
  }

  async #onSuspectedRejection(consumer: ConsumerInfo, record: ConsumerRecord, t: number): Promise<Served> {
    this.stats.suspectedRejections++;
    this.#log.info({ consumer: { pid: consumer.pid, name: consumer.name }, sinceLastMs: t - record.servedAt }, 'repeat request from the same consumer: its key was probably rejected; checking the source');
    let fetchError: BrokerError | undefined;
    let entry: CacheEntry | undefined;
    try {
      entry = await this.#refetchForRejection(record.servedAt);
    } catch (err) {
      fetchError = err instanceof BrokerError ? err : new BrokerError('SOURCE_ERROR', 'the source failed');
      entry = this.#entry();
    }
    if (entry && !entry.value.equals(record.value)) {
      this.#log.info({ consumer: { pid: consumer.pid } }, 'the source has a new value: serving it');
      return this.#serve(entry, consumer);
    }
    if (record.strikeAt !== undefined && t - record.strikeAt < this.#rejectionWindowMs) {
      this.stats.rejected++;
      const why = fetchError
        ? `refreshing it from ${this.#description} failed (${fetchError.message}) — fix the source`
        : `${this.#description} still returns the same value — rotate it at the source`;
      this.#log.warn({ consumer: { pid: consumer.pid, name: consumer.name } }, 'the same value was rejected twice: failing the request');
      throw new BrokerError('KEY_REJECTED', `profile "${this.name}": the key was rejected and ${why}, then run: keybroker refresh ${this.name}`);
    }
    // Unchanged: serve it once more. Claude Code also re-calls the helper when its settings
    // change, so one repeat is not proof of a 401.
    this.#consumers.strike(consumer, t);
    if (!entry) throw fetchError ?? new BrokerError('SOURCE_ERROR', 'the source returned nothing');
    return this.#serve(entry, consumer, fetchError);
  }

  /**
   * A fetch for a suspected rejection of a value served at `servedAt`. A fetch that started after
   * that (and recently) already tells what the source holds now, so a storm of 401s from many
   * sessions that all held the old value costs one fetch; a fetch in flight is joined.
   */
  #refetchForRejection(servedAt: number): Promise<CacheEntry> {
    const last = this.#lastFetch;
    if (
      !this.#flight.inflight(this.#key) &&
      last &&
      last.startedAt > servedAt &&
      this.#now() - last.startedAt < this.#rejectionRefetchIntervalMs
    ) {
      if (last.entry) return Promise.resolve(this.#entry() ?? last.entry);
      if (last.error) return Promise.reject(last.error);
    }
    return this.#fetch('rejected');
  }

  #fetch(reason: FetchReason): Promise<CacheEntry> {
    return this.#flight.run(this.#key, () => this.#fetchOnce(reason), this.#now());
  }

  async #fetchOnce(reason: FetchReason): Promise<CacheEntry> {
    if (this.#disposed) throw new BrokerError('SHUTTING_DOWN', `profile "${this.name}" is no longer served`);
    this.stats.fetches++;
    const startedAt = this.#now();
    const timeout = new AbortController();
    const timer = setTimeout(() => {
      timeout.abort(new BrokerError('TIMEOUT', `${this.#description} did not answer within ${formatDuration(this.profile.timeoutMs)} (profile timeout)`));
    }, this.profile.timeoutMs);
    const signal = AbortSignal.any([timeout.signal, this.#abort.signal]);
    try {
      const pending = this.#adapter.fetch(this.#ref, { signal, profile: this.name, reason, log: this.#log });
      const result = await abortable(pending, signal);
      if (result.value.byteLength === 0) throw new BrokerError('INVALID_VALUE', `${this.#description} returned an empty value`);
      if (!result.value.isText()) throw new BrokerError('INVALID_VALUE', `${this.#description} returned bytes that are not UTF-8 text`);
      const t = this.#now();
      let ttl = this.profile.ttlMs;
      if (result.ttlMs !== undefined && Number.isFinite(result.ttlMs)) ttl = Math.min(ttl, Math.max(result.ttlMs, MIN_TTL_MS));
      const previous = this.#entry();
      const entry: CacheEntry = {
        value: result.value,
        fetchedAt: t,
        freshUntil: t + ttl,
        staleUntil: t + ttl + this.profile.maxStaleMs,
        version: result.version,
      };
      this.#store.set(this.#key, entry, (ttl + this.profile.maxStaleMs) / 1000);
      this.#failures = 0;
      this.#retryAfter = -Infinity;
      this.#lastFetch = { startedAt, endedAt: t, entry };
      this.#log.info(
        { reason, ms: t - startedAt, ttlMs: ttl, changed: previous ? !previous.value.equals(result.value) : null, version: result.version },
        'fetched',
      );
      this.#scheduleRefreshAhead(entry);
      return entry;
    } catch (err) {
      const error = this.#toBrokerError(err);
      const t = this.#now();
      this.#lastFetch = { startedAt, endedAt: t, error };
      this.#failures++;
      const delay = backoffDelay(this.#failures, REFRESH_BACKOFF, this.#random);
      this.#retryAfter = t + delay;
      this.#log.warn({ reason, ms: t - startedAt, err: error, retryInMs: delay }, 'fetch failed');
      this.#scheduleRetry(delay);
      throw error;
    } finally {
      clearTimeout(timer);
    }
  }

  #toBrokerError(err: unknown): BrokerError {
    if (err instanceof BrokerError) return err;
    // An adapter bug: its message may quote the data it choked on, which may be the secret.
    this.#log.error(describeUnknownError(err), 'adapter threw an unexpected error');
    return new BrokerError('SOURCE_ERROR', `${this.#description} failed unexpectedly (see the daemon log)`);
  }

  #scheduleRefreshAhead(entry: CacheEntry): void {
    const ttl = entry.freshUntil - entry.fetchedAt;
    const fraction = REFRESH_AT + (this.#random() * 2 - 1) * REFRESH_JITTER;
    this.#setTimer(ttl * fraction, () => {
      if (this.#now() - this.#lastReadAt >= ttl) {
        // Nobody asked within a whole TTL: let it expire rather than poll a rate-limited
        // backend for a profile no one uses. The next read fetches it again.
        this.#log.debug('not read within its TTL: letting it expire');
        return;
      }
      this.#fetch('refresh-ahead').catch(() => {});
    });
  }

  #scheduleRetry(delay: number): void {
    const entry = this.#entry();
    if (!entry || this.#disposed) return;
    if (this.#now() + delay >= entry.staleUntil) return;
    if (this.#now() - this.#lastReadAt >= entry.freshUntil - entry.fetchedAt) return;
    this.#setTimer(delay, () => {
      this.#fetch('retry').catch(() => {});
    });
  }

  #setTimer(delayMs: number, fn: () => void): void {
    if (this.#timer) clearTimeout(this.#timer);
    if (this.#disposed) return;
    this.#timer = setTimeout(fn, Math.min(Math.max(0, delayMs), MAX_DURATION_MS));
    this.#timer.unref();
  }
}
