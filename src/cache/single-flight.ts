// Concurrent callers asking for the same key share one in-flight call (Vault Agent does the same
// for identical cache misses): N shims asking for a cold profile cause one backend fetch.
export class SingleFlight<T> {
  readonly #inflight = new Map<string, Promise<T>>();

  /** Run fn for key unless a call for key is already running; either way, share its outcome. */
  run(key: string, fn: () => Promise<T>): Promise<T> {
    const current = this.#inflight.get(key);
    if (current) return current;
    const promise = (async () => {
      try {
        return await fn();
      } finally {
        this.#inflight.delete(key);
      }
    })();
    this.#inflight.set(key, promise);
    return promise;
  }

  inflight(key: string): boolean {
    return this.#inflight.has(key);
  }

  /** Every call still running, for a graceful shutdown. */
  pending(): Promise<T>[] {
    return [...this.#inflight.values()];
  }
}
