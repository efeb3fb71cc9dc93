// Fetches that fall due together go out as one resolveAll. The first reference queued opens a
// window (a few ms); every reference queued before it closes joins the same call. The same
// reference asked for twice (two profiles, or a read joining a refresh) is sent once, and a
// reference already on its way joins that call instead of costing another read.
//
// Each caller waits under its own AbortSignal: a caller that gives up is released at once, and a
// reference nobody waits for any more is dropped from the batch before it is sent.
import { abortable, type Clock, type ClockTimer } from '../../src/adapter.js';
import { asBrokerError, BrokerError } from '../../src/errors.js';

export interface ResolveBatcherOptions<T> {
  windowMs: number;
  maxBatch: number;
  /** Times the window; tests pass a manual clock. */
  clock: Clock;
  /** Resolve these references (unique, at most maxBatch); one entry per reference. */
  send(references: string[]): Promise<Map<string, T>>;
}

interface Pending<T> {
  promise: Promise<T>;
  resolve(value: T): void;
  reject(err: unknown): void;
  waiters: number;
}

export class ResolveBatcher<T> {
  readonly #options: ResolveBatcherOptions<T>;
  readonly #queue = new Map<string, Pending<T>>();
  readonly #inflight = new Map<string, Promise<T>>();
  #timer: ClockTimer | undefined;
  #closed: BrokerError | undefined;
  readonly stats = { calls: 0, references: 0 };

  constructor(options: ResolveBatcherOptions<T>) {
    this.#options = options;
  }

  /** True when asking for `reference` now costs no extra read. */
  has(reference: string): boolean {
    return this.#queue.has(reference) || this.#inflight.has(reference);
  }

  /** References waiting for the window to close. */
  get queued(): number {
    return this.#queue.size;
  }

  resolve(reference: string, signal: AbortSignal): Promise<T> {
    if (this.#closed) return Promise.reject(this.#closed);
    if (signal.aborted) return Promise.reject(abortError(signal));
    const inflight = this.#inflight.get(reference);
    if (inflight) return waitUnder(inflight, signal, () => {});
    let pending = this.#queue.get(reference);
    if (!pending) {
      pending = deferred<T>();
      this.#queue.set(reference, pending);
      this.#schedule();
    }
    const entry = pending;
    entry.waiters++;
    return waitUnder(entry.promise, signal, () => {
      entry.waiters--;
      if (entry.waiters === 0 && this.#queue.get(reference) === entry) {
        this.#queue.delete(reference);
        if (this.#queue.size === 0) this.#clearTimer();
      }
    });
  }

  /** Fail everything still queued; calls already sent settle on their own. */
  close(reason: BrokerError): void {
    this.#closed = reason;
    this.#clearTimer();
    for (const pending of this.#queue.values()) pending.reject(reason);
    this.#queue.clear();
  }

  #schedule(): void {
    if (this.#queue.size >= this.#options.maxBatch) {
      this.#flush();
      return;
    }
    if (this.#timer) return;
    this.#timer = this.#options.clock.setTimeout(() => this.#flush(), this.#options.windowMs);
  }

  #clearTimer(): void {
    this.#timer?.cancel();
    this.#timer = undefined;
  }

  #flush(): void {
    this.#clearTimer();
    while (this.#queue.size > 0) {
      const batch = new Map<string, Pending<T>>();
      for (const [reference, pending] of this.#queue) {
        if (batch.size >= this.#options.maxBatch) break;
        batch.set(reference, pending);
      }
      for (const reference of batch.keys()) this.#queue.delete(reference);
      this.#sendBatch(batch);
    }
  }

  #sendBatch(batch: Map<string, Pending<T>>): void {
    const references = [...batch.keys()];
    for (const [reference, pending] of batch) this.#inflight.set(reference, pending.promise);
    this.stats.calls++;
    this.stats.references += references.length;
    const done = (): void => {
      for (const [reference, pending] of batch)
        if (this.#inflight.get(reference) === pending.promise) this.#inflight.delete(reference);
    };
    let sent: Promise<Map<string, T>>;
    try {
      sent = this.#options.send(references);
    } catch (err) {
      sent = Promise.reject(err);
    }
    sent.then(
      (results) => {
        done();
        for (const [reference, pending] of batch) {
          if (results.has(reference)) pending.resolve(results.get(reference)!);
          else pending.reject(new BrokerError('SOURCE_ERROR', `1Password's answer left out ${reference}`));
        }
      },
      (err: unknown) => {
        done();
        for (const pending of batch.values()) pending.reject(err);
      },
    );
  }
}

function deferred<T>(): Pending<T> {
  let resolve!: (value: T) => void;
  let reject!: (err: unknown) => void;
  const promise = new Promise<T>((res, rej) => {
    resolve = res;
    reject = rej;
  });
  // Nobody may be waiting any more when it fails (every caller gave up): not an unhandled rejection.
  promise.catch(() => {});
  return { promise, resolve, reject, waiters: 0 };
}

/** Settle with `promise`, or reject as soon as `signal` aborts (after calling onAbort). */
function waitUnder<T>(promise: Promise<T>, signal: AbortSignal, onAbort: () => void): Promise<T> {
  return abortable(promise, signal, (s) => {
    onAbort();
    return abortError(s);
  });
}

export function abortError(signal: AbortSignal): BrokerError {
  return asBrokerError(signal.reason, 'TIMEOUT', 'stopped waiting for 1Password before it answered');
}
