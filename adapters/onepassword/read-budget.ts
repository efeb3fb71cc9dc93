// Reads per token per hour. 1Password limits service accounts per token and per hour (Teams and
// Families 1,000 reads, Business 10,000); going over fails every read of that token until the
// window resets. So background refreshes (which nobody is waiting for) stop once the last hour's
// reads reach their share, and pause after 1Password itself says "rate limited"; reads someone is
// waiting for always go out.
//
// Counts live in 60 one-minute buckets: memory stays constant however many reads there are, and
// the window slides with a minute's resolution.

export interface ReadBudgetOptions {
  readsPerHour: number;
  backgroundReadsPerHour: number;
  now: () => number;
  random: () => number;
}

export type BackgroundRefusal =
  { why: 'budget'; reads: number; limit: number } | { why: 'rate-limited'; retryInMs: number };

const MINUTE_MS = 60_000;
const WINDOW_MINUTES = 60;
/** After a RateLimitExceeded: pause background reads this long, doubling per repeat, capped. */
export const RATE_LIMIT_PAUSE = { baseMs: 60_000, capMs: 15 * 60_000, jitter: 0.2 };

interface Bucket {
  minute: number;
  reads: number;
  refused: number;
}

export class ReadBudget {
  readonly readsPerHour: number;
  readonly backgroundReadsPerHour: number;
  readonly #now: () => number;
  readonly #random: () => number;
  readonly #buckets: Bucket[] = Array.from({ length: WINDOW_MINUTES }, () => ({ minute: -1, reads: 0, refused: 0 }));
  #pausedUntil = -Infinity;
  #rateLimitStrikes = 0;

  constructor(options: ReadBudgetOptions) {
    this.readsPerHour = options.readsPerHour;
    this.backgroundReadsPerHour = options.backgroundReadsPerHour;
    this.#now = options.now;
    this.#random = options.random;
  }

  /** `n` references went to 1Password. */
  record(n: number): void {
    this.#bucket().reads += n;
  }

  readsLastHour(): number {
    return this.#sum('reads');
  }

  refusedLastHour(): number {
    return this.#sum('refused');
  }

  /**
   * Whether a background read may go out, counting `queued` reads already waiting to be sent.
   * A refusal is counted, for status.
   */
  refuseBackground(queued: number): BackgroundRefusal | undefined {
    const t = this.#now();
    let refusal: BackgroundRefusal | undefined;
    if (t < this.#pausedUntil) refusal = { why: 'rate-limited', retryInMs: this.#pausedUntil - t };
    else {
      const reads = this.readsLastHour();
      if (reads + queued >= this.backgroundReadsPerHour)
        refusal = { why: 'budget', reads, limit: this.backgroundReadsPerHour };
    }
    if (refusal) this.#bucket().refused++;
    return refusal;
  }

  /** 1Password said RateLimitExceeded: pause background reads (capped, jittered backoff). */
  noteRateLimited(): number {
    this.#rateLimitStrikes++;
    const exp = RATE_LIMIT_PAUSE.baseMs * 2 ** Math.min(this.#rateLimitStrikes - 1, 20);
    const capped = Math.min(exp, RATE_LIMIT_PAUSE.capMs);
    const spread = capped * RATE_LIMIT_PAUSE.jitter;
    const pause = Math.round(capped - spread + this.#random() * 2 * spread);
    this.#pausedUntil = this.#now() + pause;
    return pause;
  }

  noteSuccess(): void {
    this.#rateLimitStrikes = 0;
  }

  /** Milliseconds until background reads resume after a rate limit, or 0. */
  pausedForMs(): number {
    return Math.max(0, this.#pausedUntil - this.#now());
  }

  #bucket(): Bucket {
    const minute = Math.floor(this.#now() / MINUTE_MS);
    const b = this.#buckets[minute % WINDOW_MINUTES]!;
    if (b.minute !== minute) {
      b.minute = minute;
      b.reads = 0;
      b.refused = 0;
    }
    return b;
  }

  #sum(key: 'reads' | 'refused'): number {
    const minute = Math.floor(this.#now() / MINUTE_MS);
    let total = 0;
    for (const b of this.#buckets) if (b.minute > minute - WINDOW_MINUTES && b.minute <= minute) total += b[key];
    return total;
  }
}
