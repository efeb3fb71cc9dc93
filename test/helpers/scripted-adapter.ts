// A source whose answers a test scripts: the cache layer's tests need a backend they can slow down,
// fail and rotate at will. (The real adapters are tested against their own backends or fakes.)
import type { Adapter, FetchContext, FetchResult } from '../../src/adapter.js';
import { BrokerError } from '../../src/errors.js';
import { SecretValue } from '../../src/secret.js';

export type Answer =
  string | BrokerError | Error | { value: string; ttlMs?: number; expiresAt?: number; issuedAt?: number };

export class ScriptedSource {
  value: Answer = 'sk-initial';
  /** Milliseconds each fetch takes (runs on the test's clock, fake or real). */
  delayMs = 0;
  fetches = 0;
  reasons: string[] = [];
  signals: AbortSignal[] = [];
  /** Ignore the abort signal, like a badly behaved SDK. */
  ignoreSignal = false;

  adapter(): Adapter<string> {
    return {
      kind: 'scripted',
      parse: (uri) => uri,
      describe: () => 'scripted:test',
      fetch: (_ref, ctx) => this.#fetch(ctx),
      close: async () => {},
    };
  }

  async #fetch(ctx: FetchContext): Promise<FetchResult> {
    this.fetches++;
    this.reasons.push(ctx.reason);
    this.signals.push(ctx.signal);
    if (this.delayMs > 0) {
      await new Promise<void>((resolve, reject) => {
        const t = setTimeout(resolve, this.delayMs);
        if (!this.ignoreSignal) {
          ctx.signal.addEventListener('abort', () => {
            clearTimeout(t);
            reject(ctx.signal.reason);
          });
        }
      });
    }
    const answer = this.value;
    if (answer instanceof Error) throw answer;
    if (typeof answer === 'string') return { value: SecretValue.fromString(answer) };
    const result: FetchResult = { value: SecretValue.fromString(answer.value) };
    if (answer.ttlMs !== undefined) result.ttlMs = answer.ttlMs;
    if (answer.expiresAt !== undefined) result.expiresAt = answer.expiresAt;
    if (answer.issuedAt !== undefined) result.issuedAt = answer.issuedAt;
    return result;
  }
}
