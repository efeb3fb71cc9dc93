// The cache layer's time logic, on fake timers: TTL, refresh-ahead, single-flight, stale-if-error,
// timeouts and the repeat/401 inference.
import NodeCache from 'node-cache';
import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest';
import { ProfileCache } from '../../src/cache/profile-cache.js';
import type { ResolvedProfile } from '../../src/config/load.js';
import { DEFAULTS, type RepeatDetection } from '../../src/config/schema.js';
import { BrokerError } from '../../src/errors.js';
import { createLogger } from '../../src/log.js';
import type { ConsumerInfo } from '../../src/protocol/messages.js';
import { SecretValue } from '../../src/secret.js';
import { makeJwt } from '../helpers/jwt.js';
import { ManualClock } from '../helpers/manual-clock.js';
import { ScriptedSource } from '../helpers/scripted-adapter.js';

const log = createLogger({ level: 'silent' });

function profile(overrides: Partial<ResolvedProfile> = {}): ResolvedProfile {
  const p = {
    name: 'work',
    source: 'scripted:test',
    scheme: 'scripted',
    ttlMs: 60_000,
    maxStaleMs: 120_000,
    timeoutMs: 8_000,
    repeatDetection: 'claude-code' as const,
    output: 'text' as const,
    settings: undefined,
    overrides: undefined,
    ...overrides,
  };
  return { ...p, fingerprint: JSON.stringify(p) };
}

let store: NodeCache;
let source: ScriptedSource;

function cacheFor(
  overrides: Partial<ResolvedProfile> = {},
  random = () => 0.5,
  limit: { forcedFetchBurst?: number; forcedFetchIntervalMs?: number } = {},
): ProfileCache {
  return new ProfileCache({
    profile: profile(overrides),
    adapter: source.adapter(),
    ref: 'scripted:test',
    store,
    log,
    random,
    ...limit,
  });
}

/** Settle a promise under fake timers, advancing time until it does. */
async function settle<T>(promise: Promise<T>, stepMs = 100, maxMs = 60_000): Promise<T> {
  let done = false;
  const tracked = promise.finally(() => (done = true));
  tracked.catch(() => {});
  for (let t = 0; !done && t < maxMs; t += stepMs) await vi.advanceTimersByTimeAsync(stepMs);
  return tracked;
}

const claude = (pid: number, helperTtlMs = 300_000): ConsumerInfo => ({
  pid,
  start: '1',
  name: 'claude',
  claudeCode: true,
  invocation: 'api-key-helper',
  helperTtlMs,
});
const claudeAs = (pid: number, invocation: NonNullable<ConsumerInfo['invocation']>): ConsumerInfo => ({
  ...claude(pid),
  invocation,
});
const script = (pid: number): ConsumerInfo => ({ pid, start: '1', name: 'python3', claudeCode: false });
const codex = (pid: number, invocation: NonNullable<ConsumerInfo['invocation']> = 'api-key-helper'): ConsumerInfo => ({
  pid,
  start: '1',
  name: 'codex',
  claudeCode: false,
  agent: 'codex',
  invocation,
  helperTtlMs: 300_000,
});

beforeEach(() => {
  vi.useFakeTimers({ now: new Date('2026-01-01T00:00:00Z') });
  store = new NodeCache({ useClones: false, checkperiod: 0 });
  source = new ScriptedSource();
});
afterEach(() => {
  store.close();
  vi.useRealTimers();
});

describe('TTL', () => {
  it('fetches on a miss and serves from memory until the TTL runs out', async () => {
    const cache = cacheFor();
    expect((await cache.get()).value.reveal()).toBe('sk-initial');
    source.value = 'sk-rotated';
    await vi.advanceTimersByTimeAsync(30_000);
    expect((await cache.get()).value.reveal()).toBe('sk-initial');
    expect(source.fetches).toBe(1);
    expect(cache.status()).toMatchObject({ hits: 1, misses: 1, state: 'fresh' });
  });

  it('serves a value rotated at the source once the TTL has run out', async () => {
    const cache = cacheFor();
    await cache.get();
    source.value = 'sk-rotated';
    await vi.advanceTimersByTimeAsync(61_000);
    expect((await cache.get()).value.reveal()).toBe('sk-rotated');
  });

  it('caps the TTL at what the backend reports (a lease)', async () => {
    source.value = { value: 'sk-lease', ttlMs: 5_000 };
    const cache = cacheFor();
    const served = await cache.get();
    expect(served.freshUntil - Date.now()).toBe(5_000);
    await vi.advanceTimersByTimeAsync(5_001);
    await cache.get();
    expect(source.fetches).toBe(2);
  });
});

describe('one clock', () => {
  /** Move the manual clock by steps, letting the fetches its timers start settle in between. */
  async function advance(clock: ManualClock, ms: number, stepMs = 1_000): Promise<void> {
    for (let left = ms; left > 0; left -= stepMs) {
      clock.advance(Math.min(stepMs, left));
      await new Promise((resolve) => setImmediate(resolve));
    }
  }

  // The injected clock alone decides when a value is fresh, stale and gone from memory: moving
  // it makes the entry leave the store, though Date.now (real here) has hardly moved.
  it('drops the value from the store at its stale limit by the injected clock', async () => {
    vi.useRealTimers();
    const clock = new ManualClock();
    const cache = new ProfileCache({ profile: profile(), adapter: source.adapter(), ref: 'x', store, log, clock });
    await cache.get();
    source.value = new BrokerError('UNAVAILABLE', 'backend down');
    await advance(clock, 61_000);
    expect((await cache.get()).outcome).toBe('stale');
    await advance(clock, 179_999 - 61_000); // ttl 60 s + maxStale 120 s
    expect(store.keys()).toHaveLength(1);
    await advance(clock, 1);
    expect(store.keys()).toEqual([]);
    expect(cache.status()).toMatchObject({ state: 'error', ageMs: null });
    await expect(cache.get()).rejects.toMatchObject({ code: 'UNAVAILABLE' });
  });
});

