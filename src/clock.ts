// The one clock: what time it is, and "call me back in ms". Everything that schedules (the cache's
// refresh-ahead and retries, Vault's token renewal, 1Password's batch window) takes a Clock, so a
// test moves time by hand instead of sleeping.
import { MAX_DURATION_MS } from './duration.js';

export interface ClockTimer {
  cancel(): void;
}

export interface Clock {
  now(): number;
  /** Run fn after ms; the timer must not keep the process alive. */
  setTimeout(fn: () => void, ms: number): ClockTimer;
}

export const systemClock: Clock = {
  now: () => Date.now(),
  setTimeout(fn, ms) {
    // Node fires a delay past MAX_DURATION_MS at once; clamp it instead.
    const t = setTimeout(fn, Math.min(Math.max(0, ms), MAX_DURATION_MS));
    t.unref();
    return { cancel: () => clearTimeout(t) };
  },
};

export interface Deadline {
  /** Aborts with the deadline's reason once it passes. */
  signal: AbortSignal;
  /** The work finished first: drop the timer. */
  cancel(): void;
}

/**
 * AbortSignal.timeout on an injectable clock, cancellable: race work against it with abortable()
 * (src/adapter.ts) or hand its signal down, and cancel() once the work is done.
 */
export function deadline(clock: Clock, ms: number, reason: () => unknown): Deadline {
  const controller = new AbortController();
  const timer = clock.setTimeout(() => controller.abort(reason()), ms);
  return { signal: controller.signal, cancel: () => timer.cancel() };
}
