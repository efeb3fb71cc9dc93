// The managed (organisation) config: trusted only when root owns it and nobody else can write it,
// then its profiles override the user's, its locked keys hold, and status, doctor and config check
// say so. Real daemons read real files; ownership is changed with chown, so the trusted cases run
// as root (as CI does) and skip with the reason otherwise.
import fs from 'node:fs';
import path from 'node:path';
import { beforeEach, describe, expect, it } from 'vitest';
import { mergeManagedConfig, resolveManagedConfigPath } from '../../src/config/managed.js';
import { parseConfigText, parseManagedConfigText } from '../../src/config/load.js';
import { startDaemon as startLifecycle } from '../../src/daemon/lifecycle.js';
import { reloadDaemon } from '../../src/integration/daemon-reload.js';
import { createLogger } from '../../src/log.js';
import { FakeSecretsManager, TEST_CREDENTIALS } from '../fakes/fake-secrets-manager.js';
import {
  daemonStatus,
  privateTempDir,
  startDaemon,
  unsetEnv,
  workspace,
  waitFor,
  type DaemonHandle,
  type DaemonWorkspace,
  type StartOptions,
} from '../helpers/daemon.js';
import { startInProcessDaemon, type InProcessDaemon } from '../helpers/in-process-daemon.js';

const IS_ROOT = process.getuid?.() === 0;
if (!IS_ROOT) {
  console.warn(
    'test/config/managed.test.ts: skipping the trusted-managed-config cases: making a file root-owned needs root (CI runs the tests as root)',
  );
}

const ORG_KEY = 'sk-org-managed-5a1f';
const USER_ORG_KEY = 'sk-user-own-org-9c3e';
const MINE_KEY = 'sk-user-mine-77d2';
const LOCKED_REGION_KEY = 'sk-org-region-locked-3b8d';

const USER_CONFIG = `defaults:
  maxStale: 1d
profiles:
  org:
    source: env:KB_USER_ORG
  mine:
    source: env:KB_MINE
    maxStale: 2d
`;
const MANAGED_CONFIG = `defaults:
  maxStale: 0s
profiles:
  org:
    source: env:KB_ORG
locked:
  - defaults.maxStale
`;

let dir: string;
let managedDir: string;
let managedFile: string;

beforeEach(() => {
  dir = privateTempDir('kb-managed-');
  managedDir = path.join(dir, 'etc-keybroker');
  fs.mkdirSync(managedDir, { mode: 0o755 });
  fs.chmodSync(managedDir, 0o755);
  managedFile = path.join(managedDir, 'managed.yaml');
});

function installManaged(text = MANAGED_CONFIG, mode = 0o644): void {
  fs.writeFileSync(`${managedFile}.tmp`, text, { mode });
  fs.chmodSync(`${managedFile}.tmp`, mode);
  fs.renameSync(`${managedFile}.tmp`, managedFile);
}

/** The user's side: their config and keys, and the managed file named by KEYBROKER_MANAGED_CONFIG. */
function userSide(): StartOptions {
  return {
    config: USER_CONFIG,
    dir: path.join(dir, 'user'),
    env: { KEYBROKER_MANAGED_CONFIG: managedFile, KB_ORG: ORG_KEY, KB_USER_ORG: USER_ORG_KEY, KB_MINE: MINE_KEY },
  };
}

function daemon(): Promise<DaemonHandle> {
  return startDaemon(userSide());
}

/**
 * The same daemon run inside this process (on a real socket; the CLI still a process of its own),
 * for the cases about what it makes of the files rather than about the `keybroker daemon` process:
 * no Node start-up each. The cases above run the process, KEYBROKER_MANAGED_CONFIG and all.
 */
function inProcessDaemon(config = USER_CONFIG): Promise<InProcessDaemon> {
  return startInProcessDaemon({ config, env: userSide().env, adapterModules: {} });
}

beforeEach(() => fs.mkdirSync(path.join(dir, 'user'), { mode: 0o700 }));

/** A running daemon: a handle from startDaemon (without the workspace's start). */
type Answering = Omit<DaemonWorkspace, 'start'>;

// The daemon's state is asked over its socket (the CLI's and the shim's own output is tested in
// test/cli and test/shim); the CLI runs here where its output about the managed config is the point.
/** The key the daemon serves for `profile` (or, without one, for a client in `cwd`). */
async function get(h: Answering, profile: string | undefined, cwd?: string): Promise<string> {
  const reply = await h.request({ v: 1, op: 'get', ...(profile !== undefined && { profile }), ...(cwd && { cwd }) });
  expect(reply).toMatchObject({ ok: true });
  return (reply as { value: string }).value;
}