describe('single-flight', () => {
  it('serves any number of concurrent cold requests with one backend fetch', async () => {
    source.delayMs = 500;
    const cache = cacheFor();
    const all = Promise.all(Array.from({ length: 100 }, () => cache.get()));
    const served = await settle(all);
    expect(source.fetches).toBe(1);
    expect(new Set(served.map((s) => s.value.reveal()))).toEqual(new Set(['sk-initial']));
  });

  it('shares one failure between concurrent requests too', async () => {
    source.delayMs = 200;
    source.value = new BrokerError('UNAVAILABLE', 'backend down');
    const cache = cacheFor();
    const results = await settle(Promise.allSettled(Array.from({ length: 20 }, () => cache.get())));
    expect(source.fetches).toBe(1);
    expect(results.every((r) => r.status === 'rejected' && (r.reason as BrokerError).code === 'UNAVAILABLE')).toBe(
      true,
    );
  });
});

describe('refresh-ahead', () => {
  it('refreshes a profile in use in the background at ~75% of its TTL, so readers never wait', async () => {
    const cache = cacheFor({}, () => 0.5); // no jitter: exactly 75%
    await cache.get();
    await vi.advanceTimersByTimeAsync(10_000);
    await cache.get(); // in use
    source.value = 'sk-rotated';
    await vi.advanceTimersByTimeAsync(34_000); // t = 44s < 45s
    expect(source.fetches).toBe(1);
    await vi.advanceTimersByTimeAsync(1_500); // t = 45.5s
    expect(source.fetches).toBe(2);
    expect(source.reasons.at(-1)).toBe('refresh-ahead');
    source.delayMs = 5_000; // a reader now must not wait on the backend
    const started = Date.now();
    expect((await cache.get()).value.reveal()).toBe('sk-rotated');
    expect(Date.now() - started).toBe(0);
  });

  it('jitters the refresh between 70% and 80% of the TTL', async () => {
    for (const [random, expectedAt] of [
      [0, 42_000],
      [0.999_999, 48_000],
    ] as const) {
      source = new ScriptedSource();
      const cache = cacheFor({}, () => random);
      await cache.get();
      await cache.get();
      await vi.advanceTimersByTimeAsync(expectedAt - 100);
      expect(source.fetches).toBe(1);
      await vi.advanceTimersByTimeAsync(200);
      expect(source.fetches).toBe(2);
      cache.dispose();
    }
  });

  it('stops refreshing a profile nobody has read within its TTL, and lets it expire', async () => {
    const cache = cacheFor({}, () => 0.5);
    await cache.get();
    await vi.advanceTimersByTimeAsync(2 * 60_000);
    // One refresh at 45 s (read 45 s ago, within the TTL); none at 90 s (read 90 s ago).
    expect(source.reasons).toEqual(['miss', 'refresh-ahead']);
    expect(cache.status().state).toBe('expired');
    await vi.advanceTimersByTimeAsync(10 * 60_000);
    expect(source.fetches).toBe(2);
    await cache.get();
    expect(source.reasons).toEqual(['miss', 'refresh-ahead', 'miss']);
  });
});

describe('stale-if-error', () => {
  it('keeps serving the last good value, marked stale, while the source fails', async () => {
    const cache = cacheFor();
    await cache.get();
    source.value = new BrokerError('UNAVAILABLE', 'vault is sealed');
    await vi.advanceTimersByTimeAsync(61_000);
    const served = await cache.get();
    expect(served.value.reveal()).toBe('sk-initial');
    expect(served.stale).toBe(true);
    expect(served.warning?.code).toBe('UNAVAILABLE');
    const status = cache.status();
    expect(status.state).toBe('stale');
    expect(status.lastError).toMatchObject({ code: 'UNAVAILABLE', message: 'vault is sealed' });
  });

  it('answers stale reads at once instead of waiting on a failing source again', async () => {
    const cache = cacheFor();
    await cache.get();
    source.value = new BrokerError('UNAVAILABLE', 'down');
    await vi.advanceTimersByTimeAsync(61_000);
    await cache.get(); // the failed refetch
    source.delayMs = 7_000;
    const started = Date.now();
    const served = await cache.get();
    expect(served.stale).toBe(true);
    expect(Date.now() - started).toBe(0);
  });

  it('stops serving the value maxStale after it expired, and then drops it from memory', async () => {
    const cache = cacheFor({ ttlMs: 60_000, maxStaleMs: 120_000 });
    await cache.get();
    source.value = new BrokerError('UNAVAILABLE', 'down');
    await vi.advanceTimersByTimeAsync(60_000 + 120_000 + 1);
    await expect(cache.get()).rejects.toMatchObject({ code: 'UNAVAILABLE' });
    expect(cache.status().state).toBe('error');
    expect(cache.status().ageMs).toBeNull();
  });

  it('retries a failing refresh in the background with backoff and recovers', async () => {
    const cache = cacheFor({}, () => 0.5);
    await cache.get();
    await cache.get();
    source.value = new BrokerError('UNAVAILABLE', 'down');
    await vi.advanceTimersByTimeAsync(45_001); // refresh-ahead fails
    expect(source.fetches).toBe(2);
    source.value = 'sk-recovered';
    await vi.advanceTimersByTimeAsync(5_001); // first retry after ~5 s
    expect(source.fetches).toBe(3);
    expect(source.reasons.at(-1)).toBe('retry');
    expect((await cache.get()).value.reveal()).toBe('sk-recovered');
    expect(cache.status().lastError).toBeNull();
  });
});

describe('bounds and bad values', () => {
  it('fails a fetch that exceeds the profile timeout with TIMEOUT, even if the source ignores the signal', async () => {
    source.delayMs = 30_000;
    source.ignoreSignal = true;
    const cache = cacheFor({ timeoutMs: 8_000 });
    const started = Date.now();
    await expect(settle(cache.get())).rejects.toMatchObject({ code: 'TIMEOUT' });
    expect(Date.now() - started).toBeLessThanOrEqual(8_100);
    expect(source.signals[0]!.aborted).toBe(true);
  });

  it('refuses an empty value', async () => {
    source.value = '';
    await expect(cacheFor().get()).rejects.toMatchObject({ code: 'INVALID_VALUE' });
  });

  it("withholds an unexpected error's message: it may quote the secret", async () => {
    source.value = new SyntaxError('Unexpected token s in JSON: "sk-leaky-value"');
    const err = await cacheFor()
      .get()
      .catch((e: unknown) => e as BrokerError);
    expect(err).toBeInstanceOf(BrokerError);
    expect((err as BrokerError).code).toBe('SOURCE_ERROR');
    expect((err as BrokerError).message).not.toContain('sk-leaky-value');
  });

  it('fetches from the source on an explicit refresh, bypassing a fresh value', async () => {
    const cache = cacheFor();
    await cache.get();
    source.value = 'sk-rotated';
    expect((await cache.get({ refresh: true })).value.reveal()).toBe('sk-rotated');
    expect(source.reasons).toEqual(['miss', 'explicit']);
  });
});

