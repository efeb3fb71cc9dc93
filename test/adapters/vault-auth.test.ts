// AppRole auth against the fake Vault, with time driven by a manual clock shared by the adapter
// (renewal timers) and the fake (token expiry): login, renewal at about 2/3 of the TTL, re-login
// when renewal fails or the token runs out, backoff between failed logins, and clean shutdown.
import fs from 'node:fs';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { LOGIN_BACKOFF } from '../../adapters/vault/vault-auth.js';
import { backoffDelay } from '../../src/adapter.js';
import { createVaultAdapter, type VaultRef } from '../../adapters/vault/vault-adapter.js';
import type { Adapter } from '../../src/adapter.js';
import { BrokerError } from '../../src/errors.js';
import { createLogger } from '../../src/log.js';
import { fetchContext } from '../contract/adapter-contract.js';
import type { AppRoleOptions, FakeVault } from '../fakes/fake-vault.js';
import { cleanUp, privateTempDir } from '../helpers/cleanup.js';
import { ManualClock } from '../helpers/manual-clock.js';
import { startFakeVault } from '../helpers/vault.js';

const log = createLogger({ level: 'silent' });
const ROLE = 'role-auth-test';
const SECRET_ID = 'sid-auth-test-3c9f';
const URI = 'vault://secret/app#api_key';

interface Rig {
  fake: FakeVault;
  clock: ManualClock;
  adapter: Adapter<VaultRef>;
  ref: VaultRef;
  dir: string;
  fetch(): Promise<string>;
  fetchError(): Promise<BrokerError>;
  logins(): number;
  renewals(): number;
}

async function rig(
  role: Partial<AppRoleOptions> = {},
  settings: Record<string, unknown> = { auth: { method: 'approle' } },
  env: NodeJS.ProcessEnv = {},
  clock = new ManualClock(),
): Promise<Rig> {
  const { fake } = await startFakeVault({
    now: clock.now,
    secrets: { 'secret/app': { api_key: 'sk-approle' } },
    token: false,
  });
  fake.createAppRole({ roleId: ROLE, secretId: SECRET_ID, read: ['secret/data/*'], tokenTtlSec: 60, ...role });
  const dir = privateTempDir('kb-vault-auth-');
  const adapter = createVaultAdapter(
    {
      settings,
      env: { VAULT_ADDR: fake.url, HOME: dir, VAULT_ROLE_ID: ROLE, VAULT_SECRET_ID: SECRET_ID, ...env },
      log,
    },
    // 0.5 puts renewal exactly at 2/3 of the TTL and backoff exactly at its base.
    { clock, random: () => 0.5 },
  );
  cleanUp(() => adapter.close());
  const ref = await adapter.parse(URI, { overrides: undefined, profile: 'auth' });
  const r: Rig = {
    fake,
    clock,
    adapter,
    ref,
    dir,
    fetch: async () => (await adapter.fetch(ref, fetchContext())).value.reveal(),
    fetchError: async () => {
      const e = await adapter.fetch(ref, fetchContext()).then(
        () => undefined,
        (err: unknown) => err,
      );
      expect(e).toBeInstanceOf(BrokerError);
      return e as BrokerError;
    },
    logins: () => fake.count({ path: 'auth/approle/login' }),
    renewals: () => fake.count({ path: 'auth/token/renew-self' }),
  };
  return r;
}

/**
 * Wait for background work the clock set off (real HTTP to the fake Vault) to reach a state. Only
 * for what must happen: that something does NOT happen is shown with the clock (no timer pending).
 */
async function settle(check: () => boolean, timeoutMs = 5000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!check()) {
    if (Date.now() > deadline) throw new Error('timed out waiting for the background work');
    await new Promise((r) => setTimeout(r, 5));
  }
}

