// The op: adapter against a fake 1Password client (the SDK's resolve/resolveAll surface over an
// in-memory account, failing with the SDK's real error classes), the real SDK's reference
// validation, and — where it works offline — the real SDK's createClient.
import fs from 'node:fs';
import path from 'node:path';
import { afterEach, describe, expect, it, vi } from 'vitest';
import { systemClock, type Adapter, type FetchReason } from '../../src/adapter.js';
import { adapterFor } from '../../adapters/registry.js';
import { AdapterPool } from '../../src/adapter-pool.js';
import { ConfigError, loadConfig } from '../../src/config/load.js';
import { BrokerError } from '../../src/errors.js';
import { createLogger } from '../../src/log.js';
import { SecretValue } from '../../src/secret.js';
import {
  createAdapter,
  createOnePasswordAdapter,
  INTEGRATION_VERSION,
  MAX_SECRET_BYTES,
  type ClientFactory,
  type OnePasswordAuth,
  type OnePasswordClient,
  type OnePasswordAdapterOptions,
  type OpRef,
} from '../../adapters/onepassword/onepassword-adapter.js';
import { ReadBudget, RATE_LIMIT_PAUSE } from '../../adapters/onepassword/read-budget.js';
import { ResolveBatcher } from '../../adapters/onepassword/resolve-batcher.js';
import { describeAdapterContract, fetchContext } from '../contract/adapter-contract.js';
import { FakeOnePasswordClient, type FakeFailure } from '../fakes/fake-onepassword-client.js';
import { capturedLog } from '../helpers/captured-log.js';
import { privateTempDir } from '../helpers/cleanup.js';
import { ManualClock } from '../helpers/manual-clock.js';

// Distinctive, so a leak anywhere is easy to find.
const TOKEN = 'ops_eyJzaWduSW5BZGRyZXNzIjoi-FAKE-TOKEN-4b7d21';
const VALUE = 'sk-ant-api03-FAKE-VALUE-9f3c0e';
const silent = createLogger({ level: 'silent' });

interface Harness {
  adapter: Adapter<OpRef>;
  fake: FakeOnePasswordClient;
  auths: OnePasswordAuth[];
  logText: () => string;
  ref(uri: string, profile?: string, overrides?: Record<string, unknown>): Promise<OpRef>;
  fetch(uri: string, reason?: FetchReason, signal?: AbortSignal): Promise<string>;
  fetchErr(uri: string, reason?: FetchReason, signal?: AbortSignal): Promise<BrokerError>;
}

function harness(
  options: {
    settings?: Record<string, unknown>;
    env?: NodeJS.ProcessEnv;
    fake?: FakeOnePasswordClient;
    factory?: ClientFactory;
  } & Omit<OnePasswordAdapterOptions, 'clientFactory'> = {},
): Harness {
  const fake = options.fake ?? new FakeOnePasswordClient({ credentialText: TOKEN });
  const auths: OnePasswordAuth[] = [];
  const { log, text } = capturedLog();
  const { settings, env, factory, ...rest } = options;
  const adapter = createOnePasswordAdapter(
    { settings: { batchWindow: '2ms', ...settings }, env: env ?? { OP_SERVICE_ACCOUNT_TOKEN: TOKEN }, log },
    {
      ...rest,
      clientFactory: (auth) => {
        auths.push(auth);
        return factory ? factory(auth) : fake;
      },
    },
  );
  const ref = async (uri: string, profile = 't', overrides?: Record<string, unknown>) =>
    adapter.parse(uri, { overrides, profile });
  const fetch = async (uri: string, reason: FetchReason = 'miss', signal?: AbortSignal) => {
    const r = await adapter.fetch(await ref(uri), fetchContext(signal ? { signal } : {}, reason));
    return r.value.reveal();
  };
  const fetchErr = async (uri: string, reason: FetchReason = 'miss', signal?: AbortSignal) => {
    const err = await fetch(uri, reason, signal).then(
      () => undefined,
      (e: unknown) => e,
    );
    expect(err, 'the fetch should have failed').toBeInstanceOf(BrokerError);
    return err as BrokerError;
  };
  return { adapter, fake, auths, logText: text, ref, fetch, fetchErr };
}

async function expectConfigInvalid(run: () => unknown): Promise<BrokerError> {
  const err = await Promise.resolve()
    .then(run)
    .then(
      () => undefined,
      (e: unknown) => e,
    );
  expect(err).toBeInstanceOf(BrokerError);
  expect((err as BrokerError).code).toBe('CONFIG_INVALID');
  return err as BrokerError;
}

function expectClean(text: string): void {
  expect(text).not.toContain(TOKEN);
  expect(text).not.toContain(VALUE);
}

describeAdapterContract('op', async () => {
  const fake = new FakeOnePasswordClient({ credentialText: TOKEN });
  return {
    adapter: createOnePasswordAdapter(
      { settings: { batchWindow: '1ms' }, env: { OP_SERVICE_ACCOUNT_TOKEN: TOKEN }, log: silent },
      { clientFactory: () => fake },
    ),
    uriFor: (name) => `op://Contract/${name}/credential`,
    put: async (name, value) => fake.setField('Contract', name, 'credential', value),
    missingUri: 'op://Contract/missing/credential',
    invalidUris: [
      'op://Contract/only-two',
      'op:Contract/item/field',
      'op://Contract/item/field?attribute=bogus',
      'op://Contract/item/f#x',
      'op://Contract//field',
      'op://a/b/c/d/e',
    ],
  };
});