describe('repeat requests from Claude Code (401 inference)', () => {
  it('refetches on an early repeat and serves a rotated value at once', async () => {
    const cache = cacheFor();
    expect((await cache.get({ consumer: claude(100) })).value.reveal()).toBe('sk-initial');
    source.value = 'sk-rotated';
    await vi.advanceTimersByTimeAsync(1_400);
    expect((await cache.get({ consumer: claude(100) })).value.reveal()).toBe('sk-rotated');
    expect(source.reasons).toEqual(['miss', 'rejected']);
  });

  it('serves an unchanged value once more, then fails a second rejection within the window', async () => {
    const cache = cacheFor();
    await cache.get({ consumer: claude(100) });
    await vi.advanceTimersByTimeAsync(2_000);
    expect((await cache.get({ consumer: claude(100) })).value.reveal()).toBe('sk-initial');
    await vi.advanceTimersByTimeAsync(10_000);
    const err = await cache.get({ consumer: claude(100) }).catch((e: unknown) => e as BrokerError);
    expect(err).toBeInstanceOf(BrokerError);
    expect((err as BrokerError).code).toBe('KEY_REJECTED');
    // About the profile, with the command that fixes it as its fix.
    expect((err as BrokerError).profile).toBe('work');
    expect((err as BrokerError).fix).toMatch(/ then run: keybroker refresh work$/);
    expect((err as BrokerError).message).not.toContain('\n');
    expect((err as BrokerError).message).not.toContain('sk-initial');
  });

  it('serves once more again when the window has passed (a healthy session never stays failed)', async () => {
    const cache = cacheFor();
    await cache.get({ consumer: claude(100) });
    await vi.advanceTimersByTimeAsync(2_000);
    await cache.get({ consumer: claude(100) }); // strike at t=2s
    await vi.advanceTimersByTimeAsync(61_000);
    expect((await cache.get({ consumer: claude(100) })).value.reveal()).toBe('sk-initial');
  });

  it('treats a call after the consumer’s helper TTL as an ordinary read', async () => {
    const cache = cacheFor({ ttlMs: 3_600_000 });
    await cache.get({ consumer: claude(100, 60_000) });
    await vi.advanceTimersByTimeAsync(60_000);
    await cache.get({ consumer: claude(100, 60_000) });
    expect(source.fetches).toBe(1);
  });

  it('gives a script calling in a loop ordinary cached reads', async () => {
    const cache = cacheFor();
    for (let i = 0; i < 10; i++) {
      expect((await cache.get({ consumer: script(200) })).value.reveal()).toBe('sk-initial');
      await vi.advanceTimersByTimeAsync(500);
    }
    expect(source.fetches).toBe(1);
  });

  it('applies the rule to any consumer when the profile opts in, and to none when it opts out', async () => {
    const always = cacheFor({ repeatDetection: 'always' });
    await always.get({ consumer: script(200) });
    await always.get({ consumer: script(200) });
    expect(source.reasons).toEqual(['miss', 'rejected']);

    source = new ScriptedSource();
    const off = cacheFor({ repeatDetection: 'off' });
    await off.get({ consumer: claude(100) });
    await off.get({ consumer: claude(100) });
    expect(source.reasons).toEqual(['miss']);
  });

  it('tells consumers apart by pid and start time: a reused pid is a new consumer', async () => {
    const cache = cacheFor();
    await cache.get({ consumer: { ...claude(100), start: '1' } });
    await cache.get({ consumer: { ...claude(100), start: '2' } });
    expect(source.fetches).toBe(1);
  });

  it('turns a storm of rejections from many sessions into one fetch', async () => {
    const cache = cacheFor();
    const sessions = Array.from({ length: 20 }, (_, i) => claude(1000 + i));
    for (const s of sessions) await cache.get({ consumer: s });
    source.value = 'sk-rotated';
    source.delayMs = 300;
    await vi.advanceTimersByTimeAsync(1_000);
    const served = await settle(Promise.all(sessions.map((s) => cache.get({ consumer: s }))));
    expect(served.every((s) => s.value.reveal() === 'sk-rotated')).toBe(true);
    expect(source.fetches).toBe(2);
  });

  it('lets sessions that report the same rejection a little later share the fetch that answered it', async () => {
    const cache = cacheFor();
    const sessions = Array.from({ length: 10 }, (_, i) => claude(2000 + i));
    for (const s of sessions) await cache.get({ consumer: s });
    source.value = 'sk-rotated';
    await vi.advanceTimersByTimeAsync(1_000);
    for (const s of sessions) {
      expect((await cache.get({ consumer: s })).value.reveal()).toBe('sk-rotated');
      await vi.advanceTimersByTimeAsync(300);
    }
    expect(source.reasons).toEqual(['miss', 'rejected']);
  });

  it('refetches for a session that rejects a value it got after the last fetch', async () => {
    const cache = cacheFor();
    await cache.get({ consumer: claude(1) });
    await vi.advanceTimersByTimeAsync(500);
    await cache.get({ consumer: claude(2) }); // served from cache after the fetch started
    await vi.advanceTimersByTimeAsync(500);
    await cache.get({ consumer: claude(2) });
    expect(source.reasons).toEqual(['miss', 'rejected']);
  });

  it('says the refresh failed when the source is down during a rejection', async () => {
    const cache = cacheFor();
    await cache.get({ consumer: claude(100) });
    source.value = new BrokerError('UNAVAILABLE', 'connection refused');
    await vi.advanceTimersByTimeAsync(1_000);
    expect((await cache.get({ consumer: claude(100) })).value.reveal()).toBe('sk-initial');
    await vi.advanceTimersByTimeAsync(6_000);
    const err = await cache.get({ consumer: claude(100) }).catch((e: unknown) => e as BrokerError);
    expect((err as BrokerError).code).toBe('KEY_REJECTED');
    expect((err as BrokerError).message).toContain('refreshing it from scripted:test failed (connection refused)');
  });

  it('counts the consumers it has seen', async () => {
    const cache = cacheFor();
    await cache.get({ consumer: claude(1) });
    await cache.get({ consumer: script(2) });
    await cache.get();
    expect(cache.status().consumers).toBe(2);
  });
});