/** `keybroker reload` without its process: signal the daemon and wait until it has re-read. */
async function reload(h: Answering): Promise<void> {
  expect(await reloadDaemon(h.socket)).toMatchObject({ daemon: 'reloaded' });
}

describe.runIf(IS_ROOT)('a trusted managed config (root-owned, writable by root only)', () => {
  it("overrides the user's profile of the same name; status, config check and doctor say so", async () => {
    installManaged();
    const h = await daemon();
    expect(await get(h, 'org')).toBe(ORG_KEY);
    expect(await get(h, 'mine')).toBe(MINE_KEY);

    const s = await daemonStatus(h);
    expect(s.daemon).toMatchObject({ managedConfig: managedFile, managedConfigError: null });
    expect(s.profiles.find((p) => p.name === 'org')?.managed).toBe(true);
    expect(s.profiles.find((p) => p.name === 'mine')?.managed).toBeUndefined();
    const text = (await h.cli(['status'])).stdout;
    expect(text.split('\n').some((l) => l.startsWith('org (managed) '))).toBe(true);
    expect(text).toContain(`managed  ${managedFile}\n`);
    for (const key of [ORG_KEY, USER_ORG_KEY, MINE_KEY]) expect(text).not.toContain(key);

    const check = await h.cli(['config', 'check']);
    expect(check.code).toBe(0);
    const lines = check.stdout.split('\n');
    // The user's file and line, the key, and who manages it.
    expect(lines).toContain(
      `${h.configPath}:4: profiles.org: profile org is managed by ${managedFile}; your definition is ignored`,
    );

    const doctor = JSON.parse((await h.cli(['doctor', '--json', '--no-fetch'])).stdout) as Array<{
      id: string;
      status: string;
      message: string;
    }>;
    expect(doctor.filter((c) => c.id === 'managed-config').map((c) => c.status)).toEqual([
      'ok',
      'warn',
      'warn',
      'warn',
    ]);
    expect(doctor.find((c) => c.id === 'config')?.message).toContain('org (managed)');
  });

  it("a locked default holds against the user's defaults and the user's own profiles", async () => {
    installManaged();
    // config check reads the files itself: no daemon needed.
    const h = workspace(userSide());
    const check = await h.cli(['config', 'check']);
    expect(check.code).toBe(0);
    expect(check.stdout).toContain('  mine: env: source, ttl 15m, maxStale 0ms');
    expect(check.stdout).toContain(
      `${h.configPath}:2: defaults.maxStale: defaults.maxStale is locked by ${managedFile}; your value is ignored`,
    );
    expect(check.stdout).toContain(
      `${h.configPath}:8: profiles.mine.maxStale: defaults.maxStale is locked by ${managedFile}; this profile's maxStale is ignored`,
    );
  });

  it("a locked aws.region wins over a user profile's ?region=, with a warning naming the profile", async () => {
    const fake = await FakeSecretsManager.start({ regions: ['us-east-1', 'eu-west-1'] });
    try {
      // The secret exists only where the organisation says to read it.
      fake.put('prod/key', LOCKED_REGION_KEY, { region: 'eu-west-1' });
      installManaged('aws:\n  region: eu-west-1\nprofiles: {}\nlocked:\n  - aws.region\n');
      const clean = unsetEnv('AWS_');
      const d = await startDaemon({
        config:
          'profiles:\n  default:\n    source: env:KB_MINE\n  work:\n    source: aws-sm://prod/key?region=us-east-1\n',
        dir: path.join(dir, 'user'),
        env: {
          ...clean,
          KEYBROKER_MANAGED_CONFIG: managedFile,
          KB_MINE: MINE_KEY,
          AWS_ENDPOINT_URL_SECRETS_MANAGER: fake.url,
          AWS_ACCESS_KEY_ID: TEST_CREDENTIALS.accessKeyId,
          AWS_SECRET_ACCESS_KEY: TEST_CREDENTIALS.secretAccessKey,
          AWS_CONFIG_FILE: path.join(dir, 'no-aws-config'),
          AWS_SHARED_CREDENTIALS_FILE: path.join(dir, 'no-aws-credentials'),
          AWS_EC2_METADATA_DISABLED: 'true',
        },
      });
      expect(await get(d, 'work')).toBe(LOCKED_REGION_KEY);
      expect(fake.calls('prod/key').map((c) => c.region)).toEqual(['eu-west-1']);
      // The daemon logs each config warning with its YAML path: this one names the profile.
      const warned = d
        .log()
        .split('\n')
        .filter((l) => l.startsWith('{'))
        .map((l) => JSON.parse(l) as { level: number; path?: string })
        .filter((r) => r.level === 40 && r.path === 'profiles.work.source');
      expect(warned).toHaveLength(1);
    } finally {
      await fake.close();
    }
  });

  it('a reload picks up a managed config installed, changed or broken after start', async () => {
    const h = await daemon();
    expect(await get(h, 'org')).toBe(USER_ORG_KEY);
    expect((await daemonStatus(h)).daemon.managedConfig).toBeNull();

    installManaged();
    await reload(h);
    expect(await get(h, 'org')).toBe(ORG_KEY);

    installManaged(MANAGED_CONFIG.replace('env:KB_ORG', 'env:KB_MINE'));
    await reload(h);
    expect(await get(h, 'org')).toBe(MINE_KEY);

    // A trusted file with a mistake fails the reload like the user's own would: the previous
    // config keeps running (the organisation's policy is not silently dropped).
    installManaged('profiles:\n  org:\n    sourc: env:KB_ORG\n');
    const bad = await h.cli(['reload']);
    expect(bad.code).toBe(8);
    expect(bad.stderr).toContain(`${managedFile}:3: profiles.org.sourc`);
    expect(await get(h, 'org')).toBe(MINE_KEY);
  });

  it('the daemon notices a managed config installed or changed after start, without a signal', async () => {
    const ws = workspace({
      dir: path.join(dir, 'user'),
      config: USER_CONFIG,
      env: { KB_ORG: ORG_KEY, KB_USER_ORG: USER_ORG_KEY, KB_MINE: MINE_KEY },
    });
    const daemon = await startLifecycle({
      config: { path: ws.configPath, from: '--config' },
      socket: { path: ws.socket, from: '--socket' },
      env: ws.env,
      log: createLogger({ level: 'silent' }),
      // The platform path, as an administrator (or MDM) would install it; polled fast for the test.
      managedPath: managedFile,
      managedPollMs: 50,
    });
    try {
      const value = async (): Promise<string | undefined> => {
        const r = await ws.request({ v: 1, op: 'get', profile: 'org' });
        return r.ok && 'value' in r ? r.value : undefined;
      };
      expect(await value()).toBe(USER_ORG_KEY);
      installManaged();
      await waitFor(async () => (await value()) === ORG_KEY, 5_000, 'the managed profile to be served');
      installManaged(MANAGED_CONFIG.replace('env:KB_ORG', 'env:KB_MINE'));
      await waitFor(async () => (await value()) === MINE_KEY, 5_000, 'the changed managed profile to be served');
      // Made untrusted (writable by others): ignored again at the next look.
      fs.chmodSync(managedFile, 0o666);
      await waitFor(async () => (await value()) === USER_ORG_KEY, 5_000, 'the untrusted managed config to be ignored');
    } finally {
      await daemon.stop();
    }
  });

  it('a managed directories: map applies to every user, on top of which a user maps their own', async () => {
    const orgDir = path.join(dir, 'code', 'org');
    const ownDir = path.join(dir, 'code', 'mine');
    fs.mkdirSync(orgDir, { recursive: true });
    fs.mkdirSync(ownDir, { recursive: true });
    installManaged(`directories:\n  ${orgDir}: org\n${MANAGED_CONFIG}`);
    const h = await inProcessDaemon(`directories:\n  ${ownDir}: mine\n${USER_CONFIG}`);
    expect(await get(h, undefined, orgDir)).toBe(ORG_KEY);
    expect(await get(h, undefined, ownDir)).toBe(MINE_KEY);
  });

  it('KEYBROKER_MANAGED_CONFIG does not count where the platform file exists', () => {
    installManaged();
    const other = path.join(dir, 'other.yaml');
    expect(resolveManagedConfigPath({ env: { KEYBROKER_MANAGED_CONFIG: other }, platformPath: managedFile })).toEqual({
      path: managedFile,
      from: 'platform',
    });
    expect(
      resolveManagedConfigPath({ env: { KEYBROKER_MANAGED_CONFIG: other }, platformPath: path.join(dir, 'none.yaml') }),
    ).toEqual({ path: other, from: 'KEYBROKER_MANAGED_CONFIG' });
    expect(resolveManagedConfigPath({ env: {}, platformPath: path.join(dir, 'none.yaml') })).toBeUndefined();
  });
});

