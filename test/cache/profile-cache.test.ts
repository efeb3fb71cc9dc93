// The cache layer's time logic, on fake timers: TTL, refresh-ahead, single-flight, stale-if-error,
// timeouts and the repeat/401 inference.
import NodeCache from 'node-cache';
import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest';
import { ProfileCache } from '../../src/cache/profile-cache.js';
import type { ResolvedProfile } from '../../src/config/load.js';
import { BrokerError } from '../../src/errors.js';
import { createLogger } from '../../src/log.js';
import type { ConsumerInfo } from '../../src/protocol/messages.js';
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
    settings: undefined,
    overrides: undefined,
    ...overrides,
  };
  return { ...p, fingerprint: JSON.stringify(p) };
}

let store: NodeCache;
let source: ScriptedSource;

function cacheFor(overrides: Partial<ResolvedProfile> = {}, random = () => 0.5): ProfileCache {
  return new ProfileCache({ profile: profile(overrides), adapter: source.adapter(), ref: 'scripted:test', store, log, random });
}

/** Settle a promise under fake timers, advancing time until it does. */
async function settle<T>(promise: Promise<T>, stepMs = 100, maxMs = 60_000): Promise<T> {
  let done = false;
  const tracked = promise.finally(() => (done = true));
  tracked.catch(() => {});
  for (let t = 0; !done && t < maxMs; t += stepMs) await vi.advanceTimersByTimeAsync(stepMs);
  return tracked;
}

const claude = (pid: number, helperTtlMs = 300_000): ConsumerInfo => ({ pid, start: '1', name: 'claude', claudeCode: true, helperTtlMs });
const script = (pid: number): ConsumerInfo => ({ pid, start: '1', name: 'python3', claudeCode: false });

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
    expect(results.every((r) => r.status === 'rejected' && (r.reason as BrokerError).code === 'UNAVAILABLE')).toBe(true);
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
    for (const [random, expectedAt] of [[0, 42_000], [0.999_999, 48_000]] as const) {
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
    const err = await cacheFor().get().catch((e: unknown) => e as BrokerError);
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
    expect((err as BrokerError).message).toBe(
      'profile "work": the key was rejected and scripted:test still returns the same value — rotate it at the source, then run: keybroker refresh work',
    );
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