describe('a repeat after Claude Code’s settings changed', () => {
  const at = (pid: number, settingsMtimeMs?: number): ConsumerInfo => ({
    ...claude(pid),
    ...(settingsMtimeMs !== undefined && { settingsMtimeMs }),
  });

  it('is an ordinary read: Claude Code re-runs its helper on a settings change, not only after a 401', async () => {
    const cache = cacheFor();
    await cache.get({ consumer: at(100, 1_000) });
    await vi.advanceTimersByTimeAsync(20_000);
    expect((await cache.get({ consumer: at(100, 5_000) })).outcome).toBe('hit');
    expect(source.reasons).toEqual(['miss']);
    // The next repeat is judged against the settings as they were at that call.
    await vi.advanceTimersByTimeAsync(2_000);
    expect((await cache.get({ consumer: at(100, 5_000) })).outcome).toBe('refetched');
    expect(source.reasons).toEqual(['miss', 'rejected']);
  });

  it('is judged as before when the settings are as they were at the previous call, however recent', async () => {
    const cache = cacheFor();
    // keybroker setup claude, then claude at once: written before the session, not in it.
    const writtenAt = Date.now() - 1_000;
    await cache.get({ consumer: at(100, writtenAt) });
    await vi.advanceTimersByTimeAsync(2_000);
    expect((await cache.get({ consumer: at(100, writtenAt) })).outcome).toBe('refetched');
  });

  it('is judged as before when either call did not say (an older shim)', async () => {
    const cache = cacheFor();
    await cache.get({ consumer: at(100) });
    await vi.advanceTimersByTimeAsync(2_000);
    await cache.get({ consumer: at(100, 5_000) });
    expect(source.reasons).toEqual(['miss', 'rejected']);
  });
});

describe('a rejected key in status', () => {
  /** The consumer's two repeats after a 401 with an unchanged source: the second is refused. */
  async function rejectTwice(cache: ProfileCache, pid = 100): Promise<void> {
    await cache.get({ consumer: claude(pid) });
    await vi.advanceTimersByTimeAsync(2_000);
    await cache.get({ consumer: claude(pid) });
    await vi.advanceTimersByTimeAsync(2_000);
    await expect(cache.get({ consumer: claude(pid) })).rejects.toMatchObject({ code: 'KEY_REJECTED' });
  }

  it('says since when and to which consumer the key was refused, never the value', async () => {
    const cache = cacheFor();
    expect(cache.status().rejected).toBeNull();
    await rejectTwice(cache);
    const refusedAt = Date.now();
    await vi.advanceTimersByTimeAsync(3_000);
    await expect(cache.get({ consumer: claude(100) })).rejects.toMatchObject({ code: 'KEY_REJECTED' });
    const status = cache.status();
    expect(status.rejected).toEqual({ atMs: refusedAt, consumer: { pid: 100, name: 'claude' }, requests: 2 });
    // The cache itself still holds a fresh value: the state says so, the rejection says the rest.
    expect(status.state).toBe('fresh');
    expect(JSON.stringify(status)).not.toContain('sk-initial');
  });

  it('is not marked by a suspected rejection alone (one repeat may be a settings change)', async () => {
    const cache = cacheFor();
    await cache.get({ consumer: claude(100) });
    await vi.advanceTimersByTimeAsync(2_000);
    await cache.get({ consumer: claude(100) });
    expect(cache.status().rejected).toBeNull();
  });

  it('clears once a fetch brings a different value, not before', async () => {
    const cache = cacheFor();
    await rejectTwice(cache);
    await vi.advanceTimersByTimeAsync(5_000);
    await cache.refresh(); // the same value again
    expect(cache.status().rejected).not.toBeNull();
    source.value = 'sk-rotated';
    await vi.advanceTimersByTimeAsync(5_000);
    await cache.refresh();
    expect(cache.status().rejected).toBeNull();
  });

  it('clears on forget, with the consumer records it was judged on', async () => {
    const cache = cacheFor();
    await rejectTwice(cache);
    cache.forget();
    expect(cache.status().rejected).toBeNull();
  });

  it('is not marked by a consumer claim the kernel refuted', async () => {
    const cache = cacheFor();
    await cache.get({ consumer: claude(100) });
    await vi.advanceTimersByTimeAsync(2_000);
    await cache.get({ consumer: claude(100) });
    await vi.advanceTimersByTimeAsync(1_000);
    await expect(cache.get({ consumer: claude(100), claimConfirmed: false })).rejects.toMatchObject({
      code: 'KEY_REJECTED',
    });
    expect(cache.status().rejected).toBeNull();
  });
});

describe('values that span lines', () => {
  it('refuses a multi-line value: a key is one line', async () => {
    source.value = 'sk-one\nsk-two';
    const err = await cacheFor()
      .get()
      .catch((e: unknown) => e as BrokerError);
    expect(err).toBeInstanceOf(BrokerError);
    expect((err as BrokerError).code).toBe('INVALID_VALUE');
    expect((err as BrokerError).message).not.toContain('sk-');
  });

  it.each(['a\r\nb', 'a\rb'])('counts %j as two lines', async (value) => {
    source.value = value;
    expect(
      await cacheFor()
        .get()
        .catch((e: unknown) => (e as BrokerError).code),
    ).toBe('INVALID_VALUE');
  });

  it('serves a multi-line value when the profile says multiline: true', async () => {
    source.value = '-----BEGIN KEY-----\nabc\n-----END KEY-----';
    expect((await cacheFor({ multiline: true }).get()).value.lineCount()).toBe(3);
  });
});