describe('an untrusted managed config is ignored, with the error in status and doctor', () => {
  const cases: Array<{ name: string; needsRoot: boolean; setup: () => void }> = [
    { name: 'writable by others', needsRoot: false, setup: () => installManaged(MANAGED_CONFIG, 0o666) },
    { name: 'writable by its group', needsRoot: false, setup: () => installManaged(MANAGED_CONFIG, 0o664) },
    {
      name: 'owned by a uid that is not root',
      needsRoot: false,
      // As root: hand it to nobody (65534). Otherwise it already belongs to a non-root uid: ours.
      setup: () => {
        installManaged();
        if (IS_ROOT) fs.chownSync(managedFile, 65534, 65534);
      },
    },
    {
      name: 'in a directory others can write to',
      needsRoot: false,
      setup: () => {
        installManaged();
        fs.chmodSync(managedDir, 0o777);
      },
    },
    {
      name: 'a symbolic link',
      needsRoot: false,
      setup: () => {
        const target = path.join(managedDir, 'real.yaml');
        fs.writeFileSync(target, MANAGED_CONFIG, { mode: 0o644 });
        fs.symlinkSync(target, managedFile);
      },
    },
  ];
  for (const c of cases) {
    it(c.name, async () => {
      c.setup();
      const h = await inProcessDaemon();
      expect(await get(h, 'org')).toBe(USER_ORG_KEY);
      const s = await daemonStatus(h);
      expect(s.daemon.managedConfig).toBe(managedFile);
      expect(s.daemon.managedConfigError).toContain(managedFile);
      expect(s.profiles.some((p) => p.managed)).toBe(false);
      const text = (await h.cli(['status'])).stdout;
      expect(text).toContain(`managed  ${managedFile} (ignored)\n`);
      expect(text.split('\n').filter((l) => l.startsWith('error    '))).toHaveLength(1);
      const doctor = JSON.parse((await h.cli(['doctor', '--json', '--no-fetch'])).stdout) as Array<{
        id: string;
        status: string;
      }>;
      expect(doctor.filter((c) => c.id === 'managed-config').map((c) => c.status)).toEqual(['fail']);
      expect(h.log()).toContain('"level":50');
      expect(h.log()).toContain(`"managedConfig":"${managedFile}"`);
    });
  }
});

