// vault:// against a fake Vault server that speaks Vault's HTTP API, through the real node-vault
// client: the shared contract, KV v1/v2 reads, the preflight, fields, errors, TLS, settings, and
// that no token, secret_id or value reaches a log line, an error or a status note.
import fs from 'node:fs';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { afterEach, beforeAll, describe, expect, it } from 'vitest';
import { createAdapter, createVaultAdapter, type VaultRef } from '../../adapters/vault/vault-adapter.js';
import type { Adapter, AdapterInit } from '../../src/adapter.js';
import { BrokerError } from '../../src/errors.js';
import { createLogger } from '../../src/log.js';
import { describeAdapterContract, fetchContext } from '../contract/adapter-contract.js';
import { KV1_DEFAULT_LEASE_SEC, type FakeVault } from '../fakes/fake-vault.js';
import { capturedLog } from '../helpers/captured-log.js';
import { cleanUp, privateTempDir as tempDir } from '../helpers/cleanup.js';
import { ManualClock } from '../helpers/manual-clock.js';
import { startFakeVault } from '../helpers/vault.js';

const silent = createLogger({ level: 'silent' });

/** An adapter closed when the test (or, made in a beforeAll, the file) is done. */
function vaultAdapter(env: NodeJS.ProcessEnv, settings?: Record<string, unknown>, log = silent): Adapter<VaultRef> {
  const adapter = createAdapter({ settings, env, log });
  cleanUp(() => adapter.close());
  return adapter;
}

async function parse(
  adapter: Adapter<VaultRef>,
  uri: string,
  overrides?: Record<string, unknown>,
  profile = 't',
): Promise<VaultRef> {
  return adapter.parse(uri, { overrides, profile });
}

async function read(adapter: Adapter<VaultRef>, uri: string, overrides?: Record<string, unknown>) {
  return adapter.fetch(await parse(adapter, uri, overrides), fetchContext());
}

async function failure(
  adapter: Adapter<VaultRef>,
  uri: string,
  overrides?: Record<string, unknown>,
  signal?: AbortSignal,
): Promise<BrokerError> {
  const ref = await parse(adapter, uri, overrides);
  const outcome = await adapter.fetch(ref, fetchContext(signal ? { signal } : {})).then(
    () => undefined,
    (e: unknown) => e,
  );
  expect(outcome).toBeInstanceOf(BrokerError);
  return outcome as BrokerError;
}

async function parseFailure(
  adapter: Adapter<VaultRef>,
  uri: string,
  overrides?: Record<string, unknown>,
): Promise<BrokerError> {
  const outcome = await Promise.resolve()
    .then(() => adapter.parse(uri, { overrides, profile: 't' }))
    .then(
      () => undefined,
      (e: unknown) => e,
    );
  expect(outcome, uri).toBeInstanceOf(BrokerError);
  return outcome as BrokerError;
}

/** A port nothing listens on (bound once, then released). */
async function closedPort(): Promise<number> {
  const server = http.createServer();
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as AddressInfo;
  await new Promise<void>((resolve) => server.close(() => resolve()));
  return port;
}

// ---- the shared contract ------------------------------------------------------------------------

describeAdapterContract('vault', async () => {
  const { fake, token } = await startFakeVault({ token: { read: ['secret/data/contract/*'] } });
  const home = tempDir('kb-vault-c-');
  return {
    adapter: vaultAdapter({ VAULT_ADDR: fake.url, VAULT_TOKEN: token, HOME: home }),
    uriFor: (name) => `vault://secret/contract/${name}#api_key`,
    put: async (name, value) => {
      fake.put(`secret/contract/${name}`, { api_key: value, note: 'not this one' });
    },
    missingUri: 'vault://secret/contract/missing#api_key',
    invalidUris: [
      'vault:secret/x#f',
      'vault://',
      'vault://secret',
      'vault://secret/#f',
      'vault://secret//x#f',
      'vault://secret/../x#f',
      'vault://secret/x#',
      'vault://secret/x?version=0#f',
      'vault://secret/x?version=abc#f',
      'vault://secret/x?kv=3#f',
      'vault://secret/x?kv=1&version=2#f',
      'vault://secret/x?field=f',
      'vault://secret/x?version=1&version=2#f',
      'vault://secret/a%2Fb#f',
      'vault://secret/x%ZZ#f',
    ],
  };
});

// The same contract over KV v1 with AppRole auth: the other engine and the other login.
describeAdapterContract('vault', async () => {
  const { fake } = await startFakeVault({ kv: { kv: 1 }, token: false });
  fake.createAppRole({
    roleId: 'role-contract',
    secretId: 'sid-contract-5f2e',
    read: ['kv/contract/*'],
    tokenTtlSec: 600,
  });
  const home = tempDir('kb-vault-c1-');
  return {
    adapter: vaultAdapter(
      { VAULT_ADDR: fake.url, HOME: home, VAULT_ROLE_ID: 'role-contract', VAULT_SECRET_ID: 'sid-contract-5f2e' },
      { auth: { method: 'approle' } },
    ),
    uriFor: (name) => `vault://kv/contract/${name}`,
    put: async (name, value) => {
      fake.put(`kv/contract/${name}`, { api_key: value, ttl: '1h' });
    },
    missingUri: 'vault://kv/contract/missing',
    invalidUris: ['vault://kv', 'vault://kv/x?kv=1&version=3'],
  };
});