describe('what a failed fetch says will happen', () => {
  function loggedCache(): { cache: ProfileCache; lines: Array<Record<string, unknown>> } {
    const lines: Array<Record<string, unknown>> = [];
    const captured = createLogger({
      level: 'warn',
      destination: { write: (s: string) => void lines.push(JSON.parse(s) as Record<string, unknown>) },
    });
    const cache = new ProfileCache({
      profile: profile(),
      adapter: source.adapter(),
      ref: 'scripted:test',
      store,
      log: captured,
      random: () => 0.5,
    });
    return { cache, lines };
  }

  it('a cold profile: nothing is scheduled, the next read fetches again', async () => {
    const { cache, lines } = loggedCache();
    source.value = new BrokerError('UNAVAILABLE', 'down');
    await cache.get().catch(() => {});
    expect(lines.at(-1)).toMatchObject({ retry: 'next-read' });
    expect(lines.at(-1)).not.toHaveProperty('retryInMs');
    await vi.advanceTimersByTimeAsync(10 * 60_000);
    expect(source.fetches).toBe(1);
  });

  it('a profile in use with a cached value: a retry is scheduled, and it happens', async () => {
    const { cache, lines } = loggedCache();
    await cache.get();
    source.value = new BrokerError('UNAVAILABLE', 'down');
    await vi.advanceTimersByTimeAsync(45_000); // refresh-ahead fails
    const failed = lines.filter((l) => l.retry !== undefined);
    expect(failed).toEqual([expect.objectContaining({ retry: 'scheduled', retryInMs: expect.any(Number) as number })]);
    await vi.advanceTimersByTimeAsync(failed[0]!.retryInMs as number);
    expect(source.reasons).toEqual(['miss', 'refresh-ahead', 'retry']);
  });
});

describe('a consumer claim the kernel did not confirm (claimConfirmed: false)', () => {
  it('is judged against the consumer’s record but never changes it: its strikes do not fail the real consumer', async () => {
    const cache = cacheFor();
    await cache.get({ consumer: claude(100), claimConfirmed: true });
    await vi.advanceTimersByTimeAsync(1_000);
    // Someone else claims to be consumer 100 repeating itself, again and again.
    for (let i = 0; i < 3; i++) {
      expect((await cache.get({ consumer: claude(100), claimConfirmed: false })).value.reveal()).toBe('sk-initial');
      await vi.advanceTimersByTimeAsync(1_000);
    }
    expect(cache.stats.rejected).toBe(0);
    // The real consumer's own repeat is its first: served once more (and struck) ...
    expect((await cache.get({ consumer: claude(100), claimConfirmed: true })).value.reveal()).toBe('sk-initial');
    await vi.advanceTimersByTimeAsync(1_000);
    // (a false claim now fails only its own request)
    await expect(cache.get({ consumer: claude(100), claimConfirmed: false })).rejects.toMatchObject({
      code: 'KEY_REJECTED',
    });
    // ... and its second within the window is the rejection, as always.
    await expect(cache.get({ consumer: claude(100), claimConfirmed: true })).rejects.toMatchObject({
      code: 'KEY_REJECTED',
    });
  });

  it('is not counted as a consumer', async () => {
    const cache = cacheFor();
    await cache.get({ consumer: claude(100), claimConfirmed: false });
    expect(cache.status().consumers).toBe(0);
  });
});

describe('consumers of a failing profile', () => {
  it('counts a consumer whose read failed', async () => {
    source.value = new BrokerError('PERMISSION_DENIED', 'denied');
    const cache = cacheFor();
    await cache.get({ consumer: claude(1) }).catch(() => {});
    await cache.get({ consumer: script(2) }).catch(() => {});
    expect(cache.status()).toMatchObject({ state: 'error', consumers: 2 });
  });
});

describe('which Claude Code invocations count as a repeat', () => {
  it('never counts the agent’s Bash tool, sibling helpers or an unmarked Claude Code under claude-code', async () => {
    for (const invocation of ['agent-tool', 'sibling-helper', 'unmarked'] as const) {
      source = new ScriptedSource();
      const cache = cacheFor();
      for (let i = 0; i < 4; i++) {
        expect((await cache.get({ consumer: claudeAs(100, invocation) })).value.reveal()).toBe('sk-initial');
        await vi.advanceTimersByTimeAsync(500);
      }
      expect(source.reasons).toEqual(['miss']);
    }
  });

  it('leaves the helper’s own record alone when the agent reads in between', async () => {
    const cache = cacheFor({ ttlMs: 3_600_000 });
    await cache.get({ consumer: claude(100) });
    await vi.advanceTimersByTimeAsync(200_000);
    // The agent checks the key twice, late in the helper's TTL…
    await cache.get({ consumer: claudeAs(100, 'agent-tool') });
    await cache.get({ consumer: claudeAs(100, 'agent-tool') });
    await vi.advanceTimersByTimeAsync(50_000);
    // …and the helper's next call, past 80% of its TTL since its own last call, is an ordinary read.
    await cache.get({ consumer: claude(100) });
    expect(source.reasons).toEqual(['miss']);
    expect(cache.stats.suspectedRejections).toBe(0);
  });

  it('under repeatDetection: always, counts an unmarked Claude Code and scripts, never the Bash tool or sibling helpers', async () => {
    const counted: string[] = [];
    for (const invocation of ['api-key-helper', 'unmarked', 'agent-tool', 'sibling-helper'] as const) {
      source = new ScriptedSource();
      const cache = cacheFor({ repeatDetection: 'always' });
      await cache.get({ consumer: claudeAs(100, invocation) });
      await cache.get({ consumer: claudeAs(100, invocation) });
      if (source.reasons.includes('rejected')) counted.push(invocation);
    }
    expect(counted).toEqual(['api-key-helper', 'unmarked']);
  });

  it('counts unmarked Claude Code consumers for status, only where detection is left off for them', async () => {
    const cache = cacheFor();
    await cache.get({ consumer: claudeAs(1, 'unmarked') });
    await cache.get({ consumer: claude(2) });
    expect(cache.status()).toMatchObject({ consumers: 2, unmarkedClaudeConsumers: 1 });
    const always = cacheFor({ repeatDetection: 'always' });
    await always.get({ consumer: claudeAs(1, 'unmarked') });
    expect(always.status().unmarkedClaudeConsumers).toBe(0);
  });
});