describe('vault AppRole auth', () => {
  it('logs in once, sends role_id and secret_id, and reuses the token', async () => {
    const r = await rig();
    expect(await r.fetch()).toBe('sk-approle');
    expect(await r.fetch()).toBe('sk-approle');
    expect(r.logins()).toBe(1);
    const login = r.fake.requests.find((q) => q.path === 'auth/approle/login')!;
    expect(login.token).toBeUndefined();
    const token = r.fake.issuedTokens()[0];
    expect(r.fake.requests.filter((q) => q.path.startsWith('secret/')).every((q) => q.token === token)).toBe(true);
  });

  it('shares one login among concurrent fetches', async () => {
    const r = await rig();
    const values = await Promise.all(Array.from({ length: 5 }, () => r.fetch()));
    expect(values).toEqual(Array(5).fill('sk-approle'));
    expect(r.logins()).toBe(1);
  });

  it('renews at 2/3 of the TTL, before expiry, and keeps the same token past its first expiry', async () => {
    const r = await rig({ tokenTtlSec: 60 });
    await r.fetch();
    const loginAt = r.clock.now();
    expect(r.clock.pending()).toEqual([loginAt + 40_000]);
    r.clock.advance(39_999);
    // Renewal starts only from its timer, which is still pending: nothing has been sent.
    expect(r.clock.pending()).toEqual([loginAt + 40_000]);
    expect(r.renewals()).toBe(0);
    r.clock.advance(1);
    // Renewed to a full TTL from now, so the next renewal is 2/3 of it later.
    await settle(() => r.renewals() === 1 && r.clock.pending().length === 1);
    expect(r.clock.pending()).toEqual([loginAt + 40_000 + 40_000]);
    r.clock.advance(30_000); // 70 s: past the first lease, within the renewed one
    expect(await r.fetch()).toBe('sk-approle');
    expect(r.logins()).toBe(1);
    const renew = r.fake.requests.find((q) => q.path === 'auth/token/renew-self')!;
    expect(renew.method).toBe('POST');
    expect(renew.token).toBe(r.fake.issuedTokens()[0]);
  });

  it('logs in again, in the background, when renewal is refused', async () => {
    const r = await rig({ tokenTtlSec: 60 });
    await r.fetch();
    r.fake.failNext(1, 403, ['permission denied'], 'auth/token/renew-self');
    r.clock.advance(40_000);
    await settle(() => r.logins() === 2);
    const fresh = r.fake.issuedTokens()[1];
    expect(await r.fetch()).toBe('sk-approle');
    expect(r.fake.requests.at(-1)?.token).toBe(fresh);
    expect(r.logins()).toBe(2);
  });

  it('logs in again before the old token runs out when the token is not renewable', async () => {
    const r = await rig({ tokenTtlSec: 60, renewable: false });
    await r.fetch();
    r.clock.advance(40_000);
    await settle(() => r.logins() === 2);
    expect(r.renewals()).toBe(0);
    r.clock.advance(25_000); // the first token has expired at the fake
    expect(await r.fetch()).toBe('sk-approle');
    expect(r.logins()).toBe(2);
  });

  it('stops renewing at the max TTL and logs in again before the token ends', async () => {
    const r = await rig({ tokenTtlSec: 60, tokenMaxTtlSec: 90 });
    await r.fetch();
    const loginAt = r.clock.now();
    // Step from timer to timer, letting each renewal's answer schedule the next, and read the
    // profile in between, as a profile in use is.
    for (let i = 0; i < 20 && r.logins() < 2; i++) {
      const due = r.clock.pending()[0]!;
      r.clock.advance(due - r.clock.now());
      await settle(() => r.logins() === 2 || r.clock.pending().some((t) => t > due));
      await r.fetch();
    }
    expect(r.logins()).toBe(2);
    // Renewed while renewal still moved the expiry (each one shorter, capped by the max TTL)...
    expect(r.renewals()).toBeGreaterThanOrEqual(2);
    // ...and the new login came before the first token's max TTL ran out.
    const relogin = r.fake.requests.filter((q) => q.path === 'auth/approle/login')[1]!;
    expect(relogin.at - loginAt).toBeGreaterThan(80_000);
    expect(relogin.at - loginAt).toBeLessThan(90_000);
    expect(await r.fetch()).toBe('sk-approle');
    expect(r.logins()).toBe(2);
  });

  it('renews a token used once even though time passed while it was being issued', async () => {
    // Each reading of this clock moves it 1 ms on, as a real login takes time.
    const r = await rig({ tokenTtlSec: 60 }, undefined, undefined, new ManualClock(undefined, 1));
    // ?kv=2: no preflight, so the login's own token() call is the only use before the renewal.
    const ref = await r.adapter.parse('vault://secret/app?kv=2#api_key', { overrides: undefined, profile: 'auth' });
    expect((await r.adapter.fetch(ref, fetchContext())).value.reveal()).toBe('sk-approle');
    r.clock.advance(41_000);
    await settle(() => r.renewals() === 1);
    expect(r.logins()).toBe(1);
  });

  it('does not keep renewing a token nobody uses; the next fetch logs in again', async () => {
    const r = await rig({ tokenTtlSec: 60 });
    await r.fetch();
    // One renewal after the last use, as the cache refreshes an unread profile once more...
    r.clock.advance(40_000);
    await settle(() => r.renewals() === 1 && r.clock.pending().length === 1);
    // ...and none after that: the next renewal's timer fires, finds the token unused since the
    // last renewal, and neither sends anything nor schedules another timer.
    r.clock.advance(40_000);
    expect(r.clock.pending()).toEqual([]);
    r.clock.advance(60_000);
    expect(await r.fetch()).toBe('sk-approle');
    expect(r.logins()).toBe(2);
    // A renewal sent at the 80 s timer would have reached the fake before this fetch's login.
    expect(r.renewals()).toBe(1);
  });

  it('logs in again after the token has expired (the daemon slept through the renewal)', async () => {
    const r = await rig({ tokenTtlSec: 60 });
    await r.fetch();
    // The renewal fires, but Vault has already expired the token (the machine was asleep).
    r.fake.failNext(1, 403, ['permission denied'], 'auth/token/renew-self');
    r.fake.failNext(1, 503, ['Vault is sealed'], 'auth/approle/login');
    r.clock.advance(70_000);
    await settle(() => r.logins() === 2);
    // The background login failed; the next fetch logs in once its backoff has passed.
    expect((await r.fetchError()).code).toBe('UNAVAILABLE');
    r.clock.advance(LOGIN_BACKOFF.baseMs);
    expect(await r.fetch()).toBe('sk-approle');
    expect(r.logins()).toBe(3);
  });

  it('logs in again when Vault refuses a revoked token mid-life, and retries the read once', async () => {
    const r = await rig();
    await r.fetch();
    r.fake.revokeToken(r.fake.issuedTokens()[0]!);
    expect(await r.fetch()).toBe('sk-approle');
    expect(r.logins()).toBe(2);
  });

  it('does not log in again for a path the policy does not grant', async () => {
    const r = await rig({ read: ['secret/data/app'] });
    await r.fetch();
    const ref = await r.adapter.parse('vault://secret/other?kv=2#api_key', { overrides: undefined, profile: 'auth' });
    r.fake.put('secret/other', { api_key: 'sk-other' });
    const err = await r.adapter.fetch(ref, fetchContext()).catch((e: unknown) => e as BrokerError);
    expect((err as BrokerError).code).toBe('PERMISSION_DENIED');
    expect(r.logins()).toBe(1);
    expect(r.fake.count({ path: 'auth/token/lookup-self' })).toBe(1);
  });

  it('retries renewal with backoff while Vault is sealed, keeping the still-valid token', async () => {
    const r = await rig({ tokenTtlSec: 60 });
    await r.fetch();
    r.fake.failNext(1, 503, ['Vault is sealed'], 'auth/token/renew-self');
    r.clock.advance(40_000);
    await settle(() => r.renewals() === 1 && r.clock.pending().length === 1);
    expect(r.clock.pending()).toEqual([r.clock.now() + LOGIN_BACKOFF.baseMs]);
    r.clock.advance(LOGIN_BACKOFF.baseMs);
    await settle(() => r.renewals() === 2);
    expect(r.logins()).toBe(1);
    expect(await r.fetch()).toBe('sk-approle');
  });

  it('backs off between failed logins, answering with the last error meanwhile', async () => {
    const r = await rig({}, { auth: { method: 'approle' } }, { VAULT_SECRET_ID: 'sid-wrong' });
    const first = await r.fetchError();
    expect(first.code).toBe('AUTH_REQUIRED');
    expect(first.message).toContain('AppRole login at auth/approle was refused (400: invalid role or secret ID)');
    expect(first.message).not.toContain('sid-wrong');
    // The same error, answered at once: no new login attempt while backing off.
    expect(await r.fetchError()).toBe(first);
    expect(r.logins()).toBe(1);
    r.clock.advance(LOGIN_BACKOFF.baseMs);
    await r.fetchError();
    expect(r.logins()).toBe(2);
    // The second failure doubles the wait.
    r.clock.advance(LOGIN_BACKOFF.baseMs);
    await r.fetchError();
    expect(r.logins()).toBe(2);
    r.clock.advance(LOGIN_BACKOFF.baseMs);
    await r.fetchError();
    expect(r.logins()).toBe(3);
  });

  it('reads role_id and secret_id from files, and names a missing one', async () => {
    const r = await rig(
      {},
      { auth: { method: 'approle', roleIdFile: '~/role-id', secretIdFile: '~/secret-id', mount: 'approle' } },
      { VAULT_ROLE_ID: '', VAULT_SECRET_ID: '' },
    );
    fs.writeFileSync(path.join(r.dir, 'role-id'), `${ROLE}\n`, { mode: 0o600 });
    const missing = await r.fetchError();
    expect(missing.code).toBe('AUTH_REQUIRED');
    expect(missing.message).toBe('AppRole secret_id: ~/secret-id does not exist');
    fs.writeFileSync(path.join(r.dir, 'secret-id'), `${SECRET_ID}\n`, { mode: 0o600 });
    r.clock.advance(LOGIN_BACKOFF.capMs);
    expect(await r.fetch()).toBe('sk-approle');
  });

  it('names an unset environment variable for the secret_id', async () => {
    const r = await rig({}, { auth: { method: 'approle', secretIdEnv: 'MY_SECRET_ID' } });
    const err = await r.fetchError();
    expect(err.code).toBe('AUTH_REQUIRED');
    expect(err.message).toContain("MY_SECRET_ID is not set in the daemon's environment");
  });

  it('reports a missing AppRole mount clearly', async () => {
    const r = await rig({}, { auth: { method: 'approle', mount: 'robots' } });
    const err = await r.fetchError();
    expect(err.code).toBe('AUTH_REQUIRED');
    expect(err.message).toContain('no AppRole auth method at auth/robots');
  });

  it('says in status whether it is logged in, without the token', async () => {
    const r = await rig({ tokenTtlSec: 3600 });
    await r.fetch();
    const [note] = r.adapter.status!();
    expect(note).toBe(`${r.fake.url}: AppRole (auth/approle): logged in, token valid 59m50s, renewable, renewed 0×`);
    for (const t of r.fake.issuedTokens()) expect(note).not.toContain(t);
  });

  it('cancels its timers and refuses work after close', async () => {
    const r = await rig();
    await r.fetch();
    expect(r.clock.pending()).toHaveLength(1);
    await r.adapter.close();
    expect(r.clock.pending()).toHaveLength(0);
    const err = await r.fetchError();
    expect(err.code).toBe('SHUTTING_DOWN');
  });
});

describe('vault login backoff', () => {
  it('doubles from its base, is capped, and is jittered within ±20%', () => {
    const mid = () => 0.5;
    expect(backoffDelay(1, LOGIN_BACKOFF, mid)).toBe(1_000);
    expect(backoffDelay(2, LOGIN_BACKOFF, mid)).toBe(2_000);
    expect(backoffDelay(5, LOGIN_BACKOFF, mid)).toBe(16_000);
    expect(backoffDelay(50, LOGIN_BACKOFF, mid)).toBe(LOGIN_BACKOFF.capMs);
    expect(backoffDelay(50, LOGIN_BACKOFF, () => 0)).toBe(LOGIN_BACKOFF.capMs * 0.8);
    expect(backoffDelay(50, LOGIN_BACKOFF, () => 0.999999)).toBeLessThanOrEqual(LOGIN_BACKOFF.capMs * 1.2);
  });
});