// ---- KV reads ---------------------------------------------------------------------------------

describe('vault source: KV v1 and v2', () => {
  let fake: FakeVault;
  let token: string;
  let adapter: Adapter<VaultRef>;
  const home = tempDir('kb-vault-kv-');

  beforeAll(async () => {
    ({ fake, token } = await startFakeVault({
      kv: { secret: 2, kv: 1, 'team/kv': 2 },
      token: { read: ['secret/data/*', 'kv/*', 'team/kv/data/*'] },
    }));
    adapter = vaultAdapter({ VAULT_ADDR: fake.url, VAULT_TOKEN: token, HOME: home });
  });
  afterEach(() => fake.clearRequests());

  it('detects KV v2 with the preflight once, then reads data/ with the token and the CLI header', async () => {
    fake.put('secret/anthropic', { api_key: 'sk-kv2-one' });
    const ref = await parse(adapter, 'vault://secret/anthropic#api_key');
    const first = await adapter.fetch(ref, fetchContext());
    const second = await adapter.fetch(ref, fetchContext());
    expect(first.value.reveal()).toBe('sk-kv2-one');
    expect(second.value.reveal()).toBe('sk-kv2-one');
    expect(first.version).toBe('1');
    // KV v2 reads carry lease_duration 0: no TTL cap.
    expect(first.ttlMs).toBeUndefined();
    expect(fake.count({ path: 'sys/internal/ui/mounts/secret/anthropic' })).toBe(1);
    expect(fake.count({ path: 'secret/data/anthropic' })).toBe(2);
    expect(fake.requests.every((r) => r.token === token && r.vaultRequest)).toBe(true);
  });

  it('picks up a rotated value on the next fetch and reports the new version', async () => {
    fake.put('secret/rotating', { api_key: 'sk-old' });
    const ref = await parse(adapter, 'vault://secret/rotating#api_key');
    expect((await adapter.fetch(ref, fetchContext())).value.reveal()).toBe('sk-old');
    fake.put('secret/rotating', { api_key: 'sk-new' });
    const after = await adapter.fetch(ref, fetchContext({}, 'refresh-ahead'));
    expect(after.value.reveal()).toBe('sk-new');
    expect(after.version).toBe('2');
  });

  it('keeps serving a pinned version after rotation', async () => {
    fake.put('secret/pinned', { api_key: 'sk-v1' });
    fake.put('secret/pinned', { api_key: 'sk-v2' });
    fake.put('secret/pinned', { api_key: 'sk-v3' });
    const pinned = await read(adapter, 'vault://secret/pinned?version=2#api_key');
    expect(pinned.value.reveal()).toBe('sk-v2');
    expect(pinned.version).toBe('2');
    expect(fake.requests.some((r) => r.path === 'secret/data/pinned' && r.query.version === '2')).toBe(true);
    expect((await read(adapter, 'vault://secret/pinned#api_key')).value.reveal()).toBe('sk-v3');
  });

  it('names the version when a pinned version does not exist, was deleted or destroyed', async () => {
    fake.put('secret/versions', { api_key: 'sk-a' });
    fake.put('secret/versions', { api_key: 'sk-b' });
    fake.put('secret/versions', { api_key: 'sk-c' });
    const absent = await failure(adapter, 'vault://secret/versions?version=9#api_key');
    expect(absent.code).toBe('NOT_FOUND');
    expect(absent.message).toContain('secret/versions version 9');
    fake.deleteVersion('secret/versions', 1);
    const deleted = await failure(adapter, 'vault://secret/versions?version=1#api_key');
    expect(deleted.code).toBe('NOT_FOUND');
    expect(deleted.message).toContain('version 1 was deleted');
    fake.destroyVersion('secret/versions', 2);
    const destroyed = await failure(adapter, 'vault://secret/versions?version=2#api_key');
    expect(destroyed.message).toContain('version 2 was destroyed');
    for (const e of [absent, deleted, destroyed]) expect(e.message).not.toMatch(/sk-[abc]/);
  });

  it('detects KV v1, reads <mount>/<path>, and turns lease_duration into ttlMs', async () => {
    fake.put('kv/with-ttl', { api_key: 'sk-kv1-ttl', ttl: '30m' });
    fake.put('kv/default-ttl', { api_key: 'sk-kv1' });
    const withTtl = await read(adapter, 'vault://kv/with-ttl#api_key');
    expect(withTtl.value.reveal()).toBe('sk-kv1-ttl');
    expect(withTtl.ttlMs).toBe(30 * 60_000);
    expect(withTtl.version).toBeUndefined();
    expect((await read(adapter, 'vault://kv/default-ttl#api_key')).ttlMs).toBe(KV1_DEFAULT_LEASE_SEC * 1000);
    expect(fake.count({ path: 'kv/with-ttl' })).toBe(1);
    expect(fake.count({ pathPrefix: 'kv/data/' })).toBe(0);
  });

  it('refuses ?version= on an engine the preflight finds to be KV v1', async () => {
    fake.put('kv/nover', { api_key: 'sk-nover' });
    const err = await failure(adapter, 'vault://kv/nover?version=1#api_key');
    expect(err.code).toBe('CONFIG_INVALID');
    expect(err.message).toContain('KV v1');
  });

  it('finds a mount that spans several segments from the preflight answer', async () => {
    fake.put('team/kv/app/key', { api_key: 'sk-team' });
    expect((await read(adapter, 'vault://team/kv/app/key#api_key')).value.reveal()).toBe('sk-team');
    expect(fake.count({ path: 'team/kv/data/app/key' })).toBe(1);
  });

  it('encodes path segments, so names with spaces work', async () => {
    fake.put('secret/with space/key', { api_key: 'sk-space' });
    expect((await read(adapter, 'vault://secret/with%20space/key#api_key')).value.reveal()).toBe('sk-space');
  });

  it('uses the only key when no #field is given, and lists the names (never values) when there are several', async () => {
    fake.put('secret/single', { only: 'sk-single' });
    expect((await read(adapter, 'vault://secret/single')).value.reveal()).toBe('sk-single');
    fake.put('secret/several', { api_key: 'sk-several-1', org: 'sk-several-2' });
    const err = await failure(adapter, 'vault://secret/several');
    expect(err.code).toBe('CONFIG_INVALID');
    expect(err.message).toContain('2 fields (api_key, org)');
    expect(err.message).toContain('vault://secret/several#api_key');
    expect(err.message).not.toContain('sk-several');
  });

  it("does not count KV v1's own ttl key as a field", async () => {
    fake.put('kv/single-ttl', { api_key: 'sk-kv1-single', ttl: '1h' });
    expect((await read(adapter, 'vault://kv/single-ttl')).value.reveal()).toBe('sk-kv1-single');
  });

  it('names the missing field and the fields present, without values', async () => {
    fake.put('secret/fields', { api_key: 'sk-fields-value', org_id: 'org-value' });
    const err = await failure(adapter, 'vault://secret/fields#token');
    expect(err.code).toBe('NOT_FOUND');
    expect(err.message).toBe('secret/fields has no field "token"; its fields: api_key, org_id');
  });

  it('refuses a field that is not text', async () => {
    fake.put('secret/nested', { api_key: { nested: 'sk-nested' } });
    const err = await failure(adapter, 'vault://secret/nested#api_key');
    expect(err.code).toBe('INVALID_VALUE');
    expect(err.message).not.toContain('sk-nested');
  });

  it('stops reading a response larger than a KV secret can be', async () => {
    fake.put('secret/huge', { api_key: 'x'.repeat(2 * 1024 * 1024) });
    const err = await failure(adapter, 'vault://secret/huge#api_key');
    expect(err.code).toBe('SOURCE_ERROR');
    expect(err.message).toContain('more than 1048576 bytes');
  });

  it('refuses a URI that names only the mount', async () => {
    const err = await failure(adapter, 'vault://team/kv');
    expect(err.code).toBe('CONFIG_INVALID');
    expect(err.message).toContain('names the mount team/kv itself');
  });
});

