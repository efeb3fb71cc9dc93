// The caching layer for one profile: TTL, refresh-ahead, single-flight, stale-if-error, and the
// consumer-repeat (401) inference. It wraps an adapter behind one call, get(), the way Vault
// Agent's LeaseCache wraps its proxier.
//
// Timeline of a value fetched at t with TTL T and maxStale S:
//   [t, t+T)        fresh: served from memory; refreshed in the background at ~0.75T while it
//                   has been read within the last T (so a profile in use never makes a reader wait)
//   [t+T, t+T+S)    stale: served only while the source is failing (with a warning), else refetched
//   t+T+S           dropped from memory (a timer on the same clock; see #scheduleDrop)
// A value that carries its own expiry (a JWT's exp, FetchResult.expiresAt) shortens all of these
// so that it is never served at or after that expiry (see expiry.ts).
import type NodeCache from 'node-cache';
import { abortable, type Adapter, type FetchReason, type FetchResult, type Logger } from '../adapter.js';
import { deadline, systemClock, type Clock, type ClockTimer } from '../clock.js';
import type { ResolvedProfile } from '../config/load.js';
import { REFRESH_AT } from '../config/schema.js';
import { formatDuration } from '../duration.js';
import { asBrokerError, BrokerError, describeUnknownError } from '../errors.js';
import {
  MAX_PROFILE_TIMEOUT_MS,
  type ConsumerInfo,
  type ProfileStatus,
  type RejectionStatus,
} from '../protocol/messages.js';
import { redactText, type SecretValue, type ServedValues } from '../secret.js';
import { backoffDelay, REFRESH_BACKOFF } from '../client/backoff.js';
import { ConsumerTracker, detectsRepeats, isEarlyRepeat, settingsChanged, type ConsumerRecord } from './consumers.js';
import { alreadyExpiredError, entryTimes, expiredAndRefreshFailedError, expiryOf, type ValueExpiry } from './expiry.js';
import { FORCED_FETCH_BURST, FORCED_FETCH_INTERVAL_MS, ForcedFetchLimit } from './forced-fetch-limit.js';
import { SingleFlight } from './single-flight.js';

export interface CacheEntry {
  value: SecretValue;
  fetchedAt: number;
  freshUntil: number;
  staleUntil: number;
  version: string | undefined;
  /** When the value itself stops working, if it says (never served at or after it). */
  expiry: ValueExpiry | undefined;
}

/**
 * How a get was answered, for the audit trail: from memory, fetched for it, refetched because the
 * consumer's repeat suggests its key was rejected, or a stale value served while the source fails.
 */
export type ServeOutcome = 'hit' | 'fetched' | 'refetched' | 'stale';

export interface Served {
  value: SecretValue;
  stale: boolean;
  freshUntil: number;
  outcome: ServeOutcome;
  /** The source's version label of this value, when it has one. */
  version: string | undefined;
  /** Why a stale value is being served. */
  warning?: BrokerError;
}

/** What a get learned about the value a consumer held before, filled in even when the get throws. */
export interface GetNote {
  /** The request looked like a rejection of this value (a repeat from the same consumer). */
  rejected?: { value: SecretValue; version: string | undefined };
}

export interface GetOptions {
  consumer?: ConsumerInfo | undefined;
  /**
   * Whether the kernel confirmed the consumer claim (its pid is the connection's peer or one of
   * the peer's ancestors). false: the request is judged against what the consumer's record says,
   * but never changes it, so its strikes and reads cannot reach a real call from that consumer.
   * undefined: not checked (no hardening addon), taken as claimed.
   */
  claimConfirmed?: boolean | undefined;
  /** Skip the cache: fetch from the source now. */
  refresh?: boolean | undefined;
  note?: GetNote | undefined;
}

