// Capped exponential backoff with jitter: for retrying a failing source in the background, and for
// a client retrying a full listen backlog. In protocol/ because the shim may import nothing else.
export interface BackoffOptions {
  baseMs: number;
  capMs: number;
  /** Fraction of the delay to randomise, 0..1. */
  jitter: number;
}

export const REFRESH_BACKOFF: BackoffOptions = { baseMs: 5_000, capMs: 5 * 60_000, jitter: 0.2 };
/** A full listen backlog clears in milliseconds once the daemon accepts again. */
export const CONNECT_BACKOFF: BackoffOptions = { baseMs: 5, capMs: 100, jitter: 0.5 };

/** Delay before retry number `attempt` (1 = first retry). `random` returns [0, 1). */
export function backoffDelay(attempt: number, options: BackoffOptions, random: () => number = Math.random): number {
  const exp = options.baseMs * 2 ** Math.min(Math.max(attempt - 1, 0), 30);
  const capped = Math.min(exp, options.capMs);
  const spread = capped * options.jitter;
  return Math.max(0, Math.round(capped - spread + random() * 2 * spread));
}
