// Who read which value, and when: the basis for inferring that a consumer's key was rejected.
//
// Claude Code calls apiKeyHelper at start-up, after its helper TTL (default 5 min), when its
// settings change, and at once after an HTTP 401; Codex runs its provider's auth command at
// start-up, after refresh_interval_ms, and at once after a 401. So a second request from the same
// agent process well before its TTL has run out most likely means the key it holds got a 401.
// See ../../../shared/claude-code.md, ../../../shared/codex.md, and "Key rejection" in
// docs/claude-code.md and docs/codex.md.
import { agentOf, type ConsumerInfo } from '../protocol/messages.js';
import type { SecretValue } from '../secret.js';
import type { RepeatDetection } from '../config/schema.js';

export const DEFAULT_HELPER_TTL_MS = 5 * 60_000;
/** A repeat sooner than this fraction of the consumer's helper TTL counts as a suspected rejection. */
export const EARLY_FRACTION = 0.8;
/** Records idle longer than this are forgotten. */
const MAX_IDLE_MS = 2 * 60 * 60_000;

/** What the repeat rule remembers about one consumer: the value it was last handed, and when. */
export interface ConsumerRecord {
  key: string;
  name: string | undefined;
  servedAt: number;
  /** The value last handed to this consumer, and its source version label. */
  value: SecretValue;
  version: string | undefined;
  /** When a suspected rejection of `value` was answered by serving it once more. */
  strikeAt: number | undefined;
  /** The consumer's Claude Code settings files' newest mtime at that request, when its shim said. */
  settingsMtimeMs: number | undefined;
}

interface Seen {
  name: string | undefined;
  seenAt: number;
  /** The last time this consumer was a Claude Code process left out of repeat detection for lack of a marker. */
  unmarkedAt: number;
  /** Only from requests the repeat rule applies to; other reads must not look like a first call. */
  repeat: ConsumerRecord | undefined;
}

export function consumerKey(consumer: ConsumerInfo): string {
  return `${consumer.pid}:${consumer.start ?? ''}`;
}

/**
 * Does this profile apply the repeat rule to this request? Under `agents`, only to an agent CLI's
 * key command (Claude Code's apiKeyHelper, Codex's auth command); under `claude-code`, only to
 * Claude Code's. Under `always`, to every caller except the two that are known not to be
 * reporting a 401: the agent's own tool runs and sibling helpers (`--format`), which the agent
 * runs on their own schedules. An unmarked agent consumer counts under `always` only.
 */
export function detectsRepeats(detection: RepeatDetection, consumer: ConsumerInfo): boolean {
  if (detection === 'off') return false;
  if (detection === 'always') return consumer.invocation !== 'agent-tool' && consumer.invocation !== 'sibling-helper';
  const agent = agentOf(consumer);
  if (agent === undefined || consumer.invocation !== 'api-key-helper') return false;
  return detection === 'agents' || agent === detection;
}

/**
 * Is this request an early repeat, one that would suggest the value last served was rejected?
 * (See settingsChanged for the repeat that does not.)
 */
export function isEarlyRepeat(
  record: ConsumerRecord | undefined,
  consumer: ConsumerInfo,
  detection: RepeatDetection,
  now: number,
): record is ConsumerRecord {
  if (!record || !detectsRepeats(detection, consumer)) return false;
  const helperTtl = consumer.helperTtlMs && consumer.helperTtlMs > 0 ? consumer.helperTtlMs : DEFAULT_HELPER_TTL_MS;
  return now - record.servedAt < helperTtl * EARLY_FRACTION;
}

/**
 * Claude Code drops its cached key and runs apiKeyHelper again whenever one of its settings files
 * changes — Claude Code itself writes the theme into ~/.claude/settings.json during a new user's
 * first session, and permission rules into .claude/settings.local.json — not only after a 401
 * (measured on 2.1.332: docs/claude-code.md). So a repeat is explained without a rejection when
 * the settings files changed between the consumer's previous call and this one. Both calls must
 * carry the mtime (a shim that does not: judged as before). A comparison, not a clock: a file
 * dated by another clock cannot excuse more than the one repeat its change brings.
 */
export function settingsChanged(record: ConsumerRecord, consumer: ConsumerInfo): boolean {
  return (
    record.settingsMtimeMs !== undefined &&
    consumer.settingsMtimeMs !== undefined &&
    record.settingsMtimeMs !== consumer.settingsMtimeMs
  );
}

/** Bounded LRU of consumers for one profile. */
export class ConsumerTracker {
  readonly #records = new Map<string, Seen>();
  readonly #max: number;

  constructor(maxRecords = 1024) {
    this.#max = maxRecords;
  }

  /** The repeat rule's record for this consumer, if a request it applies to was served. */
  lookup(consumer: ConsumerInfo): ConsumerRecord | undefined {
    return this.#records.get(consumerKey(consumer))?.repeat;
  }

  /**
   * Record that `value` (source version label `version`) was handed to `consumer`. `repeats`: the
   * repeat rule applies to this request, so it becomes the one a next call is compared with;
   * `unmarked`: it would have, had the consumer shown its invocation marker. A new value clears an
   * earlier strike.
   */
  served(
    consumer: ConsumerInfo,
    value: SecretValue,
    version: string | undefined,
    now: number,
    how: { repeats: boolean; unmarked: boolean },
  ): void {
    const { repeats } = how;
    const key = consumerKey(consumer);
    const prev = this.#records.get(key);
    let repeat = prev?.repeat;
    if (repeats) {
      const strikeAt = repeat && repeat.value.equals(value) ? repeat.strikeAt : undefined;
      const { settingsMtimeMs } = consumer;
      repeat = { key, name: consumer.name, servedAt: now, value, version, strikeAt, settingsMtimeMs };
    }
    const unmarkedAt = how.unmarked ? now : (prev?.unmarkedAt ?? -Infinity);
    this.#records.delete(key);
    this.#records.set(key, { name: consumer.name, seenAt: now, unmarkedAt, repeat });
    this.#prune(now);
  }

  /** Record that `consumer` asked for this profile, whether or not it gets a value (status counts it). */
  asked(consumer: ConsumerInfo, now: number): void {
    const key = consumerKey(consumer);
    const prev = this.#records.get(key);
    this.#records.delete(key);
    this.#records.set(key, {
      name: consumer.name,
      seenAt: now,
      unmarkedAt: prev?.unmarkedAt ?? -Infinity,
      repeat: prev?.repeat,
    });
    this.#prune(now);
  }

  /** Forget every record (and so every value handed out): `keybroker forget`. */
  clear(): void {
    this.#records.clear();
  }

  strike(consumer: ConsumerInfo, now: number): void {
    const record = this.#records.get(consumerKey(consumer))?.repeat;
    if (record) record.strikeAt = now;
  }

  /** Consumers that asked for this profile within the last `withinMs`, served or not. */
  count(now: number, withinMs = 60 * 60_000): number {
    let n = 0;
    for (const r of this.#records.values()) if (now - r.seenAt <= withinMs) n++;
    return n;
  }

  /** Claude Code consumers seen without a known invocation marker within the last `withinMs`. */
  countUnmarked(now: number, withinMs = 60 * 60_000): number {
    let n = 0;
    for (const r of this.#records.values()) if (now - r.unmarkedAt <= withinMs) n++;
    return n;
  }

  #prune(now: number): void {
    for (const [key, r] of this.#records) {
      if (this.#records.size <= this.#max && now - r.seenAt <= MAX_IDLE_MS) break;
      this.#records.delete(key);
    }
  }
}