export interface ProfileCacheOptions {
  profile: ResolvedProfile;
  adapter: Adapter;
  ref: unknown;
  store: NodeCache;
  log: Logger;
  /** Drives TTLs, refresh-ahead, retries and the fetch timeout; tests pass a manual clock. */
  clock?: Clock;
  random?: () => number;
  /** Every value the daemon has served (all profiles), redacted from errors adapters report. */
  served?: ServedValues;
  /** Forced fetches (refreshes, suspected rejections) allowed back to back… */
  forcedFetchBurst?: number;
  /** …and then one per this interval. */
  forcedFetchIntervalMs?: number;
}

/** What a rejection remembers of the value: ServedValues' salted hash and length, never the bytes. */
function rejectionKey(value: SecretValue): string {
  const { length, hash } = value.redactionKey();
  return `${length}:${hash}`;
}

/** Suspected-rejection refetches within this interval share one fetch (N sessions, one 401 storm). */
const REJECTION_REFETCH_INTERVAL_MS = 5_000;
/** A second suspected rejection of the same value within this window fails the request. */
const REJECTION_WINDOW_MS = 60_000;
/**
 * How long a get may take in the daemon, waiting included: a client waits this long plus a margin
 * (CLIENT_REPLY_TIMEOUT_MS). A get after a forget that finds the forced-fetch limit spent waits
 * for the next fetch it allows only when that wait and the profile's own timeout fit within it.
 */