describe('vault source: the KV version preflight and ?kv=', () => {
  let fake: FakeVault;
  let adapter: Adapter<VaultRef>;
  const home = tempDir('kb-vault-pf-');

  beforeAll(async () => {
    const vault = await startFakeVault({
      kv: { secret: 2, kv: 1 },
      secrets: { 'secret/app': { api_key: 'sk-pf-v2' }, 'kv/app': { api_key: 'sk-pf-v1' } },
      token: { read: ['secret/data/app', 'kv/app'] },
    });
    fake = vault.fake;
    adapter = vaultAdapter({ VAULT_ADDR: fake.url, VAULT_TOKEN: vault.token, HOME: home });
  });
  afterEach(() => fake.clearRequests());

  it('explains a refused preflight and points at ?kv=', async () => {
    fake.failNext(1, 403, ['permission denied'], 'sys/internal/ui/mounts/');
    const err = await failure(adapter, 'vault://secret/app#api_key');
    expect(err.code).toBe('PERMISSION_DENIED');
    expect(err.message).toContain('?kv=2');
    expect(err.status).toBe(403);
  });

  it('skips the preflight when ?kv=2 or ?kv=1 names the engine', async () => {
    fake.failNext(100, 403, ['permission denied'], 'sys/internal/ui/mounts/');
    try {
      expect((await read(adapter, 'vault://secret/app?kv=2#api_key')).value.reveal()).toBe('sk-pf-v2');
      expect((await read(adapter, 'vault://kv/app?kv=1#api_key')).value.reveal()).toBe('sk-pf-v1');
      expect(fake.count({ pathPrefix: 'sys/internal/ui/mounts/' })).toBe(0);
    } finally {
      fake.clearFailures();
    }
  });

  it('treats a Vault without the preflight endpoint (404) as KV v1, as the CLI does', async () => {
    const { fake: old, token } = await startFakeVault({ kv: { secret: 1 }, token: { root: true } });
    old.setPreflight('missing');
    old.put('secret/legacy', { api_key: 'sk-legacy' });
    const legacy = vaultAdapter({ VAULT_ADDR: old.url, VAULT_TOKEN: token, HOME: home });
    expect((await read(legacy, 'vault://secret/legacy#api_key')).value.reveal()).toBe('sk-legacy');
    expect(old.count({ path: 'secret/legacy' })).toBe(1);
  });

  it('detects again after a read fails, so a remounted engine is found', async () => {
    const ref = await parse(adapter, 'vault://secret/app#api_key');
    await adapter.fetch(ref, fetchContext());
    fake.failNext(1, 404, [], 'secret/data/app');
    await expect(adapter.fetch(ref, fetchContext())).rejects.toMatchObject({ code: 'NOT_FOUND' });
    await adapter.fetch(ref, fetchContext());
    expect(fake.count({ pathPrefix: 'sys/internal/ui/mounts/' })).toBe(2);
  });
});