describe('Codex’s auth command', () => {
  it('a repeat soon after the last is a suspected rejection under the default, agents', async () => {
    expect(DEFAULTS.repeatDetection).toBe('agents');
    const cache = cacheFor({ repeatDetection: DEFAULTS.repeatDetection });
    await cache.get({ consumer: codex(100) });
    source.value = 'sk-rotated';
    await vi.advanceTimersByTimeAsync(1_000);
    expect((await cache.get({ consumer: codex(100) })).value.reveal()).toBe('sk-rotated');
    expect(source.reasons).toEqual(['miss', 'rejected']);
  });

  it('the same value rejected twice fails with KEY_REJECTED', async () => {
    const cache = cacheFor({ repeatDetection: DEFAULTS.repeatDetection });
    await cache.get({ consumer: codex(100) });
    await cache.get({ consumer: codex(100) });
    await expect(cache.get({ consumer: codex(100) })).rejects.toMatchObject({ code: 'KEY_REJECTED' });
  });

  it('never counts Codex’s own tool runs or an unmarked auth command; nor any Codex under claude-code', async () => {
    const cases: Array<[RepeatDetection, ConsumerInfo['invocation']]> = [
      ['agents', 'agent-tool'],
      ['agents', 'unmarked'],
      ['claude-code', 'api-key-helper'],
    ];
    for (const [repeatDetection, invocation] of cases) {
      source = new ScriptedSource();
      const cache = cacheFor({ repeatDetection });
      for (let i = 0; i < 4; i++) {
        expect((await cache.get({ consumer: codex(100, invocation) })).value.reveal()).toBe('sk-initial');
        await vi.advanceTimersByTimeAsync(500);
      }
      expect(source.reasons).toEqual(['miss']);
    }
  });
});

describe('forced fetches are rate-limited per profile', () => {
  it('lets a burst of refreshes through, then answers RATE_LIMITED with when to retry', async () => {
    const cache = cacheFor();
    await cache.get();
    const outcomes: string[] = [];
    for (let i = 0; i < 100; i++) {
      outcomes.push(
        await cache.get({ refresh: true }).then(
          () => 'ok',
          (e: unknown) => (e as BrokerError).code,
        ),
      );
    }
    expect(outcomes.slice(0, 3)).toEqual(['ok', 'ok', 'ok']);
    expect(new Set(outcomes.slice(3))).toEqual(new Set(['RATE_LIMITED']));
    expect(source.reasons).toEqual(['miss', 'explicit', 'explicit', 'explicit']);
    expect(cache.status().forcedFetchesLimited).toBe(97);
    const err = await cache.refresh().catch((e: unknown) => e as BrokerError);
    expect(err).toMatchObject({ code: 'RATE_LIMITED', transient: true });
    // One more is allowed per interval (10 s), measured on the injected clock.
    await vi.advanceTimersByTimeAsync(9_000);
    await expect(cache.refresh()).rejects.toMatchObject({ code: 'RATE_LIMITED' });
    await vi.advanceTimersByTimeAsync(1_000);
    await cache.refresh();
    await expect(cache.refresh()).rejects.toMatchObject({ code: 'RATE_LIMITED' });
    expect(source.fetches).toBe(5);
  });

  it('still fetches on a deliberate refresh right after a fetch (a key rotated and refreshed at once)', async () => {
    const cache = cacheFor();
    await cache.get();
    source.value = 'sk-rotated';
    expect((await cache.get({ refresh: true })).value.reveal()).toBe('sk-rotated');
  });

  it('joins a fetch in flight without spending the burst', async () => {
    const cache = cacheFor();
    source.delayMs = 1_000;
    const all = Promise.all([
      cache.get(),
      ...Array.from({ length: 10 }, () => cache.get({ refresh: true })),
      cache.refresh(),
    ]);
    await settle(all);
    expect(source.fetches).toBe(1);
    source.delayMs = 0;
    for (let i = 0; i < 3; i++) await cache.refresh();
    expect(source.fetches).toBe(4);
  });

  it('answers a suspected rejection as if the source returned the same value once the burst is spent', async () => {
    const cache = cacheFor({}, () => 0.5, { forcedFetchIntervalMs: 60_000 });
    await cache.get({ consumer: claude(100) });
    for (let i = 0; i < 3; i++) await cache.refresh();
    expect(source.fetches).toBe(4);
    source.value = 'sk-rotated';
    await vi.advanceTimersByTimeAsync(6_000);
    expect((await cache.get({ consumer: claude(100) })).value.reveal()).toBe('sk-initial');
    await vi.advanceTimersByTimeAsync(1_000);
    await expect(cache.get({ consumer: claude(100) })).rejects.toMatchObject({ code: 'KEY_REJECTED' });
    expect(source.fetches).toBe(4);
  });

  it('keeps the rule that a rejection is answered by a fetch newer than the rejected value', async () => {
    const cache = cacheFor();
    const sessions = Array.from({ length: 10 }, (_, i) => claude(3000 + i));
    for (const s of sessions) await cache.get({ consumer: s });
    source.value = 'sk-rotated';
    await vi.advanceTimersByTimeAsync(1_000);
    for (const s of sessions) expect((await cache.get({ consumer: s })).value.reveal()).toBe('sk-rotated');
    expect(source.reasons).toEqual(['miss', 'rejected']);
    expect(cache.status().forcedFetchesLimited).toBe(0);
  });
});