const GET_DEADLINE_MS = MAX_PROFILE_TIMEOUT_MS;
/** Refresh-ahead fires at REFRESH_AT of the TTL (config/schema.ts), ± this. */
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
  readonly #clock: Clock;
  readonly #now: () => number;
  readonly #random: () => number;
  readonly #key: string;
  readonly #flight = new SingleFlight<CacheEntry>();
  readonly #consumers = new ConsumerTracker();
  readonly #forcedFetches: ForcedFetchLimit;
  readonly #served: ServedValues | undefined;
  readonly #description: string;

  #timer: ClockTimer | undefined;
  /** Drops the held value from memory at its stale limit. */
  #dropTimer: ClockTimer | undefined;
  #lastReadAt = -Infinity;
  /**
   * The outcome of the latest fetch. An error here means the source has been failing since the
   * cached value was fetched (a success replaces it).
   */
  #lastFetch: { startedAt: number; endedAt: number; entry?: CacheEntry; error?: BrokerError } | undefined;
  #failures = 0;
  #retryAfter = -Infinity;
  /** The backend asked (429 Retry-After) not to be called before this; for status. */
  #rateLimitedUntil = -Infinity;
  /** The expiry of the last value fetched, kept after the value is dropped (status, EXPIRED). */
  #valueExpiry: ValueExpiry | undefined;
  /**
   * The value this daemon refused as rejected (KEY_REJECTED), until a fetch brings another one:
   * status and doctor report it. Held as the salted hash ServedValues keeps (never a copy), so
   * expiry and `forget` still drop the value itself.
   */
  #rejection: (RejectionStatus & { key: string }) | undefined;
  #disposed = false;
  /** Bumped by forget(): a fetch started before it is neither stored nor joined by later reads. */
  #generation = 0;
  /** Set by forget() until a fetch follows it: that fetch is a forced one (see #fetchAfterForget). */
  #forgotten = false;
  #abort = new AbortController();
  readonly stats = {
    hits: 0,
    misses: 0,
    fetches: 0,
    staleServed: 0,
    suspectedRejections: 0,
    rejected: 0,
    forcedFetchesLimited: 0,
  };

  constructor(options: ProfileCacheOptions) {
    this.profile = options.profile;
    this.name = options.profile.name;
    this.#adapter = options.adapter;
    this.#ref = options.ref;
    this.#store = options.store;
    this.#log = options.log.child({ profile: this.name, source: options.adapter.kind });
    this.#clock = options.clock ?? systemClock;
    this.#now = () => this.#clock.now();
    this.#random = options.random ?? Math.random;
    this.#key = `${this.name}#${++nextId}`;
    this.#description = options.adapter.describe(options.ref);
    this.#served = options.served;
    this.#forcedFetches = new ForcedFetchLimit({
      burst: options.forcedFetchBurst ?? FORCED_FETCH_BURST,
      intervalMs: options.forcedFetchIntervalMs ?? FORCED_FETCH_INTERVAL_MS,
      now: this.#now,
    });
  }

  /** The source, described without secrets: "exec:op …", "vault:secret/anthropic#api_key". */
  get description(): string {
    return this.#description;
  }

  /** The source can be written to (the OS keychain), so `key set` may hand the cache a value. */
  get writable(): boolean {
    return typeof this.#adapter.store === 'function';
  }

  async get(options: GetOptions = {}): Promise<Served> {
    const t = this.#now();
    this.#lastReadAt = t;
    const { consumer } = options;
    // What a request may change in the consumer records: nothing, for a claim the kernel refuted.
    const recorded = options.claimConfirmed === false ? undefined : consumer;
    // Counted whether or not it gets a value: `status` should show who is waiting on a failing profile.
    if (recorded) this.#consumers.asked(recorded, t);
    if (options.refresh) {
      this.stats.misses++;
      const entry = await this.#refreshFetch();
      return this.#serve(entry, recorded, 'fetched');
    }
    if (consumer) {
      const record = this.#consumers.lookup(consumer);
      if (isEarlyRepeat(record, consumer, this.profile.repeatDetection, t)) {
        if (!settingsChanged(record, consumer)) {
          if (options.note) options.note.rejected = { value: record.value, version: record.version };
          return this.#onSuspectedRejection(consumer, record, t, recorded !== undefined);
        }
        this.#log.info(
          { consumer: { pid: consumer.pid, name: consumer.name }, sinceLastMs: t - record.servedAt },
          "repeat request after the consumer's Claude Code settings changed (it re-runs its helper then): an ordinary read",
        );
      }
    }
    return this.#serveFromCache(t, recorded);
  }

  /** An ordinary read: fresh from memory, stale while the source fails, else fetched. */
  async #serveFromCache(t: number, consumer: ConsumerInfo | undefined): Promise<Served> {
    const entry = this.#entry();
    if (entry && t < entry.freshUntil) {
      this.stats.hits++;
      this.#log.trace({ expiresInMs: entry.freshUntil - t, value: entry.value }, 'cache hit');
      return this.#serve(entry, consumer, 'hit');
    }
    const failure = this.#lastFetch?.error;
    if (entry && t < entry.staleUntil && failure) {
      // The source has been failing since this value was fetched: answer now, retry behind.
      this.stats.hits++;
      if (t >= this.#retryAfter) this.#fetch('retry').catch(() => {});
      return this.#serve(entry, consumer, 'hit', failure);
    }
    this.stats.misses++;
    try {
      const fetched = this.#forgotten ? this.#fetchAfterForget() : this.#fetch('miss');
      return this.#serve(await fetched, consumer, 'fetched');
    } catch (err) {
      const fallback = this.#entry();
      if (fallback && err instanceof BrokerError) return this.#serve(fallback, consumer, 'hit', err);
      throw this.#explainExpired(err);
    }
  }

  /**
   * Fetch from the source now (joining a fetch already running), within the forced-fetch limit;
   * resolves with what it got.
   */
  async refresh(): Promise<{ value: SecretValue; version: string | undefined }> {
    const entry = await this.#refreshFetch();
    return { value: entry.value, version: entry.version };
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
      valueExpiresInMs: this.#valueExpiry ? this.#valueExpiry.at - t : null,
      rateLimitedForMs: this.#rateLimitedUntil > t ? this.#rateLimitedUntil - t : null,
      hits: this.stats.hits,
      misses: this.stats.misses,
      fetches: this.stats.fetches,
      consumers: this.#consumers.count(t),
      unmarkedClaudeConsumers: this.#consumers.countUnmarked(t),
      forcedFetchesLimited: this.stats.forcedFetchesLimited,
      lastError,
      rejected: this.#rejection
        ? { atMs: this.#rejection.atMs, consumer: this.#rejection.consumer, requests: this.#rejection.requests }
        : null,
      ...(this.profile.managedBy !== undefined && { managed: true }),
    };
  }

  /**
   * Drop the value from memory now, as ssh-agent -D does: the cache entry, the copy kept with the
   * last fetch's outcome and the consumers' records of what they were served. Never refused. The
   * next read fetches again, within the forced-fetch limit (see #fetchAfterForget); a fetch
   * already running still answers its waiters but is not kept.
   */
  forget(): void {
    this.#generation++;
    this.#forgotten = true;
    this.#timer?.cancel();
    this.#dropTimer?.cancel();
    this.#store.del(this.#key);
    this.#consumers.clear();
    // What the consumers were refused goes with what they were served: the next repeats judge anew.
    this.#rejection = undefined;
    this.#lastFetch = undefined;
    this.#valueExpiry = undefined;
    this.#failures = 0;
    this.#retryAfter = -Infinity;
    this.#log.info('forgotten: value dropped from memory');
  }

  /** Stop timers and abort a running fetch; the value is dropped from memory. */
  dispose(): void {
    this.#disposed = true;
    this.#timer?.cancel();
    this.#dropTimer?.cancel();
    this.#abort.abort(
      new BrokerError('SHUTTING_DOWN', 'the profile was removed or the daemon is stopping', { profile: this.name }),
    );
    this.#store.del(this.#key);
  }

  /** Wait for fetches still running (for a graceful shutdown). */
  async settle(): Promise<void> {
    await Promise.allSettled(this.#flight.pending());
  }

  /** The value held, unless it is past its stale limit (which a value's own expiry caps): then it is dropped. */
  #entry(): CacheEntry | undefined {
    const entry = this.#store.get<CacheEntry>(this.#key);
    if (entry && this.#now() >= entry.staleUntil) {
      this.#drop(entry);
      return undefined;
    }
    return entry;
  }

  /**
   * Drop the held value at its stale limit, by this cache's clock. node-cache would expire it by
   * Date.now, a second clock that a test cannot move; so the store is given no TTL and this
   * timer does it. (A system timer may fire early, clamped to its maximum delay: it looks again.)
   */
  #scheduleDrop(entry: CacheEntry): void {
    this.#dropTimer?.cancel();
    this.#dropTimer = this.#clock.setTimeout(() => {
      if (this.#entry() === entry) this.#scheduleDrop(entry);
    }, entry.staleUntil - this.#now());
  }

  /** Let go of `entry`: the store's copy and the one kept with the last fetch's outcome. */
  #drop(entry: CacheEntry): void {
    this.#store.del(this.#key);
    this.#dropTimer?.cancel();
    if (this.#lastFetch?.entry === entry) this.#lastFetch = { ...this.#lastFetch, entry: undefined };
    this.#log.debug('past its stale limit: value dropped from memory');
  }

  /** A failure once the last value has expired says so: the value is gone, not merely stale. */
  #explainExpired(err: unknown): unknown {
    const expiry = this.#valueExpiry;
    const t = this.#now();
    if (!(err instanceof BrokerError) || err.code === 'EXPIRED' || !expiry || t < expiry.at) return err;
    return expiredAndRefreshFailedError(this.#description, expiry, t, err);
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

  #serve(entry: CacheEntry, consumer: ConsumerInfo | undefined, outcome: ServeOutcome, warning?: BrokerError): Served {
    const t = this.#now();
    if (entry.expiry && t >= entry.expiry.at) {
      // Every path keeps to staleUntil ≤ expiry; this is the one place that makes it a promise.
      const cause =
        warning ?? this.#lastFetch?.error ?? new BrokerError('SOURCE_ERROR', 'no newer value has been fetched');
      throw expiredAndRefreshFailedError(this.#description, entry.expiry, t, cause);
    }
    if (consumer) {
      const detection = this.profile.repeatDetection;
      const byAgent = detection === 'agents' || detection === 'claude-code';
      const unmarked = byAgent && consumer.claudeCode && consumer.invocation === 'unmarked';
      this.#consumers.served(consumer, entry.value, entry.version, t, {
        repeats: detectsRepeats(detection, consumer),
        unmarked,
      });
    }
    const stale = t >= entry.freshUntil;
    if (stale) this.stats.staleServed++;
    const served: Served = {
      value: entry.value,
      stale,
      freshUntil: entry.freshUntil,
      outcome: stale && outcome === 'hit' ? 'stale' : outcome,
      version: entry.version,
    };
    if (stale && warning) served.warning = warning;
    return served;
  }

  /** `recorded`: the claim may change the consumer's record (a strike, the value it was served). */
  async #onSuspectedRejection(
    consumer: ConsumerInfo,
    record: ConsumerRecord,
    t: number,
    recorded: boolean,
  ): Promise<Served> {
    this.stats.suspectedRejections++;
    this.#log.info(
      { consumer: { pid: consumer.pid, name: consumer.name }, sinceLastMs: t - record.servedAt },
      'repeat request from the same consumer: its key was probably rejected; checking the source',
    );
    let fetchError: BrokerError | undefined;
    let entry: CacheEntry | undefined;
    try {
      entry = await this.#refetchForRejection(record);
    } catch (err) {
      fetchError = asBrokerError(err, 'SOURCE_ERROR', 'the source failed');
      entry = this.#entry();
    }
    const recordAs = recorded ? consumer : undefined;
    if (entry && !entry.value.equals(record.value)) {
      this.#log.info({ consumer: { pid: consumer.pid } }, 'the source has a new value: serving it');
      return this.#serve(entry, recordAs, 'refetched');
    }
    if (record.strikeAt !== undefined && t - record.strikeAt < REJECTION_WINDOW_MS) {
      this.stats.rejected++;
      const [why, fix] = fetchError
        ? [`refreshing it from ${this.#description} failed (${fetchError.message})`, fetchError.fix ?? 'fix the source']
        : [`${this.#description} still returns the same value`, 'rotate it at the source'];
      this.#log.warn(
        { consumer: { pid: consumer.pid, name: consumer.name } },
        'the same value was rejected twice: failing the request',
      );
      // A claim the kernel refuted fails its own request but does not get to mark the profile.
      if (recorded) this.#noteRejection(record.value, consumer, t);
      throw new BrokerError('KEY_REJECTED', `the key was rejected and ${why}`, {
        profile: this.name,
        fix: `${fix}, then run: keybroker refresh ${this.name}`,
      });
    }
    // Unchanged: serve it once more. Claude Code also re-calls the helper when its settings
    // change, so one repeat is not proof of a 401. A strike from an unconfirmed claim is not
    // kept: it would make the real consumer's next call fail.
    if (recorded) this.#consumers.strike(consumer, t);
    else
      this.#log.info({ consumer: { pid: consumer.pid } }, 'consumer claim not confirmed by the kernel: no strike kept');
    if (!entry)
      throw this.#explainExpired(fetchError ?? new BrokerError('SOURCE_ERROR', 'the source returned nothing'));
    return this.#serve(entry, recordAs, 'refetched', fetchError);
  }

  /** Status and doctor say the profile's key is rejected from now until a fetch brings another value. */
  #noteRejection(value: SecretValue, consumer: ConsumerInfo, t: number): void {
    const key = rejectionKey(value);
    const who = { pid: consumer.pid, ...(consumer.name !== undefined && { name: consumer.name }) };
    if (this.#rejection?.key === key) {
      this.#rejection.consumer = who;
      this.#rejection.requests++;
      return;
    }
    this.#rejection = { key, atMs: t, consumer: who, requests: 1 };
  }

  /**
   * A fetch for a suspected rejection of a value served at `servedAt`. A fetch that started after
   * that (and recently) already tells what the source holds now, so a storm of 401s from many
   * sessions that all held the old value costs one fetch; a fetch in flight is joined. Beyond
   * that the forced-fetch limit applies: when it is spent, the answer is what the source would most
   * likely have said, the value already held.
   */
  #refetchForRejection(record: ConsumerRecord): Promise<CacheEntry> {
    const servedAt = record.servedAt;
    const last = this.#lastFetch;
    if (
      !this.#flight.inflight(this.#flightKey()) &&
      last &&
      last.startedAt > servedAt &&
      this.#now() - last.startedAt < REJECTION_REFETCH_INTERVAL_MS
    ) {
      if (last.entry) return Promise.resolve(this.#entry() ?? last.entry);
      if (last.error) return Promise.reject(last.error);
    }
    const held = this.#entry();
    // Nothing held: this is a plain miss, not an extra read.
    if (!held || this.#flight.inflight(this.#flightKey())) return this.#fetch('rejected');
    if (this.#forcedFetchWait() !== undefined) {
      this.#log.info(
        'forced-fetch limit reached: answering the suspected rejection as if the source returned the same value',
      );
      return Promise.resolve(held);
    }
    return this.#fetch('rejected');
  }

  /**
   * An explicit refresh. It joins a fetch in flight (whatever started it, that tells what the
   * source holds now); otherwise it draws on the forced-fetch limit.
   */
  #refreshFetch(): Promise<CacheEntry> {
    if (!this.#flight.inflight(this.#flightKey())) {
      const waitMs = this.#forcedFetchWait();
      if (waitMs !== undefined)
        return Promise.reject(
          this.#tooOften(
            `refreshed from ${this.#description} too often`,
            `try again in ${formatDuration(waitMs)}`,
            'reads without --refresh still get the cached value',
          ),
        );
      // A refresh right after a forget is the forget's fetch: one token for both.
      this.#forgotten = false;
    }
    return this.#fetch('explicit');
  }

  /**
   * The first fetch after a forget. forget itself is never refused and drops the value at once,
   * but the fetch that follows it is a forced one, drawn from the same per-profile limit as a
   * refresh: a loop of forget and get costs the backend no more than a loop of refreshes. With
   * the limit spent, the read waits for the next token (every read that joins it shares the wait
   * and the one fetch) rather than failing: forgetting every profile before leaving the laptop
   * still costs one fetch each afterwards, and Claude Code's helper still gets its key.
   */
  #fetchAfterForget(): Promise<CacheEntry> {
    return this.#flight.run(this.#flightKey(), async () => {
      const generation = this.#generation;
      const latest = this.#now() + GET_DEADLINE_MS - this.profile.timeoutMs;
      for (let waitMs = this.#forcedFetchWait(); waitMs !== undefined; waitMs = this.#forcedFetchWait()) {
        if (this.#now() + waitMs > latest)
          throw this.#tooOften(
            `forgotten and fetched from ${this.#description} too often`,
            `the next fetch is allowed in ${formatDuration(waitMs)}, later than a read may wait`,
            'try again then',
          );
        this.#log.info({ waitMs }, 'forgotten, and the forced-fetch limit is spent: waiting for its next fetch');
        await this.#sleep(waitMs);
      }
      if (generation === this.#generation) this.#forgotten = false;
      return this.#fetchOnce('miss');
    });
  }

  /** RATE_LIMITED: `what` happened too often for the forced-fetch limit; `when` says what now. */
  #tooOften(what: string, when: string, fix: string): BrokerError {
    const limit = `at most ${this.#forcedFetches.burst} back to back, then one every ${formatDuration(this.#forcedFetches.intervalMs)}`;
    return new BrokerError('RATE_LIMITED', `${what} (${limit}); ${when}`, { profile: this.name, fix });
  }

  /** Wait ms on the cache's clock; a dispose (profile removed, daemon stopping) ends the wait. */
  #sleep(ms: number): Promise<void> {
    const signal = this.#abort.signal;
    return new Promise((resolve, reject) => {
      if (signal.aborted) return reject(signal.reason as Error);
      const onAbort = (): void => {
        timer.cancel();
        reject(signal.reason as Error);
      };
      const timer = this.#clock.setTimeout(() => {
        signal.removeEventListener('abort', onAbort);
        resolve();
      }, ms);
      signal.addEventListener('abort', onAbort, { once: true });
    });
  }

  /** Take one forced fetch from the limit: undefined when allowed, else how long until one is. */
  #forcedFetchWait(): number | undefined {
    const grant = this.#forcedFetches.take();
    if (grant.ok) return undefined;
    this.stats.forcedFetchesLimited++;
    return grant.retryInMs;
  }

  #fetch(reason: FetchReason): Promise<CacheEntry> {
    return this.#flight.run(this.#flightKey(), () => this.#fetchOnce(reason));
  }

  #flightKey(): string {
    return `${this.#key}@${this.#generation}`;
  }

  async #fetchOnce(reason: FetchReason): Promise<CacheEntry> {
    if (this.#disposed) throw new BrokerError('SHUTTING_DOWN', 'it is no longer served', { profile: this.name });
    this.stats.fetches++;
    const generation = this.#generation;
    const startedAt = this.#now();
    // The source was slow, not the daemon: say so, and what to change.
    const timeout = deadline(
      this.#clock,
      this.profile.timeoutMs,
      () =>
        new BrokerError(
          'TIMEOUT',
          `${this.#description} did not answer within ${formatDuration(this.profile.timeoutMs)} (the profile's timeout): the source is slow or stuck`,
          { fix: `check it, or raise timeout: for this profile (at most ${formatDuration(MAX_PROFILE_TIMEOUT_MS)})` },
        ),
    );
    const signal = AbortSignal.any([timeout.signal, this.#abort.signal]);
    try {
      const pending = this.#adapter.fetch(this.#ref, { signal, profile: this.name, reason, log: this.#log });
      const result = await abortable(pending, signal);
      this.#checkValue(result.value, 'returned');
      const t = this.#now();
      const { entry, changed } = this.#entryOf(result, t);
      if (generation !== this.#generation) {
        this.#log.info({ reason, ms: t - startedAt }, 'fetched after a forget: answering its waiters, not keeping it');
        return entry;
      }
      this.#keep(entry, startedAt);
      this.#log.info(
        {
          reason,
          ms: t - startedAt,
          ttlMs: entry.freshUntil - t,
          changed,
          version: result.version,
          ...(entry.expiry && { expiresInMs: entry.expiry.at - t, expiryFrom: entry.expiry.from }),
        },
        'fetched',
      );
      return entry;
    } catch (err) {
      const error = this.#toBrokerError(err);
      if (generation !== this.#generation) throw error;
      const t = this.#now();
      this.#lastFetch = { startedAt, endedAt: t, error };
      this.#failures++;
      // The backend's own Retry-After is a floor under our backoff, never a ceiling.
      const delay = Math.max(backoffDelay(this.#failures, REFRESH_BACKOFF, this.#random), error.retryAfterMs ?? 0);
      this.#retryAfter = t + delay;
      if (error.retryAfterMs !== undefined) this.#rateLimitedUntil = t + error.retryAfterMs;
      // Say what will happen next: a retry is scheduled only while a cached value is in use.
      if (this.#scheduleRetry(delay)) {
        this.#log.warn(
          { reason, ms: t - startedAt, err: error, retry: 'scheduled', retryInMs: delay },
          `fetch failed: retrying in ${formatDuration(delay)}`,
        );
      } else {
        this.#log.warn(
          { reason, ms: t - startedAt, err: error, retry: 'next-read' },
          'fetch failed: the next read fetches again',
        );
      }
      throw error;
    } finally {
      timeout.cancel();
    }
  }

  /**
   * Serve `value` from now on, as if the source had just returned it: `keybroker key set` wrote it
   * there and hands it over, so no fetch is spent (nor the forced-fetch limit). A fetch already
   * running started before the value changed: it still answers its waiters but is not kept.
   */
  install(value: SecretValue): { changed: boolean | null } {
    if (this.#disposed) throw new BrokerError('SHUTTING_DOWN', `profile "${this.name}" is no longer served`);
    this.#checkValue(value, 'was given');
    const t = this.#now();
    const { entry, changed } = this.#entryOf({ value }, t);
    this.#generation++;
    // The value is here: nothing to fetch, so a forget before it leaves no forced fetch owed.
    this.#forgotten = false;
    this.#keep(entry, t);
    this.#log.info({ ttlMs: entry.freshUntil - t, changed }, 'value installed (key set): no fetch');
    return { changed };
  }

  /** A value the cache may hold: text, not empty, one line unless the profile says multiline. */
  #checkValue(value: SecretValue, verb: 'returned' | 'was given'): void {
    if (value.byteLength === 0) throw new BrokerError('INVALID_VALUE', `${this.#description} ${verb} an empty value`);
    if (!value.isText())
      throw new BrokerError('INVALID_VALUE', `${this.#description} ${verb} bytes that are not UTF-8 text`);
    const lines = value.lineCount();
    if (lines > 1 && !this.profile.multiline) {
      // Claude Code would send every line as the key; a second line is almost always a command
      // that also printed a notice or a prompt on stdout.
      throw new BrokerError('INVALID_VALUE', `${this.#description} ${verb} ${lines} lines, and a key is one line`, {
        fix: 'make the source print only the key, or set multiline: true on the profile if the value really spans lines (a PEM key, a JSON document)',
      });
    }
  }

  /** The cache entry for a value got at `t`; `changed` compares it with the one held (null: none). */
  #entryOf(
    result: Pick<FetchResult, 'value' | 'ttlMs' | 'expiresAt' | 'issuedAt' | 'version'>,
    t: number,
  ): { entry: CacheEntry; changed: boolean | null } {
    const expiry = expiryOf(result.value, result);
    if (expiry && expiry.at <= t) throw alreadyExpiredError(this.#description, expiry, t);
    let ttl = this.profile.ttlMs;
    if (result.ttlMs !== undefined && Number.isFinite(result.ttlMs))
      ttl = Math.min(ttl, Math.max(result.ttlMs, MIN_TTL_MS));
    this.#served?.add(result.value);
    const { freshUntil, staleUntil } = entryTimes(t, ttl, this.profile.maxStaleMs, expiry);
    const previous = this.#entry();
    const entry: CacheEntry = {
      value: result.value,
      fetchedAt: t,
      freshUntil,
      staleUntil,
      version: result.version,
      expiry,
    };
    return { entry, changed: previous ? !previous.value.equals(result.value) : null };
  }

  /** Hold `entry` as the current value: the source answers again, refresh-ahead is scheduled. */
  #keep(entry: CacheEntry, startedAt: number): void {
    const t = entry.fetchedAt;
    this.#store.set(this.#key, entry, 0);
    this.#scheduleDrop(entry);
    this.#failures = 0;
    this.#retryAfter = -Infinity;
    this.#rateLimitedUntil = -Infinity;
    this.#valueExpiry = entry.expiry;
    this.#lastFetch = { startedAt, endedAt: t, entry };
    if (this.#rejection && rejectionKey(entry.value) !== this.#rejection.key) {
      this.#log.info('a new value replaces the one that was rejected');
      this.#rejection = undefined;
    }
    this.#scheduleRefreshAhead(entry);
  }

  /**
   * What an adapter threw, fit for a reply, status and the log. Its message may quote a child's
   * stderr or a backend's text, which may hold a value this daemon serves (any profile) or
   * something key-shaped: both are redacted here, the one place every fetch error passes.
   */
  #toBrokerError(err: unknown): BrokerError {
    if (err instanceof BrokerError) {
      const message = redactText(err.message, this.#served);
      return message === err.message ? err : err.with({ message });
    }
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

  /** Retry in the background while a cached value is being served; true when one is scheduled. */
  #scheduleRetry(delay: number): boolean {
    const entry = this.#entry();
    if (!entry || this.#disposed) return false;
    if (this.#now() + delay >= entry.staleUntil) return false;
    if (this.#now() - this.#lastReadAt >= entry.freshUntil - entry.fetchedAt) return false;
    this.#setTimer(delay, () => {
      this.#fetch('retry').catch(() => {});
    });
    return true;
  }

  #setTimer(delayMs: number, fn: () => void): void {
    this.#timer?.cancel();
    if (this.#disposed) return;
    this.#timer = this.#clock.setTimeout(fn, delayMs);
  }
}