describe('vault source: namespaces', () => {
  it('sends X-Vault-Namespace on every request and reads the namespace’s own mounts', async () => {
    const { fake } = await startFakeVault({ kv: {}, token: false });
    fake.enableKv('secret', 2, { namespace: 'team-a' });
    fake.put('secret/anthropic', { api_key: 'sk-namespaced' }, 'team-a');
    fake.createAppRole({ roleId: 'ns-role', secretId: 'ns-sid-91c3', read: ['secret/data/*'], namespace: 'team-a' });
    const home = tempDir('kb-vault-ns-');
    const env = {
      VAULT_ADDR: fake.url,
      HOME: home,
      VAULT_NAMESPACE: 'team-a/',
      VAULT_ROLE_ID: 'ns-role',
      VAULT_SECRET_ID: 'ns-sid-91c3',
    };
    const adapter = vaultAdapter(env, { auth: { method: 'approle' } });
    const outside = vaultAdapter({ ...env, VAULT_NAMESPACE: '' }, { auth: { method: 'approle' } });
    expect((await read(adapter, 'vault://secret/anthropic#api_key')).value.reveal()).toBe('sk-namespaced');
    expect(fake.requests.map((r) => r.path)).toEqual([
      'auth/approle/login',
      'sys/internal/ui/mounts/secret/anthropic',
      'secret/data/anthropic',
    ]);
    expect(fake.requests.every((r) => r.namespace === 'team-a')).toBe(true);
    // Without the header the same login and path are not there.
    fake.clearRequests();
    const err = await failure(outside, 'vault://secret/anthropic#api_key');
    expect(err.code).toBe('AUTH_REQUIRED');
    expect(fake.requests.every((r) => r.namespace === undefined)).toBe(true);
  });

  it('lets a profile set its own namespace over the top-level block', async () => {
    const { fake, token } = await startFakeVault({ kv: {}, token: { root: true } });
    fake.enableKv('secret', 2, { namespace: 'team-b' });
    fake.put('secret/k', { api_key: 'sk-team-b' }, 'team-b');
    const home = tempDir('kb-vault-ns2-');
    const adapter = vaultAdapter({ VAULT_ADDR: fake.url, VAULT_TOKEN: token, HOME: home }, { namespace: 'team-a' });
    expect((await read(adapter, 'vault://secret/k#api_key', { namespace: 'team-b' })).value.reveal()).toBe('sk-team-b');
    expect(fake.requests.every((r) => r.namespace === 'team-b')).toBe(true);
  });
});

// ---- errors ---------------------------------------------------------------------------------------