describe('values that carry their own expiry', () => {
  const HOUR = 3_600_000;
  /** A JWT whose exp is `lifetimeMs` from now (iat now), as a source would mint it. */
  const jwtFor = (lifetimeMs: number, extra: Record<string, unknown> = {}): string =>
    makeJwt({ iat: Date.now() / 1000, exp: (Date.now() + lifetimeMs) / 1000, ...extra });
  const expOf = (token: string): number =>
    (JSON.parse(Buffer.from(token.split('.')[1]!, 'base64url').toString()) as { exp: number }).exp * 1000;

  it('caps a 1 h TTL at a JWT’s exp, less a margin of 10% of its life, and refreshes ahead of it', async () => {
    source.value = jwtFor(8_000);
    const cache = cacheFor({ ttlMs: HOUR, maxStaleMs: HOUR }, () => 0.5);
    const first = await cache.get();
    expect(first.freshUntil - Date.now()).toBe(7_200);
    expect(cache.status()).toMatchObject({ expiresInMs: 7_200, valueExpiresInMs: 8_000 });
    source.value = jwtFor(8_000);
    await vi.advanceTimersByTimeAsync(5_000);
    await cache.get(); // in use
    await vi.advanceTimersByTimeAsync(500); // 75% of 7.2 s = 5.4 s
    expect(source.reasons).toEqual(['miss', 'refresh-ahead']);
    const next = await cache.get();
    expect(next.value.equals(first.value)).toBe(false);
    expect(expOf(next.value.reveal())).toBeGreaterThan(Date.now());
  });

  it('sizes the margin from iat when the token has one, not from the fetch', async () => {
    // iat 50 s ago, exp in 50 s: a 100 s life, a 10 s margin (from the fetch it would be 5 s).
    source.value = makeJwt({ iat: (Date.now() - 50_000) / 1000, exp: (Date.now() + 50_000) / 1000 });
    const served = await cacheFor({ ttlMs: HOUR }).get();
    expect(served.freshUntil - Date.now()).toBe(40_000);
  });

  it('never serves a JWT at or after its exp, however long maxStale is, and then says EXPIRED', async () => {
    source.value = jwtFor(60_000);
    const cache = cacheFor({ ttlMs: HOUR, maxStaleMs: HOUR });
    const token = (await cache.get()).value.reveal();
    source.value = new BrokerError('UNAVAILABLE', 'gateway down');
    await vi.advanceTimersByTimeAsync(59_000); // past fresh (54 s), before exp (60 s): stale is fine
    const stale = await cache.get();
    expect(stale.stale).toBe(true);
    expect(stale.value.reveal()).toBe(token);
    expect(stale.warning?.code).toBe('UNAVAILABLE');
    await vi.advanceTimersByTimeAsync(1_000); // exactly exp
    const err = (await cache.get().then(
      () => undefined,
      (e: unknown) => e,
    )) as BrokerError;
    expect(err).toBeInstanceOf(BrokerError);
    expect(err.code).toBe('EXPIRED');
    expect(err.exitCode).toBe(19);
    expect(err.transient).toBe(true);
    expect(err.message).not.toContain(token);
    expect(cache.status()).toMatchObject({ state: 'error', valueExpiresInMs: 0 });
    // A consumer's repeat request (suspected rejection) cannot get it either.
    await expect(cache.get({ consumer: claude(7) })).rejects.toMatchObject({ code: 'EXPIRED' });
    // The source recovers: a fresh token is served again.
    source.value = jwtFor(60_000);
    await expect(cache.get()).resolves.toMatchObject({ stale: false });
    expect(cache.status().valueExpiresInMs).toBe(60_000);
  });

  it('refuses a token that is already expired when fetched (EXPIRED), keeping a still-valid one', async () => {
    source.value = makeJwt({ exp: (Date.now() - 1_000) / 1000 });
    await expect(cacheFor().get()).rejects.toMatchObject({ code: 'EXPIRED' });

    source = new ScriptedSource();
    source.value = jwtFor(120_000);
    const cache = cacheFor({ ttlMs: 30_000 });
    const good = (await cache.get()).value.reveal();
    source.value = makeJwt({ exp: (Date.now() - 1_000) / 1000 });
    await vi.advanceTimersByTimeAsync(31_000);
    const served = await cache.get();
    expect(served.value.reveal()).toBe(good);
    expect(served.warning?.code).toBe('EXPIRED');
  });

  it('honours an adapter’s expiresAt the same way, and the earlier of it and a JWT’s exp', async () => {
    source.value = { value: 'sk-temporary', expiresAt: Date.now() + 10_000 };
    const cache = cacheFor({ ttlMs: HOUR, maxStaleMs: HOUR });
    expect((await cache.get()).freshUntil - Date.now()).toBe(9_000);
    source.value = new BrokerError('UNAVAILABLE', 'down');
    await vi.advanceTimersByTimeAsync(10_000);
    await expect(cache.get()).rejects.toMatchObject({ code: 'EXPIRED' });

    source = new ScriptedSource();
    source.value = { value: jwtFor(600_000), expiresAt: Date.now() + HOUR };
    expect(cacheFor({ ttlMs: HOUR }).status().valueExpiresInMs).toBeNull();
    const c2 = cacheFor({ ttlMs: HOUR });
    await c2.get();
    expect(c2.status().valueExpiresInMs).toBe(600_000);
  });

  it('leaves a plain value to its TTL and maxStale (no expiry in status)', async () => {
    const cache = cacheFor();
    await cache.get();
    expect(cache.status()).toMatchObject({ expiresInMs: 60_000, valueExpiresInMs: null, rateLimitedForMs: null });
  });
});

