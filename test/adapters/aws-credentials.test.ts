// aws-credentials:// against the real @aws-sdk/credential-providers: static keys and credential_process
// from real files and commands, assume-role and SSO against fake STS and SSO endpoints that speak the
// services' wire protocols (test/fakes/fake-aws-identity.ts).
import { createHash } from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';
import { afterAll, afterEach, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import {
  createAdapter,
  EXPIRY_MARGIN_MS,
  translateAwsCredentialsError,
  ttlBeforeExpiry,
  type AwsCredentialsRef,
} from '../../adapters/aws-credentials/aws-credentials-adapter.js';
import type { Adapter, FetchResult } from '../../src/adapter.js';
import { BrokerError } from '../../src/errors.js';
import { createLogger } from '../../src/log.js';
import { SecretValue } from '../../src/secret.js';
import { describeAdapterContract, fetchContext } from '../contract/adapter-contract.js';
import { capturedLog } from '../helpers/captured-log.js';
import { cleanUp, privateTempDir } from '../helpers/cleanup.js';
import { startFakeAwsIdentity, type FakeAwsIdentity } from '../fakes/fake-aws-identity.js';

const log = createLogger({ level: 'silent' });

// The SDK reads some settings from process.env itself (HOME for the SSO token cache, the
// service endpoints, IMDS): give it a clean, private environment for this file.
const savedEnv = { ...process.env };
for (const key of Object.keys(process.env)) if (key.startsWith('AWS_')) delete process.env[key];
process.env.AWS_EC2_METADATA_DISABLED = 'true';
afterAll(() => {
  for (const key of Object.keys(process.env)) if (!(key in savedEnv)) delete process.env[key];
  Object.assign(process.env, savedEnv);
});

interface AwsFiles {
  dir: string;
  credentials: string;
  config: string;
  env: NodeJS.ProcessEnv;
  writeCredentials(sections: Record<string, Record<string, string>>): void;
  writeConfig(sections: Record<string, Record<string, string>>): void;
  script(name: string, body: string): string;
}

function ini(sections: Record<string, Record<string, string>>): string {
  return Object.entries(sections)
    .map(
      ([name, keys]) =>
        `[${name}]\n${Object.entries(keys)
          .map(([k, v]) => `${k} = ${v}`)
          .join('\n')}\n`,
    )
    .join('\n');
}

function awsFiles(prefix: string): AwsFiles {
  const dir = privateTempDir(prefix);
  const credentials = path.join(dir, 'credentials');
  const config = path.join(dir, 'config');
  fs.writeFileSync(credentials, '', { mode: 0o600 });
  fs.writeFileSync(config, '', { mode: 0o600 });
  return {
    dir,
    credentials,
    config,
    env: { HOME: dir, AWS_SHARED_CREDENTIALS_FILE: credentials, AWS_CONFIG_FILE: config },
    writeCredentials: (sections) => fs.writeFileSync(credentials, ini(sections), { mode: 0o600 }),
    writeConfig: (sections) => fs.writeFileSync(config, ini(sections), { mode: 0o600 }),
    script: (name, body) => {
      const file = path.join(dir, name);
      fs.writeFileSync(file, `#!/bin/sh\n${body}\n`, { mode: 0o700 });
      return file;
    },
  };
}

const parse = (adapter: Adapter<AwsCredentialsRef>, uri: string, overrides?: Record<string, unknown>) =>
  adapter.parse(uri, { overrides, profile: 't' }) as AwsCredentialsRef;

async function fetchErr(adapter: Adapter<AwsCredentialsRef>, uri: string, signal?: AbortSignal): Promise<BrokerError> {
  const err = await adapter.fetch(parse(adapter, uri), fetchContext(signal ? { signal } : {})).then(
    () => undefined,
    (e: unknown) => e,
  );
  expect(err).toBeInstanceOf(BrokerError);
  return err as BrokerError;
}

function credentialsOf(result: FetchResult): Record<string, string> {
  return JSON.parse(result.value.reveal()) as Record<string, string>;
}

// The contract compares the fetched value with what put() stored. This source's value is a JSON
// document, so the contract looks at it through its SecretAccessKey: the real adapter does all the
// work, and the view only picks the field that put() wrote.
describeAdapterContract('aws-credentials', async () => {
  const files = awsFiles('kb-awsc-');
  const sections: Record<string, Record<string, string>> = {};
  const adapter = createAdapter({ settings: undefined, env: files.env, log });
  const view: Adapter = {
    ...adapter,
    parse: (uri, options) => adapter.parse(uri, options),
    fetch: async (ref, ctx) => {
      const result = await adapter.fetch(ref as AwsCredentialsRef, ctx);
      return { ...result, value: SecretValue.fromString(credentialsOf(result).SecretAccessKey!) };
    },
  };
  return {
    adapter: view,
    uriFor: (name) => `aws-credentials://${name}`,
    put: async (name, value) => {
      sections[name] = { aws_access_key_id: `AKIA${name.toUpperCase().padEnd(16, 'X')}`, aws_secret_access_key: value };
      files.writeCredentials(sections);
    },
    missingUri: 'aws-credentials://no-such-profile',
    invalidUris: [
      'aws-credentials:work',
      'aws-credentials://bad profile',
      'aws-credentials://a/b',
      'aws-credentials://x?y=1',
      'aws-credentials:///',
    ],
  };
});

describe('aws-credentials source', () => {
  const files = awsFiles('kb-awsc2-');
  let fake: FakeAwsIdentity;
  let adapter: Adapter<AwsCredentialsRef>;
  const baseKey = { aws_access_key_id: 'AKIABASEPROFILE00001', aws_secret_access_key: 'base-secret-do-not-leak-5f1e' };

  beforeAll(async () => {
    fake = await startFakeAwsIdentity({ lifetimeMs: 60 * 60_000 });
    cleanUp(() => fake.close());
    process.env.AWS_ENDPOINT_URL_STS = fake.url;
    process.env.AWS_ENDPOINT_URL_SSO = fake.url;
    process.env.HOME = files.dir;
  });
  beforeEach(() => {
    adapter = createAdapter({ settings: undefined, env: files.env, log });
    files.writeCredentials({
      static: {
        aws_access_key_id: 'AKIASTATIC0000000001',
        aws_secret_access_key: 'static-secret-1',
        aws_session_token: 'static-session-1',
      },
      plain: { aws_access_key_id: 'AKIAPLAIN00000000001', aws_secret_access_key: 'plain-secret-1' },
      base: baseKey,
    });
  });

  it('serves static keys as awsCredentialExport JSON, without Expiration or a TTL cap', async () => {
    const withToken = await adapter.fetch(parse(adapter, 'aws-credentials://static'), fetchContext());
    expect(credentialsOf(withToken)).toEqual({
      AccessKeyId: 'AKIASTATIC0000000001',
      SecretAccessKey: 'static-secret-1',
      SessionToken: 'static-session-1',
    });
    expect(withToken.ttlMs).toBeUndefined();
    const plain = await adapter.fetch(parse(adapter, 'aws-credentials://plain'), fetchContext());
    expect(Object.keys(credentialsOf(plain))).toEqual(['AccessKeyId', 'SecretAccessKey']);
  });

  it('caches credential_process credentials until 5 minutes before their Expiration', async () => {
    const expiration = new Date(Date.now() + 2 * 60 * 60_000);
    const script = files.script(
      'cp-ok.sh',
      `printf '%s' '{"Version":1,"AccessKeyId":"ASIAPROCESS000000001","SecretAccessKey":"process-secret","SessionToken":"process-token","Expiration":"${expiration.toISOString()}"}'`,
    );
    files.writeConfig({ 'profile proc': { credential_process: script } });
    const result = await adapter.fetch(parse(adapter, 'aws-credentials://proc'), fetchContext());
    expect(credentialsOf(result)).toEqual({
      AccessKeyId: 'ASIAPROCESS000000001',
      SecretAccessKey: 'process-secret',
      SessionToken: 'process-token',
      Expiration: expiration.toISOString(),
    });
    const expected = expiration.getTime() - Date.now() - EXPIRY_MARGIN_MS;
    expect(result.ttlMs).toBeGreaterThan(expected - 5_000);
    expect(result.ttlMs).toBeLessThanOrEqual(expected + 1_000);
  });

  it('halves the remaining lifetime of credentials that expire within 10 minutes', async () => {
    const expiration = new Date(Date.now() + 4 * 60_000);
    const script = files.script(
      'cp-short.sh',
      `printf '%s' '{"Version":1,"AccessKeyId":"ASIASHORT","SecretAccessKey":"s","Expiration":"${expiration.toISOString()}"}'`,
    );
    files.writeConfig({ 'profile short': { credential_process: script } });
    const result = await adapter.fetch(parse(adapter, 'aws-credentials://short'), fetchContext());
    expect(result.ttlMs).toBeGreaterThan(2 * 60_000 - 5_000);
    expect(result.ttlMs).toBeLessThanOrEqual(2 * 60_000);
  });

  it('reports a failing credential_process without copying its output', async () => {
    const script = files.script(
      'cp-bad.sh',
      `echo 'leaked-process-output-77 {"SecretAccessKey":"x"'; echo 'stderr-detail-77' >&2; exit 3`,
    );
    files.writeConfig({ 'profile broken': { credential_process: script } });
    const err = await fetchErr(adapter, 'aws-credentials://broken');
    expect(err.code).toBe('SOURCE_ERROR');
    expect(err.message).toContain('credential_process');
    expect(err.message).toContain('"broken"');
    expect(err.message).not.toContain('leaked-process-output-77');
    expect(err.message).not.toContain('stderr-detail-77');
  });

  it('assumes a role through STS, signed with the source profile, and caches until before Expiration', async () => {
    files.writeConfig({
      'profile deploy': {
        role_arn: 'arn:aws:iam::111122223333:role/deploy',
        source_profile: 'base',
        region: 'us-east-1',
      },
    });
    const issued = {
      accessKeyId: 'ASIAASSUMED000000001',
      secretAccessKey: 'assumed-secret-9c1',
      sessionToken: 'assumed-token-9c1',
      expiration: new Date(Math.floor(Date.now() / 1000) * 1000 + 45 * 60_000),
    };
    fake.nextCredentials(issued);
    const before = fake.stsCalls.length;
    const result = await adapter.fetch(parse(adapter, 'aws-credentials://deploy'), fetchContext());
    expect(credentialsOf(result)).toEqual({
      AccessKeyId: issued.accessKeyId,
      SecretAccessKey: issued.secretAccessKey,
      SessionToken: issued.sessionToken,
      Expiration: issued.expiration.toISOString(),
    });
    expect(result.ttlMs).toBeGreaterThan(40 * 60_000 - 5_000);
    expect(result.ttlMs).toBeLessThanOrEqual(40 * 60_000);
    const call = fake.stsCalls.at(-1)!;
    expect(fake.stsCalls.length).toBe(before + 1);
    expect(call).toMatchObject({
      action: 'AssumeRole',
      roleArn: 'arn:aws:iam::111122223333:role/deploy',
      signedBy: baseKey.aws_access_key_id,
      scope: { region: 'us-east-1', service: 'sts' },
    });
  });

  it('calls STS in the aws: region when the AWS profile names none', async () => {
    files.writeConfig({ 'profile noregion': { role_arn: 'arn:aws:iam::111122223333:role/r', source_profile: 'base' } });
    const regional = createAdapter({ settings: { region: 'eu-west-2' }, env: files.env, log });
    await regional.fetch(parse(regional, 'aws-credentials://noregion'), fetchContext());
    expect(fake.stsCalls.at(-1)!.scope).toEqual({ region: 'eu-west-2', service: 'sts' });
    const overridden = await regional.fetch(
      parse(regional, 'aws-credentials://noregion', { region: 'ap-south-1' }),
      fetchContext(),
    );
    expect(credentialsOf(overridden).AccessKeyId).toMatch(/^ASIA/);
    expect(fake.stsCalls.at(-1)!.scope).toEqual({ region: 'ap-south-1', service: 'sts' });
  });

  it.each([
    {
      fault: { status: 403, code: 'AccessDenied', message: 'FAULT-MARKER-1 is not authorized' },
      times: 1,
      code: 'PERMISSION_DENIED',
      transient: false,
    },
    {
      fault: { status: 400, code: 'ExpiredToken', message: 'FAULT-MARKER-2 expired' },
      times: 1,
      code: 'AUTH_REQUIRED',
      transient: false,
    },
    {
      fault: { status: 400, code: 'Throttling', message: 'FAULT-MARKER-3 Rate exceeded' },
      times: 2,
      code: 'RATE_LIMITED',
      transient: true,
    },
    {
      fault: { status: 500, code: 'InternalFailure', message: 'FAULT-MARKER-4 oops' },
      times: 2,
      code: 'UNAVAILABLE',
      transient: true,
    },
  ])('maps STS $fault.code to $code', async ({ fault, times, code, transient }) => {
    files.writeConfig({
      'profile deploy': {
        role_arn: 'arn:aws:iam::111122223333:role/deploy',
        source_profile: 'base',
        region: 'us-east-1',
      },
    });
    fake.failNext(fault, times);
    const err = await fetchErr(adapter, 'aws-credentials://deploy');
    expect(err.code).toBe(code);
    expect(err.transient).toBe(transient);
    expect(err.message).toContain('aws-credentials://deploy');
    expect(err.message).not.toContain('FAULT-MARKER');
    expect(err.message).not.toContain(baseKey.aws_secret_access_key);
  });

  it('reports an unreachable STS endpoint as UNAVAILABLE', async () => {
    files.writeConfig({
      'profile deploy': {
        role_arn: 'arn:aws:iam::111122223333:role/deploy',
        source_profile: 'base',
        region: 'us-east-1',
      },
    });
    const closed = await startFakeAwsIdentity();
    const url = closed.url;
    await closed.close();
    process.env.AWS_ENDPOINT_URL_STS = url;
    try {
      const err = await fetchErr(adapter, 'aws-credentials://deploy');
      expect(err.code).toBe('UNAVAILABLE');
      expect(err.transient).toBe(true);
    } finally {
      process.env.AWS_ENDPOINT_URL_STS = fake.url;
    }
  });

  describe('SSO profiles', () => {
    const startUrl = 'https://fake-org.awsapps.com/start';
    const tokenFile = (): string =>
      path.join(files.dir, '.aws', 'sso', 'cache', `${createHash('sha1').update(startUrl).digest('hex')}.json`);
    const writeToken = (accessToken: string, expiresAt: Date): void => {
      fs.mkdirSync(path.dirname(tokenFile()), { recursive: true, mode: 0o700 });
      fs.writeFileSync(
        tokenFile(),
        JSON.stringify({ startUrl, region: 'us-east-1', accessToken, expiresAt: expiresAt.toISOString() }),
        { mode: 0o600 },
      );
    };
    beforeEach(() => {
      // The SDK's SSO provider re-reads the profile from the files process.env names (it is not
      // handed the file paths); in the daemon the adapter's env is process.env, so they agree.
      process.env.AWS_CONFIG_FILE = files.config;
      process.env.AWS_SHARED_CREDENTIALS_FILE = files.credentials;
      files.writeConfig({
        'profile dev': {
          sso_start_url: startUrl,
          sso_region: 'us-east-1',
          sso_account_id: '111122223333',
          sso_role_name: 'Developer',
          region: 'eu-central-1',
        },
      });
    });

    afterEach(() => {
      delete process.env.AWS_CONFIG_FILE;
      delete process.env.AWS_SHARED_CREDENTIALS_FILE;
    });

    it('fetches role credentials from the SSO portal with the cached access token', async () => {
      writeToken(fake.ssoAccessToken, new Date(Date.now() + 8 * 60 * 60_000));
      const result = await adapter.fetch(parse(adapter, 'aws-credentials://dev'), fetchContext());
      const creds = credentialsOf(result);
      expect(creds.AccessKeyId).toMatch(/^ASIAFAKE/);
      expect(creds.SessionToken).toMatch(/^fake-session-token-/);
      expect(new Date(creds.Expiration!).getTime()).toBeGreaterThan(Date.now() + 50 * 60_000);
      expect(result.ttlMs).toBeGreaterThan(50 * 60_000);
      expect(fake.ssoCalls.at(-1)).toEqual({
        accountId: '111122223333',
        roleName: 'Developer',
        bearerToken: fake.ssoAccessToken,
      });
    });

    it('asks for aws sso login when the cached SSO session has expired', async () => {
      writeToken(fake.ssoAccessToken, new Date(Date.now() - 60_000));
      const err = await fetchErr(adapter, 'aws-credentials://dev');
      expect(err.code).toBe('AUTH_REQUIRED');
      expect(err.fix).toBe('run: aws sso login --profile dev');
      expect(err.message).not.toContain(fake.ssoAccessToken);
    });

    it('asks for aws sso login when the portal rejects the access token', async () => {
      writeToken('revoked-token-not-for-logs', new Date(Date.now() + 60 * 60_000));
      const err = await fetchErr(adapter, 'aws-credentials://dev');
      expect(err.code).toBe('AUTH_REQUIRED');
      expect(err.fix).toContain('aws sso login');
      expect(err.message).not.toContain('revoked-token-not-for-logs');
    });
  });

  it('fails a profile that needs an MFA code with AUTH_REQUIRED (the daemon cannot prompt)', async () => {
    files.writeConfig({
      'profile mfa': {
        role_arn: 'arn:aws:iam::111122223333:role/r',
        source_profile: 'base',
        mfa_serial: 'arn:aws:iam::111122223333:mfa/me',
        region: 'us-east-1',
      },
    });
    const err = await fetchErr(adapter, 'aws-credentials://mfa');
    expect(err.code).toBe('AUTH_REQUIRED');
    expect(err.message).toContain('MFA');
  });

  it('uses the SDK default chain for a bare aws-credentials://, honouring AWS_PROFILE and the aws: profile', async () => {
    const viaEnv = createAdapter({ settings: undefined, env: { ...files.env, AWS_PROFILE: 'plain' }, log });
    expect(viaEnv.describe(parse(viaEnv, 'aws-credentials://'))).toBe('aws-credentials:// (SDK default chain)');
    expect(credentialsOf(await viaEnv.fetch(parse(viaEnv, 'aws-credentials://'), fetchContext())).AccessKeyId).toBe(
      'AKIAPLAIN00000000001',
    );
    const viaSettings = createAdapter({ settings: { profile: 'static' }, env: files.env, log });
    const ref = parse(viaSettings, 'aws-credentials:');
    expect(viaSettings.describe(ref)).toBe('aws-credentials://static');
    expect(credentialsOf(await viaSettings.fetch(ref, fetchContext())).AccessKeyId).toBe('AKIASTATIC0000000001');
  });

  it('fails a default chain that finds nothing with AUTH_REQUIRED and a way forward', async () => {
    const empty = awsFiles('kb-awsc3-');
    const none = createAdapter({ settings: undefined, env: empty.env, log });
    const err = await fetchErr(none, 'aws-credentials://');
    expect(err.code).toBe('AUTH_REQUIRED');
    expect(err.fix).toContain('aws configure');
  });

  it('gives up at once when the profile timeout fires during a slow credential_process', async () => {
    const script = files.script(
      'cp-slow.sh',
      `sleep 3; printf '%s' '{"Version":1,"AccessKeyId":"A","SecretAccessKey":"B"}'`,
    );
    files.writeConfig({ 'profile slow': { credential_process: script } });
    const controller = new AbortController();
    setTimeout(() => controller.abort(new BrokerError('TIMEOUT', 'profile timeout')), 200);
    const started = Date.now();
    const err = await fetchErr(adapter, 'aws-credentials://slow', controller.signal);
    expect(err.code).toBe('TIMEOUT');
    expect(Date.now() - started).toBeLessThan(1500);
  });

  it('validates the aws: block at construction and per profile, naming keys but not values', () => {
    const bad = (): unknown =>
      createAdapter({ settings: { region: 'us-east-1', regoin: 'secret-looking-value' }, env: {}, log });
    expect(bad).toThrow(BrokerError);
    try {
      bad();
    } catch (e) {
      expect((e as BrokerError).code).toBe('CONFIG_INVALID');
      expect((e as BrokerError).message).toContain('"regoin"');
      expect((e as BrokerError).message).not.toContain('secret-looking-value');
    }
    expect(() => createAdapter({ settings: { profile: 42 }, env: {}, log })).toThrow(
      expect.objectContaining({ code: 'CONFIG_INVALID', message: expect.stringMatching(/^aws: profile/) }),
    );
    const ok = createAdapter({
      settings: { region: 'us-east-1', profile: 'p', endpoint: 'http://localhost:4566' },
      env: {},
      log,
    });
    // Names where the problem is (the profile's aws: block) and the key, never the value.
    expect(() => parse(ok, 'aws-credentials://x', { token: 'y' })).toThrow(
      expect.objectContaining({
        code: 'CONFIG_INVALID',
        message: expect.stringMatching(/^profiles\.t\.aws: .*"token"/),
      }),
    );
    expect(() => parse(ok, 'aws-credentials://one', { profile: 'two' })).toThrow(
      expect.objectContaining({ code: 'CONFIG_INVALID' }),
    );
    expect(parse(ok, 'aws-credentials://same', { profile: 'same' }).profile).toBe('same');
  });

  it('keeps keys, tokens and backend messages out of its log lines', async () => {
    const { log: debugLog, text: logged } = capturedLog('trace');
    const noisy = createAdapter({ settings: undefined, env: files.env, log: debugLog });
    files.writeConfig({
      'profile deploy': {
        role_arn: 'arn:aws:iam::111122223333:role/deploy',
        source_profile: 'base',
        region: 'us-east-1',
      },
    });
    const ok = await noisy.fetch(parse(noisy, 'aws-credentials://deploy'), fetchContext({ log: debugLog }));
    const issued = credentialsOf(ok);
    fake.failNext({ status: 403, code: 'AccessDenied', message: 'FAULT-MARKER-LOG' });
    await noisy.fetch(parse(noisy, 'aws-credentials://deploy'), fetchContext({ log: debugLog })).catch(() => {});
    await noisy.fetch(parse(noisy, 'aws-credentials://static'), fetchContext({ log: debugLog }));
    expect(logged()).toContain('AWS credentials resolved');
    for (const secret of [
      issued.SecretAccessKey!,
      issued.SessionToken!,
      baseKey.aws_secret_access_key,
      'static-secret-1',
      'static-session-1',
      'FAULT-MARKER-LOG',
    ]) {
      expect(logged()).not.toContain(secret);
    }
  });
});

describe('aws-credentials error translation and expiry', () => {
  const ref: AwsCredentialsRef = { profile: 'work', region: undefined, label: 'aws-credentials://work' };

  it('never copies the text of an unknown error', () => {
    const err = translateAwsCredentialsError(new TypeError('AKIAEXAMPLE secret=abc123'), ref);
    expect(err.code).toBe('SOURCE_ERROR');
    expect(err.message).not.toContain('abc123');
    expect(err.message).toContain('TypeError');
  });

  it('recovers the service error name the SSO provider folds into its message', () => {
    const wrapped = new Error('UnauthorizedException: Session token not found or invalid');
    wrapped.name = 'CredentialsProviderError';
    expect(translateAwsCredentialsError(wrapped, ref).code).toBe('AUTH_REQUIRED');
    const notAService = new Error(
      'Could not resolve credentials using profile: [work] in configuration/credentials file(s).',
    );
    expect(translateAwsCredentialsError(notAService, ref).code).toBe('NOT_FOUND');
  });

  it('ends the TTL five minutes before expiry, or halfway for short-lived credentials', () => {
    expect(ttlBeforeExpiry(60 * 60_000)).toBe(55 * 60_000);
    expect(ttlBeforeExpiry(10 * 60_000)).toBe(5 * 60_000);
    expect(ttlBeforeExpiry(6 * 60_000)).toBe(3 * 60_000);
    expect(ttlBeforeExpiry(1_000)).toBe(500);
  });
});