describe('vault source: error mapping', () => {
  let fake: FakeVault;
  let token: string;
  let adapter: Adapter<VaultRef>;
  const home = tempDir('kb-vault-err-');

  beforeAll(async () => {
    ({ fake, token } = await startFakeVault({
      secrets: { 'secret/app': { api_key: 'sk-err-app' }, 'secret/forbidden': { api_key: 'sk-err-forbidden' } },
      token: { read: ['secret/data/app', 'secret/data/missing'] },
    }));
    adapter = vaultAdapter({ VAULT_ADDR: fake.url, VAULT_TOKEN: token, HOME: home });
  });
  afterEach(() => fake.unseal());

  const expectNoToken = (err: BrokerError): void => {
    expect(err.message).not.toContain(token);
    expect(JSON.stringify(err.toWire())).not.toContain(token);
  };

  it('403 → PERMISSION_DENIED naming mount/path and the policy, not transient', async () => {
    const err = await failure(adapter, 'vault://secret/forbidden?kv=2#api_key');
    expect(err.code).toBe('PERMISSION_DENIED');
    expect(err.message).toBe("permission denied reading secret/forbidden: check the token's policy");
    expect(err.status).toBe(403);
    expect(err.transient).toBe(false);
    expectNoToken(err);
  });

  it('404 → NOT_FOUND naming mount/path and the Vault address', async () => {
    const err = await failure(adapter, 'vault://secret/missing#api_key');
    expect(err.code).toBe('NOT_FOUND');
    expect(err.message).toBe(`no secret at secret/missing in Vault at ${fake.url} (404)`);
    expect(err.transient).toBe(false);
  });

  it('503 sealed → UNAVAILABLE, transient, so the cache serves stale and backs off', async () => {
    fake.seal();
    const err = await failure(adapter, 'vault://secret/app#api_key');
    expect(err.code).toBe('UNAVAILABLE');
    expect(err.transient).toBe(true);
    expect(err.status).toBe(503);
    expect(err.message).toContain('sealed');
    expect(err.message).toContain('Vault is sealed');
    expectNoToken(err);
  });

  it('429 → RATE_LIMITED, transient', async () => {
    fake.rateLimit(1);
    const err = await failure(adapter, 'vault://secret/app?kv=2#api_key');
    expect(err.code).toBe('RATE_LIMITED');
    expect(err.transient).toBe(true);
    expect(err.status).toBe(429);
    expect(err.retryAfterMs).toBeUndefined();
  });

  it('429 with Retry-After → RATE_LIMITED carrying how long Vault asked to wait', async () => {
    fake.rateLimit(1, '120');
    const err = await failure(adapter, 'vault://secret/app?kv=2#api_key');
    expect(err.code).toBe('RATE_LIMITED');
    expect(err.retryAfterMs).toBe(120_000);
  });

  it('5xx → UNAVAILABLE, transient, with Vault’s own message scrubbed of anything token-shaped', async () => {
    fake.failNext(1, 500, [`1 error occurred:\n\t* internal error with ${token}\n\n`], 'secret/data/app');
    const err = await failure(adapter, 'vault://secret/app?kv=2#api_key');
    expect(err.code).toBe('UNAVAILABLE');
    expect(err.transient).toBe(true);
    expect(err.message).toContain('internal error with [masked]');
    expectNoToken(err);
  });

  it('412 (eventual consistency) → UNAVAILABLE, transient', async () => {
    fake.failNext(1, 412, ['required index state not present'], 'secret/data/app');
    const err = await failure(adapter, 'vault://secret/app?kv=2#api_key');
    expect(err.code).toBe('UNAVAILABLE');
    expect(err.transient).toBe(true);
  });

  it('connection refused → UNAVAILABLE, transient, naming the address', async () => {
    const port = await closedPort();
    const down = vaultAdapter({ VAULT_ADDR: `http://127.0.0.1:${port}`, VAULT_TOKEN: token, HOME: home });
    const err = await failure(down, 'vault://secret/app#api_key');
    expect(err.code).toBe('UNAVAILABLE');
    expect(err.transient).toBe(true);
    expect(err.status).toBe('ECONNREFUSED');
    expect(err.message).toBe(
      `cannot connect to Vault at http://127.0.0.1:${port} (connection refused): is Vault running, and is VAULT_ADDR right?`,
    );
    expectNoToken(err);
  });

  it('gives up at once when the profile timeout aborts a request Vault never answers', async () => {
    fake.stall('secret/data/slow');
    fake.put('secret/slow', { api_key: 'sk-slow' });
    const controller = new AbortController();
    setTimeout(() => controller.abort(new BrokerError('TIMEOUT', 'profile timeout')), 150);
    const started = Date.now();
    const err = await failure(adapter, 'vault://secret/slow?kv=2#api_key', undefined, controller.signal);
    expect(err.code).toBe('TIMEOUT');
    expect(err.message).toBe('profile timeout');
    expect(Date.now() - started).toBeLessThan(2000);
  });

  it('an invalid or expired token from ~/.vault-token → AUTH_REQUIRED saying run vault login', async () => {
    const dir = tempDir('kb-vault-home-');
    fs.writeFileSync(path.join(dir, '.vault-token'), 'hvs.not-a-token-the-fake-issued-000000\n', { mode: 0o600 });
    const stale = vaultAdapter({ VAULT_ADDR: fake.url, HOME: dir });
    const err = await failure(stale, 'vault://secret/app#api_key');
    expect(err.code).toBe('AUTH_REQUIRED');
    expect(err.message).toContain('~/.vault-token is invalid or expired');
    expect(err.fix).toBe('run vault login');
    expect(err.message).not.toContain('not-a-token');
    // `vault login` writes a new token: picked up on the next fetch, no restart.
    fs.writeFileSync(path.join(dir, '.vault-token'), `${token}\n`);
    expect((await read(stale, 'vault://secret/app#api_key')).value.reveal()).toBe('sk-err-app');
  });

  it('a revoked VAULT_TOKEN → AUTH_REQUIRED naming VAULT_TOKEN; a valid one without the policy → PERMISSION_DENIED', async () => {
    const revoked = fake.createToken({ read: ['secret/data/*'] });
    fake.revokeToken(revoked);
    const a = vaultAdapter({ VAULT_ADDR: fake.url, VAULT_TOKEN: revoked, HOME: home });
    const err = await failure(a, 'vault://secret/app?kv=2#api_key');
    expect(err.code).toBe('AUTH_REQUIRED');
    expect(err.message).toContain('the Vault token from VAULT_TOKEN is invalid or expired');
    expect(err.message).not.toContain(revoked);
    expect(fake.count({ path: 'auth/token/lookup-self' })).toBeGreaterThan(0);
  });

  it('no token anywhere → AUTH_REQUIRED saying how to get one', async () => {
    const dir = tempDir('kb-vault-empty-');
    const none = vaultAdapter({ VAULT_ADDR: fake.url, HOME: dir });
    const before = fake.requests.length;
    const err = await failure(none, 'vault://secret/app#api_key');
    expect(err.code).toBe('AUTH_REQUIRED');
    expect(err.message).toContain('run vault login');
    // Nothing was sent without a token.
    expect(fake.requests.length).toBe(before);
  });
});