describe('a backend that asks to wait (429 Retry-After)', () => {
  it('retries no earlier than it said, serves the stale value meanwhile, and shows it in status', async () => {
    const cache = cacheFor({}, () => 0.5);
    await cache.get();
    await vi.advanceTimersByTimeAsync(40_000);
    await cache.get(); // in use
    source.value = new BrokerError('RATE_LIMITED', 'slow down', { retryAfterMs: 120_000 });
    await vi.advanceTimersByTimeAsync(5_001); // refresh-ahead at 45 s fails
    expect(source.fetches).toBe(2);
    expect(cache.status().rateLimitedForMs).toBe(120_000 - 1);
    source.value = 'sk-after-limit';
    // Our own backoff would retry after 5 s; the backend said 120 s.
    await vi.advanceTimersByTimeAsync(60_000);
    const stale = await cache.get();
    expect(stale.value.reveal()).toBe('sk-initial');
    expect(stale.warning?.code).toBe('RATE_LIMITED');
    expect(source.fetches).toBe(2);
    await vi.advanceTimersByTimeAsync(60_000);
    expect(source.fetches).toBe(3);
    expect(source.reasons.at(-1)).toBe('retry');
    expect((await cache.get()).value.reveal()).toBe('sk-after-limit');
    expect(cache.status().rateLimitedForMs).toBeNull();
  });

  it('keeps its own backoff when that is longer than what the backend asked', async () => {
    const cache = cacheFor({}, () => 0.5);
    await cache.get();
    await cache.get();
    source.value = new BrokerError('RATE_LIMITED', 'slow down', { retryAfterMs: 1_000 });
    await vi.advanceTimersByTimeAsync(45_001);
    expect(source.fetches).toBe(2);
    await vi.advanceTimersByTimeAsync(4_000);
    expect(source.fetches).toBe(2);
    await vi.advanceTimersByTimeAsync(1_100);
    expect(source.fetches).toBe(3);
  });
});

describe('forget and the forced-fetch limit (on the injected clock)', () => {
  /** A cache on a manual clock; real timers, so nothing but the clock moves time. */
  function cacheOn(clock: ManualClock, overrides: Partial<ResolvedProfile> = {}): ProfileCache {
    vi.useRealTimers();
    return new ProfileCache({ profile: profile(overrides), adapter: source.adapter(), ref: 'x', store, log, clock });
  }
  const flush = (): Promise<void> => new Promise((resolve) => setImmediate(resolve));
  /** A value held, the forced-fetch limit spent (3 refreshes back to back), then forgotten. */
  async function spendLimitAndForget(cache: ProfileCache): Promise<void> {
    await cache.get();
    for (let i = 0; i < 3; i++) await cache.refresh();
    cache.forget();
  }
  /** Whether a promise has settled, after letting pending callbacks run. */
  async function settled(promise: Promise<unknown>): Promise<boolean> {
    let done = false;
    promise.then(
      () => (done = true),
      () => (done = true),
    );
    await flush();
    await flush();
    return done;
  }

  it('drops the value at once, never refuses, and makes the next fetch draw on the limit: 100 forget/get pairs cost what 100 refreshes may', async () => {
    const clock = new ManualClock();
    const cache = cacheOn(clock);
    await cache.get();
    const started = clock.now();
    let failed = 0;
    for (let i = 0; i < 100; i++) {
      cache.forget();
      expect(store.keys()).toEqual([]);
      expect(cache.status().state).toBe('cold');
      const read = cache.get().catch(() => failed++);
      while (!(await settled(read))) clock.advance(1_000);
    }
    const elapsed = clock.now() - started;
    expect(failed).toBe(0);
    // The documented limit: 3 back to back, then one per 10 s.
    expect(source.fetches - 1).toBeLessThanOrEqual(3 + Math.floor(elapsed / 10_000));
    expect(elapsed).toBeGreaterThanOrEqual(97 * 10_000 - 1_000);
  });

  it('makes a read with the limit spent wait for the next token, then fetch once for every read that joined it', async () => {
    const clock = new ManualClock();
    const cache = cacheOn(clock);
    await spendLimitAndForget(cache);
    const reads = Promise.all(Array.from({ length: 10 }, () => cache.get()));
    expect(await settled(reads)).toBe(false);
    expect(source.fetches).toBe(4);
    // The first token after three back-to-back refreshes at t: t + 10 s.
    clock.advance(9_999);
    expect(await settled(reads)).toBe(false);
    clock.advance(1);
    const served = await reads;
    expect(served.map((s) => s.value.reveal())).toEqual(Array(10).fill('sk-initial'));
    expect(source.fetches).toBe(5);
    expect(source.reasons.at(-1)).toBe('miss');
    // Served now: the next reads are hits, not forced fetches.
    await cache.get();
    expect(source.fetches).toBe(5);
  });

  it('counts a refresh right after a forget as the forget’s one forced fetch', async () => {
    const clock = new ManualClock();
    const cache = cacheOn(clock);
    await cache.get();
    cache.forget();
    await cache.refresh(); // token 1: the forget's fetch
    await cache.get(); // a hit: no fetch owed
    cache.forget();
    await cache.get(); // token 2
    cache.forget();
    await cache.get(); // token 3
    expect(source.fetches).toBe(4);
    cache.forget();
    const read = cache.get();
    expect(await settled(read)).toBe(false);
    clock.advance(10_000);
    await read;
    expect(source.fetches).toBe(5);
  });

  it('lets key set replace a forgotten value with no fetch and no token', async () => {
    const clock = new ManualClock();
    const cache = cacheOn(clock);
    await spendLimitAndForget(cache);
    cache.install(SecretValue.fromString('sk-set'));
    const served = await cache.get();
    expect(served.value.reveal()).toBe('sk-set');
    expect(source.fetches).toBe(4);
    // The limit is untouched by the set: still spent, so a forget now waits for its token.
    cache.forget();
    const read = cache.get();
    expect(await settled(read)).toBe(false);
    clock.advance(10_000);
    expect((await read).value.reveal()).toBe('sk-initial');
  });

  it('fails with RATE_LIMITED (transient) when the next token comes later than a read may wait', async () => {
    const clock = new ManualClock();
    // A profile timeout of the longest allowed leaves no time to wait for a token.
    const cache = cacheOn(clock, { timeoutMs: 120_000 });
    await spendLimitAndForget(cache);
    await expect(cache.get()).rejects.toMatchObject({ code: 'RATE_LIMITED', transient: true, profile: 'work' });
    expect(source.fetches).toBe(4);
  });

  it('ends a wait for a token when the profile is disposed (daemon stopping)', async () => {
    const clock = new ManualClock();
    const cache = cacheOn(clock);
    await spendLimitAndForget(cache);
    const read = cache.get();
    expect(await settled(read)).toBe(false);
    cache.dispose();
    await expect(read).rejects.toMatchObject({ code: 'SHUTTING_DOWN' });
    expect(source.fetches).toBe(4);
  });
});
