// aws-sm: end to end: the built daemon (its own process, its own AWS SDK and credential chain)
// serves aws-sm:// profiles from the local Secrets Manager endpoint to the shim, run through
// `sh -c` the way Claude Code runs apiKeyHelper. Needs `npm run build`.
//
// The shim is the one `setup claude` writes (the native one where it was built: ~5 ms of CPU a
// run against the Node shim's ~0.15 s); both shims' own behaviour is tested in test/shim/. A
// refresh goes over the socket: what it reaches in Secrets Manager is under test, not the CLI.
import fs from 'node:fs';
import path from 'node:path';
import { beforeAll, describe, expect, it } from 'vitest';
import type { StatusReply } from '../../src/protocol/messages.js';
import { FakeSecretsManager, TEST_CREDENTIALS } from '../fakes/fake-secrets-manager.js';
import { cleanUp } from '../helpers/cleanup.js';
import {
  privateTempDir,
  ROOT,
  run,
  startDaemon,
  unsetEnv,
  type DaemonHandle,
  type RunResult,
} from '../helpers/daemon.js';

const CONFIG = `
aws:
  region: us-east-1
profiles:
  claude:
    source: aws-sm://prod/anthropic#api_key
    ttl: 1h
  whole:
    source: aws-sm://prod/whole-key
  eu:
    source: aws-sm://prod/eu-key
    aws:
      region: eu-west-1
  previous:
    source: aws-sm://prod/anthropic?versionStage=AWSPREVIOUS#api_key
  missing:
    source: aws-sm://prod/does-not-exist
  sso:
    source: aws-sm://prod/anthropic#api_key
    aws:
      profile: sso-user
  flaky:
    source: aws-sm://prod/flaky
    ttl: 1s
    maxStale: 1h
`;

const SECRETS = [
  'sk-ant-e2e-one-1f2e',
  'sk-ant-e2e-two-7c3d',
  'sk-ant-e2e-whole-9a8b',
  'sk-ant-e2e-eu-4d5e',
  'sk-ant-e2e-flaky-0b1c',
];