// ---- TLS ----------------------------------------------------------------------------------------

describe('vault source: TLS (VAULT_CACERT, VAULT_CAPATH, VAULT_SKIP_VERIFY)', () => {
  let fake: FakeVault;
  let plain: FakeVault;
  let token: string;
  /** The certificates' directory, and HOME. */
  let dir: string;
  let certFile: string;
  const uri = 'vault://secret/tls#api_key';

  beforeAll(async () => {
    const tls = await startFakeVault({
      tls: true,
      secrets: { 'secret/tls': { api_key: 'sk-over-tls' } },
      token: { root: true },
    });
    ({ fake, token, dir } = tls);
    certFile = tls.cert!.certFile;
    fs.mkdirSync(path.join(dir, 'cas'));
    fs.copyFileSync(certFile, path.join(dir, 'cas', 'vault.pem'));
    fs.writeFileSync(path.join(dir, 'cas', 'README'), 'not a certificate\n');
    ({ fake: plain } = await startFakeVault({ kv: {}, token: false }));
  });

  const env = (extra: NodeJS.ProcessEnv): NodeJS.ProcessEnv => ({
    VAULT_ADDR: fake.url,
    VAULT_TOKEN: token,
    HOME: dir,
    ...extra,
  });

  const attempt = async (e: NodeJS.ProcessEnv, settings?: Record<string, unknown>) => {
    const adapter = vaultAdapter(e, settings);
    try {
      return await read(adapter, uri).then(
        (r) => ({ value: r.value.reveal(), err: undefined }),
        (err: unknown) => ({ value: undefined, err: err as BrokerError }),
      );
    } finally {
      await adapter.close();
    }
  };

  it('trusts the server with VAULT_CACERT', async () => {
    expect((await attempt(env({ VAULT_CACERT: certFile }))).value).toBe('sk-over-tls');
  });

  it('trusts the server with VAULT_CAPATH (a directory of PEM files, others skipped)', async () => {
    expect((await attempt(env({ VAULT_CAPATH: path.join(dir, 'cas') }))).value).toBe('sk-over-tls');
  });

  it('takes vault.caCert from the config over the environment', async () => {
    expect((await attempt(env({ VAULT_CACERT: '/nonexistent/ca.pem' }), { caCert: certFile })).value).toBe(
      'sk-over-tls',
    );
  });

  it('refuses an untrusted certificate with a clear, non-transient error', async () => {
    const { err } = await attempt(env({}));
    expect(err?.code).toBe('SOURCE_ERROR');
    expect(err?.transient).toBe(false);
    expect(err?.status).toBe('DEPTH_ZERO_SELF_SIGNED_CERT');
    expect(err?.message).toContain('set VAULT_CACERT');
  });

  it('skips verification only when VAULT_SKIP_VERIFY is true (as Vault parses it)', async () => {
    expect((await attempt(env({ VAULT_SKIP_VERIFY: 'true' }))).value).toBe('sk-over-tls');
    expect((await attempt(env({ VAULT_SKIP_VERIFY: 'false' }))).err?.code).toBe('SOURCE_ERROR');
    const adapter = vaultAdapter(env({ VAULT_SKIP_VERIFY: 'maybe' }));
    expect((await parseFailure(adapter, uri)).code).toBe('CONFIG_INVALID');
  });

  it('checks the name the certificate carries (VAULT_TLS_SERVER_NAME)', async () => {
    expect((await attempt(env({ VAULT_CACERT: certFile, VAULT_TLS_SERVER_NAME: 'localhost' }))).value).toBe(
      'sk-over-tls',
    );
    const { err } = await attempt(env({ VAULT_CACERT: certFile, VAULT_TLS_SERVER_NAME: 'vault.example.com' }));
    expect(err?.code).toBe('SOURCE_ERROR');
    expect(err?.status).toBe('ERR_TLS_CERT_ALTNAME_INVALID');
    expect(err?.message).toContain('VAULT_TLS_SERVER_NAME');
  });

  it('explains an https:// address pointed at a plain-HTTP server', async () => {
    const { err } = await attempt({
      VAULT_ADDR: plain.url.replace('http://', 'https://'),
      VAULT_TOKEN: token,
      HOME: dir,
    });
    expect(err?.code).toBe('SOURCE_ERROR');
    expect(err?.message).toContain('TLS handshake');
  });

  it('presents a client certificate (VAULT_CLIENT_CERT, VAULT_CLIENT_KEY) to a Vault that requires one', async () => {
    const mtls = await startFakeVault({
      tls: 'mutual',
      secrets: { 'secret/tls': { api_key: 'sk-over-mtls' } },
      token: { root: true },
    });
    const client = mtls.client!;
    const base = { VAULT_ADDR: mtls.url, VAULT_TOKEN: mtls.token, HOME: dir, VAULT_CACERT: mtls.cert!.certFile };
    expect(
      (await attempt({ ...base, VAULT_CLIENT_CERT: client.certFile, VAULT_CLIENT_KEY: client.keyFile })).value,
    ).toBe('sk-over-mtls');
    const without = await attempt(base);
    expect(without.value).toBeUndefined();
    expect(mtls.fake.count({ path: 'secret/data/tls' })).toBe(1);
  });

  it('reports a missing CA file as a config problem naming the file', async () => {
    const { err } = await attempt(env({ VAULT_CACERT: path.join(dir, 'absent.pem') }));
    expect(err?.code).toBe('CONFIG_INVALID');
    expect(err?.message).toContain('absent.pem (ENOENT)');
  });
});

