// End to end: the built daemon serves vault:// profiles from the fake Vault, and the shim prints
// them when run through `sh -c`, the way Claude Code runs apiKeyHelper.
import { beforeAll, describe, expect, it } from 'vitest';
import type { FakeVault } from '../fakes/fake-vault.js';
import { startDaemon, type DaemonHandle } from '../helpers/daemon.js';
import { startFakeVault } from '../helpers/vault.js';

const KEY = 'sk-ant-api03-e2e-vault-4b7c1d';
const ROTATED = 'sk-ant-api03-e2e-vault-rotated-9e2f';
const ROBOT_KEY = 'sk-ant-api03-e2e-approle-0a6d';
const SECRET_ID = 'sid-e2e-71bd0c';

describe('daemon serving vault:// profiles through the shim', () => {
  let fake: FakeVault;
  let daemon: DaemonHandle;
  let token: string;

  beforeAll(async () => {
    const vault = await startFakeVault({
      kv: { secret: 2, kv: 1 },
      secrets: {
        'secret/anthropic': { api_key: KEY, org: 'not-the-key' },
        'kv/robot': { api_key: ROBOT_KEY },
        'secret/flaky': { api_key: 'sk-flaky-cached' },
      },
    });
    ({ fake, token } = vault);
    fake.createAppRole({ roleId: 'role-e2e', secretId: SECRET_ID, read: ['kv/*'], tokenTtlSec: 3600 });
    daemon = await startDaemon({
      config: [
        'profiles:',
        '  work:',
        '    source: vault://secret/anthropic#api_key',
        '  robot:',
        '    source: vault://kv/robot',
        '    vault:',
        '      auth: { method: approle }',
        '  missing:',
        '    source: vault://secret/nope#api_key',
        '  flaky:',
        '    source: vault://secret/flaky?kv=2#api_key',
        '    ttl: 1s',
        '',
      ].join('\n'),
      env: { ...vault.env, VAULT_ROLE_ID: 'role-e2e', VAULT_SECRET_ID: SECRET_ID },
    });
  });

  it('prints the key and exits 0, then answers from the cache without another read', async () => {
    const first = await daemon.shim('work');
    expect(first.stderr).toBe('');
    expect(first.code).toBe(0);
    expect(first.stdout).toBe(`${KEY}\n`);
    const reads = fake.count({ path: 'secret/data/anthropic' });
    const second = await daemon.shim('work');
    expect(second.stdout).toBe(`${KEY}\n`);
    expect(fake.count({ path: 'secret/data/anthropic' })).toBe(reads);
  });

  it('serves a rotated value on --refresh', async () => {
    fake.put('secret/anthropic', { api_key: ROTATED, org: 'not-the-key' });
    const refreshed = await daemon.shim('--refresh work');
    expect(refreshed.code).toBe(0);
    expect(refreshed.stdout).toBe(`${ROTATED}\n`);
  });

  it('logs in with AppRole for a profile that asks for it', async () => {
    const robot = await daemon.shim('robot');
    expect(robot.stderr).toBe('');
    expect(robot.stdout).toBe(`${ROBOT_KEY}\n`);
    expect(fake.count({ path: 'auth/approle/login' })).toBe(1);
  });

  it('fails a missing secret with one clear line and the NOT_FOUND exit status', async () => {
    const missing = await daemon.shim('missing');
    expect(missing.code).toBe(10);
    expect(missing.stdout).toBe('');
    expect(missing.stderr.trim().split('\n')).toHaveLength(1);
    expect(missing.stderr).toContain(`no secret at secret/nope in Vault at ${fake.url} (404)`);
  });

  it('serves the cached value, with a warning, while Vault is sealed', async () => {
    expect((await daemon.shim('flaky')).stdout).toBe('sk-flaky-cached\n');
    fake.seal();
    try {
      await new Promise((r) => setTimeout(r, 1_200)); // past the 1 s TTL
      const stale = await daemon.shim('flaky');
      expect(stale.code).toBe(0);
      expect(stale.stdout).toBe('sk-flaky-cached\n');
      expect(stale.stderr).toContain('sealed');
    } finally {
      fake.unseal();
    }
  });

  it('keeps the token, the secret_id and the values out of the daemon log', async () => {
    const log = daemon.log();
    expect(log).toContain('vault');
    const tokens = fake.requests.map((r) => r.token).filter((t): t is string => !!t);
    expect(tokens).toContain(token);
    for (const secret of [...new Set(tokens), SECRET_ID, KEY, ROTATED, ROBOT_KEY, 'sk-flaky-cached']) {
      expect(log).not.toContain(secret);
    }
  });
});