describe('daemon serving aws-sm:// profiles through the shim', () => {
  let fake: FakeSecretsManager;
  let handle: DaemonHandle;
  let dir: string;
  const shim = (profile: string): Promise<RunResult> => handle.shim(profile);

  beforeAll(async () => {
    fake = await FakeSecretsManager.start({ regions: ['us-east-1', 'eu-west-1'] });
    cleanUp(() => fake.close());
    fake.put('prod/anthropic', JSON.stringify({ api_key: SECRETS[0], note: 'first' }));
    fake.put('prod/whole-key', SECRETS[2]!);
    fake.put('prod/eu-key', SECRETS[3]!, { region: 'eu-west-1' });
    fake.put('prod/flaky', SECRETS[4]!);
    dir = privateTempDir('kb-awsd-');
    const awsConfig = path.join(dir, 'aws-config');
    fs.writeFileSync(
      awsConfig,
      [
        '[profile sso-user]',
        'sso_session = corp',
        'sso_account_id = 111122223333',
        'sso_role_name = Reader',
        '[sso-session corp]',
        'sso_start_url = https://corp.awsapps.example/start',
        'sso_region = us-east-1',
        '',
      ].join('\n'),
      { mode: 0o600 },
    );
    // Nothing from the developer's own AWS setup may reach the daemon.
    const clean = unsetEnv('AWS_');
    handle = await startDaemon({
      config: CONFIG,
      dir,
      env: {
        ...clean,
        HOME: dir,
        AWS_ENDPOINT_URL_SECRETS_MANAGER: fake.url,
        AWS_ACCESS_KEY_ID: TEST_CREDENTIALS.accessKeyId,
        AWS_SECRET_ACCESS_KEY: TEST_CREDENTIALS.secretAccessKey,
        AWS_REGION: 'us-east-1',
        AWS_CONFIG_FILE: awsConfig,
        AWS_SHARED_CREDENTIALS_FILE: path.join(dir, 'aws-credentials-none'),
        AWS_EC2_METADATA_DISABLED: 'true',
      },
    });
  });

  it('prints the JSON key of the secret, and answers the next call from the cache', async () => {
    const first = await shim('claude');
    expect(first.stderr).toBe('');
    expect(first.code).toBe(0);
    expect(first.stdout).toBe(`${SECRETS[0]}\n`);
    const second = await shim('claude');
    expect(second.stdout).toBe(`${SECRETS[0]}\n`);
    expect(fake.calls('prod/anthropic')).toHaveLength(1);
    expect(fake.calls('prod/anthropic')[0]).toMatchObject({
      region: 'us-east-1',
      accessKeyId: TEST_CREDENTIALS.accessKeyId,
      status: 200,
    });
  });

  it('serves a whole SecretString and a profile whose aws: block picks another region', async () => {
    expect((await shim('whole')).stdout).toBe(`${SECRETS[2]}\n`);
    expect((await shim('eu')).stdout).toBe(`${SECRETS[3]}\n`);
    expect(fake.calls('prod/eu-key')[0]?.region).toBe('eu-west-1');
  });

  it('serves the rotated value after keybroker refresh, and the old one by versionStage=AWSPREVIOUS', async () => {
    fake.put('prod/anthropic', JSON.stringify({ api_key: SECRETS[1], note: 'second' }));
    // Cached: the rotation is not visible until a refresh.
    expect((await shim('claude')).stdout).toBe(`${SECRETS[0]}\n`);
    expect(await handle.request({ v: 1, op: 'refresh', profile: 'claude' })).toMatchObject({
      ok: true,
      refreshed: ['claude'],
      failed: [],
    });
    expect((await shim('claude')).stdout).toBe(`${SECRETS[1]}\n`);
    expect((await shim('previous')).stdout).toBe(`${SECRETS[0]}\n`);
  });

  it('fails a missing secret with exit 10 and one line naming the secret and region', async () => {
    const result = await shim('missing');
    expect(result.code).toBe(10);
    expect(result.stdout).toBe('');
    expect(result.stderr.trim().split('\n')).toHaveLength(1);
    expect(result.stderr).toContain('"prod/does-not-exist"');
    expect(result.stderr).toContain('us-east-1');
  });

  it('tells the user to run aws sso login for an SSO profile without a login (exit 12)', async () => {
    const result = await shim('sso');
    expect(result.code).toBe(12);
    expect(result.stdout).toBe('');
    expect(result.stderr).toContain('run: aws sso login --profile sso-user');
  });

  it('keeps serving the cached value while Secrets Manager fails (stale-if-error)', async () => {
    expect((await shim('flaky')).stdout).toBe(`${SECRETS[4]}\n`);
    fake.fail({ type: 'InternalServiceError', times: Infinity, secretId: 'prod/flaky' });
    try {
      await new Promise((r) => setTimeout(r, 1_300));
      const stale = await shim('flaky');
      expect(stale.code).toBe(0);
      expect(stale.stdout).toBe(`${SECRETS[4]}\n`);
      // The daemon did go back to the source (refresh-ahead or this read), the SDK retried the
      // 500s a bounded number of times, and the value was served stale rather than failing.
      const failed = fake.calls('prod/flaky').filter((c) => c.status === 500);
      expect(failed.length).toBeGreaterThanOrEqual(3);
      const status = (await handle.request({ v: 1, op: 'status' })) as StatusReply;
      expect(status.profiles.find((p) => p.name === 'flaky')).toMatchObject({
        state: 'stale',
        lastError: { code: 'UNAVAILABLE', transient: true },
      });
    } finally {
      fake.reset();
    }
  });

  it('shows aws-sm sources in status and keeps every secret and credential out of status and the log', async () => {
    const status = (await handle.request({ v: 1, op: 'status' })) as StatusReply;
    expect(status.ok).toBe(true);
    const claude = status.profiles.find((p) => p.name === 'claude');
    expect(claude).toMatchObject({
      kind: 'aws-sm',
      source: 'aws-sm://prod/anthropic#api_key (us-east-1)',
      state: 'fresh',
    });
    const notes = status.sources.find((s) => s.kind === 'aws-sm')?.notes ?? [];
    expect(notes.some((n) => /^GetSecretValue calls: \d+/.test(n))).toBe(true);
    const text = JSON.stringify(status) + handle.log();
    expect(handle.log()).toContain('fetched');
    for (const secret of SECRETS) expect(text).not.toContain(secret);
    expect(text).not.toContain(TEST_CREDENTIALS.secretAccessKey);
  });

  it("keeps the daemon's stderr pure JSON lines, the SDK's own warnings included", () => {
    const lines = handle.log().trim().split('\n');
    for (const line of lines) expect(() => JSON.parse(line), line).not.toThrow();
    // On Node 20 the AWS SDK announces its Node support policy with process.emitWarning.
    if (Number(process.versions.node.split('.')[0]) < 22)
      expect(handle.log()).toMatch(/"warning":"Warning","msg":"NodeVersionSupportWarning: The AWS SDK/);
  });
});

describe('aws-sm loading', () => {
  it('loads the AWS SDK on the first fetch, not when the adapter is created or parses', async () => {
    const fake = await FakeSecretsManager.start();
    cleanUp(() => fake.close());
    fake.put('lazy/key', 'sk-ant-lazy');
    const adapterUrl = new URL(
      `file://${path.join(ROOT, 'dist', 'adapters', 'aws-secrets-manager', 'aws-secrets-manager-adapter.js')}`,
    ).href;
    const logUrl = new URL(`file://${path.join(ROOT, 'dist', 'src', 'log.js')}`).href;
    const script = `
      import { createRequire } from 'node:module';
      const require = createRequire(import.meta.url);
      const sdkLoaded = () => Object.keys(require.cache).some((k) => k.includes('client-secrets-manager'));
      const { createAdapter } = await import(${JSON.stringify(adapterUrl)});
      const { createLogger } = await import(${JSON.stringify(logUrl)});
      const log = createLogger({ level: 'silent' });
      const adapter = createAdapter({ settings: { region: 'us-east-1', endpoint: ${JSON.stringify(fake.url)} }, env: process.env, log });
      const ref = await adapter.parse('aws-sm://lazy/key', { overrides: undefined, profile: 'p' });
      const afterParse = sdkLoaded();
      const result = await adapter.fetch(ref, { signal: new AbortController().signal, profile: 'p', reason: 'miss', log });
      const afterFetch = sdkLoaded();
      await adapter.close();
      process.stdout.write(JSON.stringify({ afterParse, afterFetch, bytes: result.value.byteLength }));
    `;
    const dir = privateTempDir('kb-awsl-');
    const clean = unsetEnv('AWS_');
    const result = await run(process.execPath, ['--input-type=module', '--no-warnings', '-e', script], {
      env: {
        ...process.env,
        ...clean,
        HOME: dir,
        AWS_ACCESS_KEY_ID: TEST_CREDENTIALS.accessKeyId,
        AWS_SECRET_ACCESS_KEY: TEST_CREDENTIALS.secretAccessKey,
        AWS_EC2_METADATA_DISABLED: 'true',
        AWS_CONFIG_FILE: path.join(dir, 'none'),
        AWS_SHARED_CREDENTIALS_FILE: path.join(dir, 'none'),
      },
    });
    expect(result.stderr).toBe('');
    expect(JSON.parse(result.stdout)).toEqual({ afterParse: false, afterFetch: true, bytes: 'sk-ant-lazy'.length });
  });
});

describe('aws-sm when the static keys in ~/.aws/credentials are rotated under the running daemon', () => {
  it('the first refresh after the rotation works: a credentials rejection resolves them again and retries once', async () => {
    const OLD = TEST_CREDENTIALS;
    const NEW = { accessKeyId: 'AKIAROTATED0000NEW01', secretAccessKey: 'rotated/secret/access/key/for/the/test/0001' };
    const fake = await FakeSecretsManager.start({ credentials: [OLD] });
    cleanUp(() => fake.close());
    fake.put('prod/rotating', 'sk-ant-before-rotation-1a');
    const dir = privateTempDir('kb-awsr-');
    const credentialsFile = path.join(dir, 'aws-credentials');
    const writeCredentials = (c: { accessKeyId: string; secretAccessKey: string }): void =>
      fs.writeFileSync(
        credentialsFile,
        `[default]\naws_access_key_id = ${c.accessKeyId}\naws_secret_access_key = ${c.secretAccessKey}\n`,
        { mode: 0o600 },
      );
    writeCredentials(OLD);
    const clean = unsetEnv('AWS_');
    const daemon = await startDaemon({
      config: 'aws:\n  region: us-east-1\nprofiles:\n  rotating:\n    source: aws-sm://prod/rotating\n    ttl: 1h\n',
      dir,
      env: {
        ...clean,
        HOME: dir,
        AWS_ENDPOINT_URL_SECRETS_MANAGER: fake.url,
        AWS_REGION: 'us-east-1',
        AWS_CONFIG_FILE: path.join(dir, 'aws-config-none'),
        AWS_SHARED_CREDENTIALS_FILE: credentialsFile,
        AWS_EC2_METADATA_DISABLED: 'true',
      },
    });
    expect(await daemon.shim('rotating')).toMatchObject({
      code: 0,
      stdout: 'sk-ant-before-rotation-1a\n',
    });
    // The admin creates a new key, writes it to ~/.aws/credentials, deletes the old one, and
    // rotates the secret.
    fake.addCredentials(NEW);
    writeCredentials(NEW);
    fake.revokeCredentials(OLD.accessKeyId);
    fake.put('prod/rotating', 'sk-ant-after-rotation-2b');
    const before = fake.calls().length;
    expect(await daemon.request({ v: 1, op: 'refresh', profile: 'rotating' })).toMatchObject({
      ok: true,
      refreshed: ['rotating'],
      failed: [],
    });
    expect(await daemon.shim('rotating')).toMatchObject({
      code: 0,
      stdout: 'sk-ant-after-rotation-2b\n',
    });
    // One rejected attempt with the old key, one good one with the new: within the same fetch.
    expect(
      fake
        .calls()
        .slice(before)
        .map((c) => [c.accessKeyId, c.error ?? 'ok']),
    ).toEqual([
      [OLD.accessKeyId, 'UnrecognizedClientException'],
      [NEW.accessKeyId, 'ok'],
    ]);
    expect(daemon.log()).toContain('AWS rejected the credentials: resolving them again and retrying once');
    expect(daemon.log()).not.toContain(NEW.secretAccessKey);
  });
});