describe('op: references', () => {
  it('accepts vault/item/field, a section, and the SDK query attributes; describes by the reference', async () => {
    const h = harness();
    for (const uri of [
      'op://Work/Anthropic/credential',
      'op://Work/Anthropic/API/credential',
      'op://Work/Totp/one-time password?attribute=otp',
      'op://Work/Ssh/private key?ssh-format=openssh',
    ]) {
      const ref = await h.ref(uri);
      expect(h.adapter.describe(ref)).toBe(uri);
    }
    const ref = await h.ref('op://Work/Anthropic/API/credential');
    expect(ref.parts).toEqual({ vault: 'Work', item: 'Anthropic', section: 'API', field: 'credential' });
  });

  it('refuses a malformed reference as a config error naming the profile, without quoting it', async () => {
    const h = harness();
    const err = await expectConfigInvalid(() => h.ref(`op://Work/Anthropic/${VALUE}?x=1`, 'work'));
    expect(err.message).toContain('unknown query parameter');
    expect(err.message).not.toContain(VALUE);
    const dir = privateTempDir('kb-op-config-');
    const file = path.join(dir, 'config.yaml');
    fs.writeFileSync(file, `profiles:\n  work:\n    source: op://Work/Anthropic/${VALUE}?x=1\n`, { mode: 0o600 });
    const pool = new AdapterPool({
      find: adapterFor,
      env: { OP_SERVICE_ACCOUNT_TOKEN: TOKEN },
      log: silent,
      modules: {
        op: {
          createAdapter: (init) => createOnePasswordAdapter(init, { clientFactory: () => new FakeOnePasswordClient() }),
        },
      },
    });
    const configErr = await loadConfig(file, pool.acquire).then(
      () => undefined,
      (e: unknown) => e as ConfigError,
    );
    expect(configErr).toBeInstanceOf(ConfigError);
    expect(configErr!.problems).toEqual([expect.objectContaining({ line: 3, path: 'profiles.work.source' })]);
    expect(configErr!.report).not.toContain(VALUE);
    expect(configErr!.message).not.toContain(VALUE);
    await pool.closeAll();
    expect((await expectConfigInvalid(() => h.ref('op://Work/Anthropic', 'w2'))).message).toContain(
      'needs a vault, an item',
    );
    expect((await expectConfigInvalid(() => h.ref('op:Work/Anthropic/credential'))).message).toContain(
      'must start with op://',
    );
    // The SDK accepts an empty segment; it can never name a field.
    expect((await expectConfigInvalid(() => h.ref('op://Work//credential'))).message).toContain('empty');
    expect((await expectConfigInvalid(() => h.ref(`op://Work/Item/${'x'.repeat(2000)}`))).message).toContain(
      'longer than',
    );
  });

  it('constructs without creating a client, and parse stays offline', async () => {
    const h = harness();
    await h.ref('op://Work/Anthropic/credential');
    expect(h.auths).toHaveLength(0);
    expect(h.fake.calls.resolveAll + h.fake.calls.resolve).toBe(0);
  });
});

describe('op: settings', () => {
  const make = (settings: Record<string, unknown>) => () =>
    createOnePasswordAdapter({ settings, env: {}, log: silent });

  it('rejects unknown keys, listing the known ones', async () => {
    const err = await expectConfigInvalid(make({ acount: 'x' }));
    expect(err.message).toContain('"acount"');
    expect(err.message).toContain('known keys: account, tokenFile, auth');
  });

  it('rejects bad values with the key path', async () => {
    expect((await expectConfigInvalid(make({ readsPerHour: 1.5 }))).message).toContain('onepassword.readsPerHour');
    expect((await expectConfigInvalid(make({ auth: 'password' }))).message).toContain('auto, desktop, service-account');
    expect((await expectConfigInvalid(make({ readsPerHour: 100, backgroundReadsPerHour: 200 }))).message).toContain(
      'must not exceed',
    );
    expect((await expectConfigInvalid(make({ batchWindow: '2s' }))).message).toContain('at most 1000ms');
    expect((await expectConfigInvalid(make({ batchWindow: 'soon' }))).message).toContain('10ms');
    expect((await expectConfigInvalid(make({ tokenFile: 'relative/token' }))).message).toContain('absolute path');
    expect((await expectConfigInvalid(make({ auth: 'desktop', tokenFile: '/x' }))).message).toContain(
      'remove one of them',
    );
  });

  it('keeps token-wide keys out of profile blocks', async () => {
    const h = harness();
    const err = await expectConfigInvalid(() => h.ref('op://Work/Anthropic/credential', 'work', { readsPerHour: 5 }));
    expect(err.message).toContain('profiles.work.onepassword');
    expect(err.message).toContain('top-level onepassword: block');
    expect(
      (await expectConfigInvalid(() => h.ref('op://Work/Anthropic/credential', 'work', { bogus: 1 }))).message,
    ).toContain('"bogus"');
  });
});