// ---- settings and URIs ----------------------------------------------------------------------------

describe('vault source: settings and URIs', () => {
  const env = {
    VAULT_ADDR: 'https://vault.example.com:8200',
    VAULT_TOKEN: 'hvs.settings-test-token-0000000000',
    HOME: '/home/u',
  };

  it('describes a reference by its URI, canonical and without any value', async () => {
    const adapter = vaultAdapter(env);
    expect(adapter.describe(await parse(adapter, 'vault://secret/anthropic#api_key'))).toBe(
      'vault://secret/anthropic#api_key',
    );
    expect(adapter.describe(await parse(adapter, 'vault://secret/a%20b?kv=2&version=3#api_key'))).toBe(
      'vault://secret/a%20b?version=3&kv=2#api_key',
    );
  });

  it('resolves the environment and lets the config override it', async () => {
    const adapter = vaultAdapter(env, { namespace: 'top' });
    const ref = await parse(adapter, 'vault://secret/x#f', { address: 'http://127.0.0.1:8200/' });
    expect(ref.settings.address).toBe('http://127.0.0.1:8200');
    expect(ref.settings.namespace).toBe('top');
    expect(ref.settings.auth).toEqual({ method: 'token', source: { kind: 'env', name: 'VAULT_TOKEN' } });
    const defaults = await parse(vaultAdapter({ HOME: '/home/u' }), 'vault://secret/x#f');
    expect(defaults.settings.address).toBe('https://127.0.0.1:8200');
    expect(defaults.settings.auth).toEqual({
      method: 'token',
      source: { kind: 'file', path: '/home/u/.vault-token', label: '~/.vault-token' },
    });
    const file = await parse(vaultAdapter(env, { tokenFile: '~/tokens/vault' }), 'vault://secret/x#f');
    expect(file.settings.auth).toEqual({
      method: 'token',
      source: { kind: 'file', path: '/home/u/tokens/vault', label: '~/tokens/vault' },
    });
  });

  it('never puts the token into the reference or its connection key', async () => {
    const ref = await parse(vaultAdapter(env), 'vault://secret/x#f');
    expect(JSON.stringify(ref)).not.toContain(env.VAULT_TOKEN);
  });

  it('refuses secrets and mistakes in the vault: block with clear CONFIG_INVALID messages', async () => {
    const cases: Array<[Record<string, unknown>, string]> = [
      [{ token: 'hvs.x' }, 'vault.token: a Vault token does not belong in the config file'],
      [
        { auth: { method: 'approle', secretId: 'x' } },
        'vault.auth.secretId: a secret_id does not belong in the config file',
      ],
      [{ adress: 'https://x' }, 'vault: unknown key "adress"'],
      [{ skipVerify: 'yes' }, 'vault.skipVerify: must be true or false'],
      [{ auth: { method: 'ldap' } }, 'vault.auth'],
      [{ auth: { method: 'approle', mount: '/bad//mount' } }, 'vault.auth.mount'],
    ];
    for (const [settings, message] of cases) {
      let thrown: unknown;
      try {
        vaultAdapter(env, settings);
      } catch (err) {
        thrown = err;
      }
      expect(thrown, JSON.stringify(settings)).toBeInstanceOf(BrokerError);
      expect((thrown as BrokerError).code).toBe('CONFIG_INVALID');
      expect((thrown as BrokerError).message).toContain(message);
    }
  });

  it('checks the resolved settings at parse time, naming where each came from', async () => {
    const cases: Array<[NodeJS.ProcessEnv, Record<string, unknown> | undefined, string]> = [
      [{ ...env, VAULT_ADDR: 'vault.example.com' }, undefined, 'VAULT_ADDR is not a URL'],
      [{ ...env, VAULT_ADDR: 'unix:///run/vault.sock' }, undefined, 'VAULT_ADDR must be an http:// or https:// URL'],
      [
        { ...env, VAULT_ADDR: 'https://user:pw@vault.example.com' },
        undefined,
        'must not carry a user name or password',
      ],
      [{ ...env, VAULT_CACERT: 'relative/ca.pem' }, undefined, 'VAULT_CACERT must be an absolute path'],
      [{ ...env, VAULT_CLIENT_CERT: '/c.pem' }, undefined, 'needs both VAULT_CLIENT_CERT and VAULT_CLIENT_KEY'],
      [env, { auth: { method: 'approle', roleId: 'r', roleIdFile: '/r' } }, 'one way only'],
      [env, { address: 'ftp://vault' }, 'vault.address must be an http:// or https:// URL'],
    ];
    for (const [e, overrides, message] of cases) {
      const err = await parseFailure(vaultAdapter(e), 'vault://secret/x#f', overrides);
      expect(err.code).toBe('CONFIG_INVALID');
      expect(err.message).toContain(message);
    }
  });

  it('keeps the URI text out of its parse errors', async () => {
    const pasted = 'sk-ant-api03-pasted-where-a-uri-belongs';
    const err = await parseFailure(vaultAdapter(env), `vault:${pasted}`);
    expect(err.message).not.toContain(pasted);
  });

  it('sends profiles with different settings to different Vaults', async () => {
    const a = await startFakeVault({ secrets: { 'secret/k': { api_key: 'sk-from-a' } }, token: { root: true } });
    const b = await startFakeVault({ secrets: { 'secret/k': { api_key: 'sk-from-b' } }, token: { root: true } });
    const dir = tempDir('kb-vault-two-');
    fs.writeFileSync(path.join(dir, 'b-token'), b.token, { mode: 0o600 });
    const adapter = vaultAdapter({ VAULT_ADDR: a.url, VAULT_TOKEN: a.token, HOME: dir });
    expect((await read(adapter, 'vault://secret/k#api_key')).value.reveal()).toBe('sk-from-a');
    expect(
      (await read(adapter, 'vault://secret/k#api_key', { address: b.url, tokenFile: '~/b-token' })).value.reveal(),
    ).toBe('sk-from-b');
    expect(adapter.status!()).toEqual([`${a.url}: token from VAULT_TOKEN`, `${b.url}: token from ~/b-token`]);
  });
});

