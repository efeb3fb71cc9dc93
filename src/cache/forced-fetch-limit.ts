// How often a profile may be fetched on demand: explicit refreshes (`--refresh`, `keybroker
// refresh`, `{"refresh":true}`) and suspected rejections, whose consumer info is only what the
// client claims. Each costs a backend read, and a loop of them could drain a 1Password service
// account's hourly read budget or run up AWS costs in seconds. A token bucket: a burst of a few
// (someone rotates a key and refreshes at once, maybe twice), then one per interval.
export interface ForcedFetchLimitOptions {
  /** Forced fetches allowed back to back. */
  burst: number;
  /** One more forced fetch is allowed per this interval, up to `burst`. */
  intervalMs: number;
  now: () => number;
}

export const FORCED_FETCH_BURST = 3;
export const FORCED_FETCH_INTERVAL_MS = 10_000;

export type ForcedFetchGrant = { ok: true } | { ok: false; retryInMs: number };

export class ForcedFetchLimit {
  readonly burst: number;
  readonly intervalMs: number;
  readonly #now: () => number;
  #tokens: number;
  #updatedAt: number;

  constructor(options: ForcedFetchLimitOptions) {
    if (!(options.burst >= 1) || !(options.intervalMs > 0))
      throw new RangeError('ForcedFetchLimit needs burst >= 1 and intervalMs > 0');
    this.burst = options.burst;
    this.intervalMs = options.intervalMs;
    this.#now = options.now;
    this.#tokens = options.burst;
    this.#updatedAt = options.now();
  }

  /** Take one forced fetch, or say how long until one is allowed. */
  take(): ForcedFetchGrant {
    const t = this.#now();
    this.#tokens = Math.min(this.burst, this.#tokens + Math.max(0, t - this.#updatedAt) / this.intervalMs);
    this.#updatedAt = t;
    if (this.#tokens >= 1) {
      this.#tokens -= 1;
      return { ok: true };
    }
    return { ok: false, retryInMs: Math.ceil((1 - this.#tokens) * this.intervalMs) };
  }
}