describe('op: credentials', () => {
  const uri = 'op://Work/Anthropic/credential';
  const seeded = (): FakeOnePasswordClient => {
    const fake = new FakeOnePasswordClient({ credentialText: TOKEN });
    fake.setField('Work', 'Anthropic', 'credential', VALUE);
    return fake;
  };

  it('with none configured, fails at once saying how to authenticate, and notes it in status', async () => {
    const h = harness({ env: {}, fake: seeded() });
    // Held, as a profile's cache holds it: status lists profiles that are still configured.
    const held = await h.ref(uri);
    const started = Date.now();
    const err = await h.fetchErr(uri);
    expect(Date.now() - started).toBeLessThan(500);
    expect(err.code).toBe('AUTH_REQUIRED');
    expect(err.fix).toContain('OP_SERVICE_ACCOUNT_TOKEN');
    expect(err.fix).toContain('OP_ACCOUNT');
    expect(err.fix).toContain('Integrate with other apps');
    expect(h.auths).toHaveLength(0);
    expect(h.adapter.status!().join('\n')).toContain('no credentials for profile t');
    expect(held.credential.kind).toBe('none');
  });

  it('uses OP_SERVICE_ACCOUNT_TOKEN, creating one client for every later fetch', async () => {
    const h = harness({ fake: seeded() });
    for (let n = 0; n < 4; n++) expect(await h.fetch(uri)).toBe(VALUE);
    expect(h.auths).toHaveLength(1);
    const auth = h.auths[0]!;
    expect(auth.kind).toBe('service-account');
    expect(auth.kind === 'service-account' && auth.token.equals(SecretValue.fromString(TOKEN))).toBe(true);
    expect(auth.label).toContain('OP_SERVICE_ACCOUNT_TOKEN');
  });

  it('uses the desktop app with OP_ACCOUNT, and a configured account over the environment token', async () => {
    const a = harness({ env: { OP_ACCOUNT: 'my-team' }, fake: seeded() });
    await a.fetch(uri);
    expect(a.auths[0]).toMatchObject({ kind: 'desktop', account: 'my-team' });
    const b = harness({
      settings: { account: 'configured' },
      env: { OP_SERVICE_ACCOUNT_TOKEN: TOKEN, OP_ACCOUNT: 'env-account' },
      fake: seeded(),
    });
    await b.fetch(uri);
    expect(b.auths[0]).toMatchObject({ kind: 'desktop', account: 'configured' });
  });

  it('honours auth: service-account and auth: desktop, failing clearly when that credential is missing', async () => {
    const a = harness({ settings: { auth: 'service-account' }, env: { OP_ACCOUNT: 'my-team' }, fake: seeded() });
    const err = await a.fetchErr(uri);
    expect(err.code).toBe('AUTH_REQUIRED');
    expect(err.message).toContain('auth: service-account');
    const b = harness({
      settings: { auth: 'desktop' },
      env: { OP_SERVICE_ACCOUNT_TOKEN: TOKEN, OP_ACCOUNT: 'mine' },
      fake: seeded(),
    });
    await b.fetch(uri);
    expect(b.auths[0]).toMatchObject({ kind: 'desktop', account: 'mine' });
  });

  it("lets a profile's block replace the top-level credential", async () => {
    const dir = privateTempDir('kb-op-');
    const tokenFile = path.join(dir, 'token');
    fs.writeFileSync(tokenFile, `${TOKEN}\n`, { mode: 0o600 });
    const h = harness({ settings: { tokenFile }, env: {}, fake: seeded() });
    const ref = await h.ref(uri, 'personal', { account: 'personal-account' });
    await h.adapter.fetch(ref, fetchContext());
    expect(h.auths[0]).toMatchObject({ kind: 'desktop', account: 'personal-account' });
  });

  it('reads a private token file, and a new token in it means a new client', async () => {
    const dir = privateTempDir('kb-op-');
    const tokenFile = path.join(dir, 'token');
    fs.writeFileSync(tokenFile, `  ${TOKEN}\n`, { mode: 0o600 });
    const h = harness({ settings: { tokenFile: tokenFile }, env: {}, fake: seeded() });
    expect(await h.fetch(uri)).toBe(VALUE);
    expect(await h.fetch(uri)).toBe(VALUE);
    expect(h.auths).toHaveLength(1);
    const auth = h.auths[0]!;
    expect(auth.kind === 'service-account' && auth.token.equals(SecretValue.fromString(TOKEN))).toBe(true);
    fs.writeFileSync(tokenFile, `${TOKEN}-rotated\n`);
    expect(await h.fetch(uri)).toBe(VALUE);
    expect(h.auths).toHaveLength(2);
    expect(h.adapter.status!()).toHaveLength(1);
  });

  it('refuses a token file others can read, a missing one, and one without a token', async () => {
    const dir = privateTempDir('kb-op-');
    const tokenFile = path.join(dir, 'token');
    const h = harness({ settings: { tokenFile }, env: {}, fake: seeded() });
    let err = await h.fetchErr(uri);
    expect(err.code).toBe('AUTH_REQUIRED');
    expect(err.message).toContain('does not exist');
    fs.writeFileSync(tokenFile, TOKEN, { mode: 0o644 });
    fs.chmodSync(tokenFile, 0o644);
    err = await h.fetchErr(uri);
    expect(err.code).toBe('PERMISSION_DENIED');
    expect(err.fix).toBe(`run: chmod 600 ${tokenFile}`);
    fs.chmodSync(tokenFile, 0o600);
    fs.writeFileSync(tokenFile, VALUE);
    err = await h.fetchErr(uri);
    expect(err.code).toBe('AUTH_REQUIRED');
    expect(err.message).toContain('"ops_"');
    expect(err.message).not.toContain(VALUE);
    fs.writeFileSync(tokenFile, '\n');
    err = await h.fetchErr(uri);
    expect(err.code).toBe('AUTH_REQUIRED');
    expect(err.message).toContain('empty');
    expect(h.auths).toHaveLength(0);
  });
});

