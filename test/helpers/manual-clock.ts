// Time for tests, moved by hand: no sleeps, no vitest fake timers leaking into real sockets.
import type { Clock, ClockTimer } from '../../src/clock.js';

/**
 * A clock a test moves by hand: implements src/clock.ts's Clock (for the cache, Vault's token
 * renewal, 1Password's batch window) and can drive a fake server's notion of time too.
 */
export class ManualClock implements Clock {
  #now: number;
  readonly #tick: number;
  #timers: Array<{ at: number; fn: () => void; seq: number; cancelled: boolean }> = [];
  #seq = 0;

  /** `tick`: every reading of the clock moves it this many ms on, as time passes during real work. */
  constructor(start = Date.parse('2030-01-01T00:00:00Z'), tick = 0) {
    this.#now = start;
    this.#tick = tick;
  }

  now = (): number => {
    const t = this.#now;
    this.#now += this.#tick;
    return t;
  };

  setTimeout = (fn: () => void, ms: number): ClockTimer => {
    const timer = { at: this.#now + Math.max(0, ms), fn, seq: this.#seq++, cancelled: false };
    this.#timers.push(timer);
    return { cancel: () => (timer.cancelled = true) };
  };

  /** Timers not yet fired or cancelled, earliest first (their due times). */
  pending(): number[] {
    return this.#timers
      .filter((t) => !t.cancelled)
      .map((t) => t.at)
      .sort((a, b) => a - b);
  }

  /** Move time forward, firing every timer that falls due, in order. */
  advance(ms: number): void {
    const target = this.#now + ms;
    for (;;) {
      const due = this.#timers
        .filter((t) => !t.cancelled && t.at <= target)
        .sort((a, b) => a.at - b.at || a.seq - b.seq)[0];
      if (!due) break;
      due.cancelled = true;
      this.#now = Math.max(this.#now, due.at);
      due.fn();
    }
    this.#now = target;
    this.#timers = this.#timers.filter((t) => !t.cancelled);
  }
}