// ---- secrets stay out of logs, errors and status ------------------------------------------------------

describe('vault source: no token, secret_id or value in logs, errors or status', () => {
  it('logs at trace level through login, fetches, renewal, failures and re-login without any of them', async () => {
    const clock = new ManualClock();
    const values = ['sk-ant-log-check-value-1', 'sk-ant-log-check-value-2'];
    const { fake } = await startFakeVault({
      now: clock.now,
      secrets: { 'secret/app': { api_key: values[0] } },
      token: false,
    });
    const secretId = 'sid-log-check-7d1e93ab';
    fake.createAppRole({
      roleId: 'role-log-check',
      secretId,
      read: ['secret/data/app', 'secret/data/missing'],
      tokenTtlSec: 60,
    });
    const { log, text: logText } = capturedLog('trace');
    const init: AdapterInit = {
      settings: { auth: { method: 'approle' } },
      env: { VAULT_ADDR: fake.url, HOME: os.tmpdir(), VAULT_ROLE_ID: 'role-log-check', VAULT_SECRET_ID: secretId },
      log,
    };
    const adapter = createVaultAdapter(init, { clock, random: () => 0.5 });
    cleanUp(() => adapter.close());
    const ctx = () => fetchContext({ log });
    const messages: string[] = [];
    const capture = async (uri: string): Promise<void> => {
      const ref = await adapter.parse(uri, { overrides: undefined, profile: 'logcheck' });
      await adapter.fetch(ref, ctx()).then(
        (r) => messages.push(JSON.stringify(r), String(r.value)),
        (e: unknown) => messages.push((e as Error).message, JSON.stringify((e as BrokerError).toWire())),
      );
    };
    await capture('vault://secret/app#api_key');
    // Renewal at 2/3 of the TTL.
    clock.advance(40_000);
    await waitUntil(() => fake.count({ path: 'auth/token/renew-self' }) === 1);
    fake.put('secret/app', { api_key: values[1] });
    await capture('vault://secret/app#api_key');
    await capture('vault://secret/forbidden?kv=2#api_key');
    await capture('vault://secret/missing#api_key');
    fake.seal();
    await capture('vault://secret/app#api_key');
    fake.unseal();
    // The token is revoked: a 403, a fresh login, a retry.
    for (const t of fake.issuedTokens()) fake.revokeToken(t);
    await capture('vault://secret/app#api_key');
    messages.push(...adapter.status!());
    expect(fake.count({ path: 'auth/approle/login' })).toBe(2);
    expect(logText()).toContain('logged in with AppRole');
    expect(logText()).toContain('token renewed');
    expect(logText()).toContain('logging in again');
    expect(messages.join('\n')).toContain('permission denied reading secret/forbidden');
    const forbidden = [
      ...fake.requests.map((r) => r.token).filter((t): t is string => !!t),
      secretId,
      'role-log-check',
      ...values,
    ];
    expect(forbidden.length).toBeGreaterThan(4);
    for (const secret of forbidden) {
      expect(logText(), 'log').not.toContain(secret);
      expect(messages.join('\n'), 'errors and status').not.toContain(secret);
    }
  });
});

async function waitUntil(check: () => boolean, timeoutMs = 5000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!check()) {
    if (Date.now() > deadline) throw new Error('timed out waiting for the condition');
    await new Promise((r) => setTimeout(r, 10));
  }
}