describe('op: batching', () => {
  const seeded = (n: number): FakeOnePasswordClient => {
    const fake = new FakeOnePasswordClient({ credentialText: TOKEN });
    for (let i = 0; i < n; i++) fake.setField('Work', `Item${i}`, 'credential', `${VALUE}-${i}`);
    return fake;
  };
  const uriOf = (i: number) => `op://Work/Item${i}/credential`;

  it('sends fetches that fall due together as one resolveAll', async () => {
    const h = harness({ fake: seeded(3) });
    const refs = await Promise.all([0, 1, 2].map((i) => h.ref(uriOf(i))));
    const values = await Promise.all(refs.map((r) => h.adapter.fetch(r, fetchContext())));
    expect(values.map((v) => v.value.reveal())).toEqual([`${VALUE}-0`, `${VALUE}-1`, `${VALUE}-2`]);
    expect(h.fake.calls.resolveAll).toBe(1);
    expect(h.fake.calls.resolve).toBe(0);
    expect(h.fake.batches[0]!.sort()).toEqual([uriOf(0), uriOf(1), uriOf(2)].sort());
  });

  it('sends a reference asked for twice once, and joins a call already on its way', async () => {
    const h = harness({ fake: seeded(1) });
    const ref = await h.ref(uriOf(0));
    const release = h.fake.hold();
    const first = [h.adapter.fetch(ref, fetchContext()), h.adapter.fetch(ref, fetchContext())];
    // The first call is on its way (held by the fake), carrying both callers.
    await until(() => h.fake.calls.resolveAll === 1);
    const late = h.adapter.fetch(ref, fetchContext());
    release();
    const all = await Promise.all([...first, late]);
    expect(all.map((r) => r.value.reveal())).toEqual([`${VALUE}-0`, `${VALUE}-0`, `${VALUE}-0`]);
    expect(h.fake.batches).toEqual([[uriOf(0)]]);
  });

  it('holds a batch open for exactly the window, on the injected clock', async () => {
    const clock = new ManualClock(0);
    const sent: string[][] = [];
    const batcher = new ResolveBatcher<string>({
      windowMs: 10,
      maxBatch: 50,
      clock,
      send: async (references) => {
        sent.push(references);
        return new Map(references.map((r) => [r, `value of ${r}`]));
      },
    });
    const signal = new AbortController().signal;
    const first = [batcher.resolve('a', signal), batcher.resolve('b', signal)];
    expect(clock.pending()).toEqual([10]);
    clock.advance(5);
    first.push(batcher.resolve('c', signal));
    clock.advance(4);
    expect(sent).toEqual([]);
    clock.advance(1);
    expect(sent).toEqual([['a', 'b', 'c']]);
    expect(await Promise.all(first)).toEqual(['value of a', 'value of b', 'value of c']);
    // The next reference opens a window of its own.
    const late = batcher.resolve('d', signal);
    expect(clock.pending()).toEqual([20]);
    clock.advance(9);
    expect(sent).toHaveLength(1);
    clock.advance(1);
    expect(sent).toEqual([['a', 'b', 'c'], ['d']]);
    expect(await late).toBe('value of d');
  });

  it('sends fetches further apart than the window separately', async () => {
    const clock = new ManualClock(0);
    const h = harness({ settings: { batchWindow: '10ms' }, fake: seeded(2), clock });
    for (const i of [0, 1]) {
      const fetched = h.fetch(uriOf(i));
      // The reference is queued once the window's timer is set; the window closes only when the clock says so.
      await until(() => clock.pending().length > 0);
      expect(h.fake.calls.resolveAll).toBe(i);
      clock.advance(10);
      expect(await fetched).toBe(`${VALUE}-${i}`);
    }
    expect(h.fake.batches).toEqual([[uriOf(0)], [uriOf(1)]]);
  });

  it('splits a batch larger than maxBatch', async () => {
    const h = harness({ settings: { maxBatch: 2 }, fake: seeded(5) });
    const refs = await Promise.all([0, 1, 2, 3, 4].map((i) => h.ref(uriOf(i))));
    await Promise.all(refs.map((r) => h.adapter.fetch(r, fetchContext())));
    expect(h.fake.batches.map((b) => b.length)).toEqual([2, 2, 1]);
  });

  it('drops a reference whose caller gave up before the batch went out', async () => {
    const clock = new ManualClock(0);
    const h = harness({ settings: { batchWindow: '300ms' }, fake: seeded(2), clock });
    const [a, b] = await Promise.all([h.ref(uriOf(0)), h.ref(uriOf(1))]);
    const controller = new AbortController();
    const gaveUp = h.adapter.fetch(a, fetchContext({ signal: controller.signal })).then(
      () => undefined,
      (e: unknown) => e,
    );
    const kept = h.adapter.fetch(b, fetchContext());
    // The window is open, and stays open until the clock moves: nothing has gone out.
    await until(() => clock.pending().length > 0);
    expect(h.fake.calls.resolveAll).toBe(0);
    const reason = new BrokerError('TIMEOUT', 'test: gave up');
    controller.abort(reason);
    // The caller's own reason (its profile timeout), not a new error.
    expect(await gaveUp).toBe(reason);
    // Close the window (b's, whether or not it was queued before a left).
    await until(() => clock.pending().length > 0);
    clock.advance(300);
    expect((await kept).value.reveal()).toBe(`${VALUE}-1`);
    expect(h.fake.batches).toEqual([[uriOf(1)]]);
  });

  it('releases a caller whose signal aborts while 1Password is still answering', async () => {
    const h = harness({ fake: seeded(1) });
    const ref = await h.ref(uriOf(0));
    const release = h.fake.hold();
    const controller = new AbortController();
    const pending = h.adapter.fetch(ref, fetchContext({ signal: controller.signal })).then(
      () => undefined,
      (e: unknown) => e as BrokerError,
    );
    // 1Password has the call and holds it; the caller's profile timeout fires meanwhile.
    await until(() => h.fake.calls.resolveAll === 1);
    const reason = new BrokerError('TIMEOUT', 'test: profile timeout');
    controller.abort(reason);
    expect(await pending).toBe(reason);
    release();
    // The call that was on its way still completes and serves the next caller.
    expect(await h.fetch(uriOf(0))).toBe(`${VALUE}-0`);
  });
});

