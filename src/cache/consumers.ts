// Who read which value, and when: the basis for inferring that a consumer's key was rejected.
//
// Claude Code calls apiKeyHelper at start-up, after its helper TTL (default 5 min), when its
// settings change, and at once after an HTTP 401. So a second request from the same Claude Code
// process well before its TTL has run out most likely means the key it holds got a 401.
// See ../../../shared/claude-code.md and the README's "Key rejection" section.
import type { ConsumerInfo } from '../protocol/messages.js';
import type { SecretValue } from '../secret.js';
import type { RepeatDetection } from '../config/schema.js';

export const DEFAULT_HELPER_TTL_MS = 5 * 60_000;
/** A repeat sooner than this fraction of the consumer's helper TTL counts as a suspected rejection. */
export const EARLY_FRACTION = 0.8;
/** Records idle longer than this are forgotten. */
const MAX_IDLE_MS = 2 * 60 * 60_000;

export interface ConsumerRecord {
  key: string;
  name: string | undefined;
  servedAt: number;
  /** The value last handed to this consumer. */
  value: SecretValue;
  /** When a suspected rejection of `value` was answered by serving it once more. */
  strikeAt: number | undefined;
}

export function consumerKey(consumer: ConsumerInfo): string {
  return `${consumer.pid}:${consumer.start ?? ''}`;
}

/** Does this profile apply the repeat rule to this consumer? */
export function detectsRepeats(detection: RepeatDetection, consumer: ConsumerInfo): boolean {
  return detection === 'always' || (detection === 'claude-code' && consumer.claudeCode);
}

/** Is this request a repeat that suggests the value last served was rejected? */
export function isSuspectedRejection(
  record: ConsumerRecord | undefined,
  consumer: ConsumerInfo,
  detection: RepeatDetection,
  now: number,
): record is ConsumerRecord {
  if (!record || !detectsRepeats(detection, consumer)) return false;
  const helperTtl = consumer.helperTtlMs && consumer.helperTtlMs > 0 ? consumer.helperTtlMs : DEFAULT_HELPER_TTL_MS;
  return now - record.servedAt < helperTtl * EARLY_FRACTION;
}

/** Bounded LRU of consumer records for one profile. */
export class ConsumerTracker {
  readonly #records = new Map<string, ConsumerRecord>();
  readonly #max: number;

  constructor(maxRecords = 1024) {
    this.#max = maxRecords;
  }

  lookup(consumer: ConsumerInfo): ConsumerRecord | undefined {
    return this.#records.get(consumerKey(consumer));
  }

  /** Record that `value` was handed to `consumer`. A new value clears an earlier strike. */
  served(consumer: ConsumerInfo, value: SecretValue, now: number): void {
    const key = consumerKey(consumer);
    const prev = this.#records.get(key);
    const strikeAt = prev && prev.value.equals(value) ? prev.strikeAt : undefined;
    this.#records.delete(key);
    this.#records.set(key, { key, name: consumer.name, servedAt: now, value, strikeAt });
    this.#prune(now);
  }

  strike(consumer: ConsumerInfo, now: number): void {
    const record = this.#records.get(consumerKey(consumer));
    if (record) record.strikeAt = now;
  }

  /** Consumers that read this profile within the last `withinMs`. */
  count(now: number, withinMs = 60 * 60_000): number {
    let n = 0;
    for (const r of this.#records.values()) if (now - r.servedAt <= withinMs) n++;
    return n;
  }

  #prune(now: number): void {
    for (const [key, r] of this.#records) {
      if (this.#records.size <= this.#max && now - r.servedAt <= MAX_IDLE_MS) break;
      this.#records.delete(key);
    }
  }
}