describe('merging (offline)', () => {
  const M = '/etc/keybroker/managed.yaml';
  const U = '/home/a/.config/keybroker/config.yaml';
  const managed = parseManagedConfigText(
    `defaults:\n  ttl: 1h\nvault:\n  address: https://vault.example.com\n  namespace: org\nprofiles:\n  org:\n    source: vault://secret/org#key\nlocked: [vault.address, defaults.timeout]\n`,
    M,
  );

  it('user profiles get the managed defaults and settings as their base, their own where not locked', () => {
    const user = parseConfigText(
      `defaults:\n  ttl: 5m\n  timeout: 30s\nvault:\n  address: http://localhost:8200\n  namespace: me\nprofiles:\n  dev:\n    source: vault://secret/dev#key\n    timeout: 20s\n    vault:\n      address: http://127.0.0.1:8200\n      namespace: dev\n`,
      U,
    );
    const merged = mergeManagedConfig({ managed, managedFile: M, user, userFile: U });
    expect(merged.user.defaults).toEqual({ ttl: 300_000 });
    expect(merged.user.profiles).toEqual({ dev: { source: 'vault://secret/dev#key', vault: { namespace: 'dev' } } });
    expect((merged.user as Record<string, unknown>).vault).toEqual({
      address: 'https://vault.example.com',
      namespace: 'me',
    });
    // Managed profiles see only the managed file's own settings.
    expect((merged.managed as Record<string, unknown>).vault).toEqual({
      address: 'https://vault.example.com',
      namespace: 'org',
    });
    expect(merged.managed.defaults).toEqual({ ttl: 3_600_000 });
    expect(merged.warnings.map((w) => w.path)).toEqual([
      'profiles.dev.timeout',
      'profiles.dev.vault.address',
      'defaults.timeout',
      'vault.address',
    ]);
    expect(merged.warnings.every((w) => w.file === U)).toBe(true);
  });

  it('a locked key that is not a key is a problem in the managed config, with its line', () => {
    expect(() => parseManagedConfigText('profiles: {}\nlocked:\n  - defaults.maxStal\n', M)).toThrow(
      expect.objectContaining({
        code: 'CONFIG_INVALID',
        problems: [expect.objectContaining({ path: 'locked.0', line: 2 })],
      }),
    );
    expect(() => parseManagedConfigText('locked: [profiles.org]\n', M)).toThrow(
      expect.objectContaining({ code: 'CONFIG_INVALID' }),
    );
  });
});