describe('op: read budget', () => {
  const seeded = (): FakeOnePasswordClient => {
    const fake = new FakeOnePasswordClient({ credentialText: TOKEN });
    for (let i = 0; i < 5; i++) fake.setField('Work', `Item${i}`, 'credential', `${VALUE}-${i}`);
    return fake;
  };
  const uriOf = (i: number) => `op://Work/Item${i}/credential`;

  it('refuses background refreshes over budget (transient RATE_LIMITED) while waited-for reads go out', async () => {
    let now = 1_000_000_000_000;
    const h = harness({
      settings: { readsPerHour: 10, backgroundReadsPerHour: 3 },
      fake: seeded(),
      clock: { now: () => now, setTimeout: systemClock.setTimeout },
    });
    for (const i of [0, 1]) await h.fetch(uriOf(i), 'miss');
    await h.fetch(uriOf(2), 'refresh-ahead');
    expect(h.fake.calls.references).toBe(3);
    const refused = await h.fetchErr(uriOf(3), 'refresh-ahead');
    expect(refused.code).toBe('RATE_LIMITED');
    expect(refused.transient).toBe(true);
    expect(refused.message).toContain('backgroundReadsPerHour');
    expect((await h.fetchErr(uriOf(3), 'retry')).code).toBe('RATE_LIMITED');
    expect(h.fake.calls.references).toBe(3);
    for (const reason of ['miss', 'explicit', 'rejected', 'check'] as const)
      expect(await h.fetch(uriOf(4), reason)).toBe(`${VALUE}-4`);
    expect(h.fake.calls.references).toBe(7);
    const [note] = h.adapter.status!();
    expect(note).toBe(
      'service account (OP_SERVICE_ACCOUNT_TOKEN): 7 reads in the last hour (limit 10; background refreshes stop at 3); 2 background refreshes held back',
    );
    // An hour later the reads have rolled off.
    now += 61 * 60_000;
    expect(await h.fetch(uriOf(3), 'refresh-ahead')).toBe(`${VALUE}-3`);
    expect(h.adapter.status!()[0]).toContain(': 1 reads in the last hour');
  });

  it('counts one read per reference, not per caller', async () => {
    const h = harness({ fake: seeded() });
    const ref = await h.ref(uriOf(0));
    await Promise.all([1, 2, 3].map(() => h.adapter.fetch(ref, fetchContext())));
    expect(h.adapter.status!()[0]).toContain(': 1 reads in the last hour');
  });

  it('pauses background refreshes after 1Password rate-limits the token', async () => {
    let now = 2_000_000_000_000;
    const h = harness({
      fake: seeded(),
      clock: { now: () => now, setTimeout: systemClock.setTimeout },
      random: () => 0.5,
    });
    h.fake.failNext('rate-limit');
    const err = await h.fetchErr(uriOf(0));
    expect(err.code).toBe('RATE_LIMITED');
    expect(err.transient).toBe(true);
    expect(err.status).toBe('RateLimitExceeded');
    // No Retry-After from the SDK: the adapter's own pause is what the cache's retry waits for.
    expect(err.retryAfterMs).toBe(RATE_LIMIT_PAUSE.baseMs);
    expect(err.message).toContain(uriOf(0));
    expect(h.adapter.status!()[0]).toContain('rate-limited by 1Password, background refreshes resume in 1m');
    const held = await h.fetchErr(uriOf(1), 'refresh-ahead');
    expect(held.code).toBe('RATE_LIMITED');
    expect(held.message).toContain('rate-limited');
    expect(held.retryAfterMs).toBe(RATE_LIMIT_PAUSE.baseMs);
    expect(await h.fetch(uriOf(1), 'miss')).toBe(`${VALUE}-1`);
    now += RATE_LIMIT_PAUSE.baseMs + 1;
    expect(await h.fetch(uriOf(2), 'refresh-ahead')).toBe(`${VALUE}-2`);
  });

  it('slides over an hour in minute buckets and backs off (capped, jittered) on repeated rate limits', () => {
    let now = 0;
    let random = 0.5;
    const b = new ReadBudget({ readsPerHour: 100, backgroundReadsPerHour: 10, now: () => now, random: () => random });
    b.record(4);
    now = 30 * 60_000;
    b.record(5);
    expect(b.readsLastHour()).toBe(9);
    expect(b.refuseBackground(0)).toBeUndefined();
    expect(b.refuseBackground(1)).toEqual({ why: 'budget', reads: 9, limit: 10 });
    now = 60 * 60_000;
    expect(b.readsLastHour()).toBe(5);
    now = 90 * 60_000;
    expect(b.readsLastHour()).toBe(0);
    expect(b.refusedLastHour()).toBe(0);
    const pauses = Array.from({ length: 8 }, () => b.noteRateLimited());
    expect(pauses.slice(0, 5)).toEqual([60_000, 120_000, 240_000, 480_000, 900_000]);
    expect(Math.max(...pauses)).toBe(RATE_LIMIT_PAUSE.capMs);
    random = 0;
    expect(b.noteRateLimited()).toBe(RATE_LIMIT_PAUSE.capMs * (1 - RATE_LIMIT_PAUSE.jitter));
    b.noteSuccess();
    random = 0.999;
    expect(b.noteRateLimited()).toBeLessThanOrEqual(RATE_LIMIT_PAUSE.baseMs * (1 + RATE_LIMIT_PAUSE.jitter));
    expect(b.refuseBackground(0)?.why).toBe('rate-limited');
  });

  it('with backgroundReadsPerHour: 0, never reads in the background', async () => {
    const h = harness({ settings: { backgroundReadsPerHour: 0 }, fake: seeded() });
    expect((await h.fetchErr(uriOf(0), 'refresh-ahead')).code).toBe('RATE_LIMITED');
    expect(h.fake.calls.resolveAll).toBe(0);
  });
});

describe('op: errors', () => {
  const uri = 'op://Work/Anthropic/credential';
  const seeded = (): FakeOnePasswordClient => {
    const fake = new FakeOnePasswordClient({ credentialText: TOKEN });
    fake.setField('Work', 'Anthropic', 'credential', VALUE);
    fake.setField('Work', 'Anthropic', 'key', VALUE, { section: 'API' });
    fake.setField('Work', 'Otp', 'one-time password', '123456', { kind: 'otp' });
    return fake;
  };

  const callFailures: Array<{
    failure: FakeFailure;
    code: string;
    transient: boolean;
    says: string;
    /** What the error's fix field holds, when it has one. */
    fix?: string;
    env?: NodeJS.ProcessEnv;
  }> = [
    { failure: 'rate-limit', code: 'RATE_LIMITED', transient: true, says: '10,000 on Business' },
    {
      failure: 'auth-expired',
      code: 'AUTH_REQUIRED',
      transient: false,
      says: 'no longer accepts',
      fix: 'create a new service account token',
    },
    {
      failure: 'auth-expired',
      code: 'AUTH_REQUIRED',
      transient: false,
      says: 'no longer accepts',
      fix: 'unlock the 1Password app for account "my-team"',
      env: { OP_ACCOUNT: 'my-team' },
    },
    {
      failure: 'desktop-session-expired',
      code: 'AUTH_REQUIRED',
      transient: false,
      says: 'has ended',
      fix: 'unlock the 1Password app for account "my-team"',
      env: { OP_ACCOUNT: 'my-team' },
    },
    {
      failure: 'bad-token',
      code: 'AUTH_REQUIRED',
      transient: false,
      says: 'not a valid service account token',
      fix: 'copy it again from 1Password',
    },
    {
      failure: 'not-authenticated',
      code: 'AUTH_REQUIRED',
      transient: false,
      says: 'did not accept',
      fix: 'create a new service account token',
    },
    { failure: 'forbidden', code: 'PERMISSION_DENIED', transient: false, says: 'grant it read access' },
    { failure: 'network', code: 'UNAVAILABLE', transient: true, says: 'cannot reach 1Password' },
    {
      failure: 'no-desktop-app',
      code: 'AUTH_REQUIRED',
      transient: false,
      says: 'Integrate with other apps',
      env: { OP_ACCOUNT: 'my-team' },
    },
    { failure: 'strange', code: 'SOURCE_ERROR', transient: false, says: 'details withheld' },
  ];

  it.each(callFailures)(
    'maps a $failure call failure to $code ($says; $fix)',
    async ({ failure, code, transient, says, fix, env }) => {
      const h = harness({ fake: seeded(), ...(env && { env }) });
      h.fake.failNext(failure);
      const err = await h.fetchErr(uri);
      expect(err.code).toBe(code);
      expect(err.transient).toBe(transient);
      expect(err.message).toContain(says);
      if (fix === undefined) expect(err.fix).toBeUndefined();
      else expect(err.fix).toContain(fix);
      expect(err.message).toContain(uri);
      expect(err.status).toBeDefined();
      expectClean(err.message);
      expectClean(h.logText());
      // Only the failing call failed.
      expect(await h.fetch(uri)).toBe(VALUE);
    },
  );

  it('after an auth failure, shows needs sign-in and makes a new client on the next fetch', async () => {
    const h = harness({ fake: seeded() });
    await h.fetch(uri);
    h.fake.failNext('auth-expired');
    await h.fetchErr(uri);
    expect(h.adapter.status!()[0]).toContain('needs sign-in');
    expect(await h.fetch(uri)).toBe(VALUE);
    expect(h.auths).toHaveLength(2);
    expect(h.adapter.status!()[0]).not.toContain('needs sign-in');
  });

  it('keeps the client after a failure that is not about authorisation', async () => {
    const h = harness({ fake: seeded() });
    h.fake.failNext('network');
    await h.fetchErr(uri);
    await h.fetch(uri);
    expect(h.auths).toHaveLength(1);
  });

  const referenceFailures: Array<{ uri: string; code: string; says: string }> = [
    { uri: 'op://Nope/Anthropic/credential', code: 'NOT_FOUND', says: 'sees no vault "Nope"' },
    { uri: 'op://Work/Nope/credential', code: 'NOT_FOUND', says: 'no item "Nope" in vault "Work"' },
    { uri: 'op://Work/Anthropic/nope', code: 'NOT_FOUND', says: 'has no field "nope"' },
    { uri: 'op://Work/Anthropic/Nope/key', code: 'NOT_FOUND', says: 'has no section "Nope"' },
    { uri: 'op://Work/Anthropic/credential?attribute=otp', code: 'INVALID_VALUE', says: 'one-time password field' },
  ];

  it.each(referenceFailures)('maps $uri to $code', async ({ uri: u, code, says }) => {
    const h = harness({ fake: seeded() });
    const err = await h.fetchErr(u);
    expect(err.code).toBe(code);
    expect(err.message).toContain(says);
    expect(err.message.startsWith(u)).toBe(true);
    expectClean(err.message);
  });

  it('resolves sections, OTP fields and IDs, and tells an ambiguous name to use the ID', async () => {
    const h = harness({ fake: seeded() });
    expect(await h.fetch('op://Work/Anthropic/API/key')).toBe(VALUE);
    expect(await h.fetch('op://Work/Otp/one-time password?attribute=otp')).toBe('123456');
    const { vaultId, itemId } = h.fake.idsOf('Work', 'Anthropic');
    expect(await h.fetch(`op://${vaultId}/${itemId}/credential`)).toBe(VALUE);
    h.fake.duplicateItem('Work', 'Anthropic');
    const err = await h.fetchErr(uri);
    expect(err.code).toBe('SOURCE_ERROR');
    expect(err.message).toContain('use its ID');
  });

  it('fails one reference of a batch without failing the others', async () => {
    const h = harness({ fake: seeded() });
    const [good, bad] = await Promise.all([h.ref(uri), h.ref('op://Work/Nope/credential')]);
    const results = await Promise.allSettled([
      h.adapter.fetch(good, fetchContext()),
      h.adapter.fetch(bad, fetchContext()),
    ]);
    expect(h.fake.calls.resolveAll).toBe(1);
    expect(results[0].status === 'fulfilled' && results[0].value.value.reveal()).toBe(VALUE);
    expect(results[1].status === 'rejected' && (results[1].reason as BrokerError).code).toBe('NOT_FOUND');
  });

  it('refuses a value too large to be a key, without quoting it', async () => {
    const fake = seeded();
    fake.setField('Work', 'Big', 'credential', `${VALUE}${'x'.repeat(MAX_SECRET_BYTES)}`);
    const err = await harness({ fake }).fetchErr('op://Work/Big/credential');
    expect(err.code).toBe('INVALID_VALUE');
    expectClean(err.message);
  });

  it('reports an answer that leaves the reference out', async () => {
    const client: OnePasswordClient = {
      secrets: {
        resolve: async () => '',
        resolveAll: async () => ({ individualResponses: {} }),
      },
    };
    const err = await harness({ factory: () => client }).fetchErr(uri);
    expect(err.code).toBe('SOURCE_ERROR');
    expect(err.message).toContain('did not include');
  });

  it('retries client creation after it failed, and bounds it', async () => {
    let attempts = 0;
    const fake = seeded();
    const h = harness({
      fake,
      factory: () => {
        attempts++;
        if (attempts === 1)
          throw new Error(
            `invalid service account token, please make sure you provide a valid service account token as parameter: ${TOKEN}`,
          );
        return fake;
      },
    });
    const err = await h.fetchErr(uri);
    expect(err.code).toBe('AUTH_REQUIRED');
    expectClean(err.message);
    expect(await h.fetch(uri)).toBe(VALUE);
    expect(attempts).toBe(2);

    const stuck = harness({
      env: { OP_ACCOUNT: 'my-team' },
      clientTimeoutMs: 50,
      factory: () => new Promise<OnePasswordClient>(() => {}),
    });
    const slow = await stuck.fetchErr(uri);
    expect(slow.code).toBe('AUTH_REQUIRED');
    expect(slow.message).toContain('did not authorise keybroker');
  });

  it('bounds a resolveAll that never answers', async () => {
    const h = harness({ fake: seeded(), requestTimeoutMs: 50 });
    const release = h.fake.hold();
    const err = await h.fetchErr(uri);
    release();
    expect(err.code).toBe('UNAVAILABLE');
    expect(err.transient).toBe(true);
  });

  it('gives up at once on an aborted signal, and after close refuses with SHUTTING_DOWN', async () => {
    const clock = new ManualClock(0);
    const h = harness({ settings: { batchWindow: '200ms' }, fake: seeded(), clock });
    const controller = new AbortController();
    const reason = new BrokerError('TIMEOUT', 'test: already aborted');
    controller.abort(reason);
    expect(await h.fetchErr(uri, 'miss', controller.signal)).toBe(reason);
    const ref = await h.ref(uri);
    const queued = h.adapter.fetch(ref, fetchContext()).then(
      () => undefined,
      (e: unknown) => e as BrokerError,
    );
    // Queued: its window is open, and stays open until the clock moves.
    await until(() => clock.pending().length > 0);
    await h.adapter.close();
    expect((await queued)?.code).toBe('SHUTTING_DOWN');
    expect((await h.fetchErr(uri)).code).toBe('SHUTTING_DOWN');
    expect(h.fake.calls.resolveAll).toBe(0);
  });
});

describe('op: secrets stay out of logs, status and errors', () => {
  it('over a run of successes and failures', async () => {
    const fake = new FakeOnePasswordClient({ credentialText: TOKEN });
    fake.setField('Work', 'Anthropic', 'credential', VALUE);
    const h = harness({ fake });
    const uri = 'op://Work/Anthropic/credential';
    const messages: string[] = [];
    await h.fetch(uri);
    for (const failure of ['bad-token', 'strange', 'rate-limit', 'auth-expired', 'network'] as const) {
      fake.failNext(failure);
      messages.push((await h.fetchErr(uri)).message);
    }
    messages.push((await h.fetchErr('op://Work/Anthropic/missing')).message);
    await h.fetch(uri);
    expect(h.logText()).toContain('1Password call failed');
    expectClean(h.logText());
    expectClean(messages.join('\n'));
    expectClean(h.adapter.status!().join('\n'));
  });
});

describe('op: the real SDK client factory, offline', () => {
  afterEach(() => {
    vi.restoreAllMocks();
  });

  it('turns createClient rejecting a malformed token into AUTH_REQUIRED without quoting it', async () => {
    const badToken = 'ops_not-a-real-token-5e1f';
    const { log, text } = capturedLog();
    const adapter = createAdapter({ settings: undefined, env: { OP_SERVICE_ACCOUNT_TOKEN: badToken }, log });
    const ref = await adapter.parse('op://Work/Anthropic/credential', { overrides: undefined, profile: 't' });
    const err = (await adapter.fetch(ref, fetchContext()).then(
      () => undefined,
      (e: unknown) => e,
    )) as BrokerError;
    expect(err.code).toBe('AUTH_REQUIRED');
    expect(err.message).toContain('not a valid service account token');
    expect(err.message).not.toContain(badToken);
    expect(text()).not.toContain(badToken);
    await adapter.close();
  });

  const desktopAppInstalled = [
    '/usr/bin/1password/libop_sdk_ipc_client.so',
    '/opt/1Password/libop_sdk_ipc_client.so',
    '/Applications/1Password.app',
  ].some((p) => fs.existsSync(p));

  // With the app installed this would ask for a real approval: run it only where there is none.
  it.skipIf(desktopAppInstalled)(
    'reports a missing desktop app as AUTH_REQUIRED with what to install and turn on',
    async () => {
      // The SDK prints its own stack trace when the app is missing; keep the test output readable.
      vi.spyOn(console, 'error').mockImplementation(() => {});
      const adapter = createAdapter({ settings: { account: 'my-team' }, env: {}, log: silent });
      const ref = await adapter.parse('op://Work/Anthropic/credential', { overrides: undefined, profile: 't' });
      const err = (await adapter.fetch(ref, fetchContext()).then(
        () => undefined,
        (e: unknown) => e,
      )) as BrokerError;
      expect(err.code).toBe('AUTH_REQUIRED');
      expect(err.message).toContain('Integrate with other apps');
      await adapter.close();
    },
  );

  it('tells 1Password our real version', () => {
    const pkg = JSON.parse(fs.readFileSync(path.resolve(import.meta.dirname, '../../package.json'), 'utf8')) as {
      version: string;
    };
    expect(INTEGRATION_VERSION).toBe(pkg.version);
  });
});

/** Wait for asynchronous work (the adapter's own awaits) to reach a state; fails after 5 s. */
async function until(check: () => boolean): Promise<void> {
  const deadline = Date.now() + 5000;
  while (!check()) {
    if (Date.now() > deadline) throw new Error('timed out waiting for the condition');
    await new Promise((r) => setImmediate(r));
  }
}
