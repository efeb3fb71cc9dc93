// aws-sm: against a local Secrets Manager endpoint (test/fakes/fake-secrets-manager.ts) that
// speaks the AWS JSON 1.1 protocol and checks SigV4 signatures: the real AWS SDK, its default
// credential chain and its retry logic run unchanged. The SDK reads process.env, so each test
// starts from a clean AWS environment (vi.stubEnv) pointing at temporary ~/.aws files.
import fs from 'node:fs';
import net from 'node:net';
import path from 'node:path';
import { inspect } from 'node:util';
import { afterEach, beforeAll, beforeEach, describe, expect, it, vi } from 'vitest';
import { createAdapter } from '../../adapters/aws-secrets-manager/aws-secrets-manager-adapter.js';
import { formatSecretUri, parseSecretUri } from '../../adapters/aws-secrets-manager/aws-sm-uri.js';
import { parseAwsSettings, type Adapter } from '../../src/adapter.js';
import { BrokerError } from '../../src/errors.js';
import { createLogger } from '../../src/log.js';
import { describeAdapterContract, fetchContext } from '../contract/adapter-contract.js';
import { cleanUp, privateTempDir } from '../helpers/cleanup.js';
import {
  FakeSecretsManager,
  signedHeaders,
  TEST_CREDENTIALS,
  type FakeCredentials,
} from '../fakes/fake-secrets-manager.js';

const FILE_CREDENTIALS: FakeCredentials = {
  accessKeyId: 'AKIAKBFAKEFILE0002',
  secretAccessKey: 'kbFakeFileSecretKey/from+credentials0000',
};
const SESSION_CREDENTIALS: FakeCredentials = {
  accessKeyId: 'ASIAKBFAKESESSION03',
  secretAccessKey: 'kbFakeSessionSecretKey/temporary+00000',
  sessionToken: 'kbFakeSessionToken//IQoJb3JpZ2luX2VjEXAMPLE',
};

const silent = createLogger({ level: 'silent' });
let fake: FakeSecretsManager;
let dir: string;
let configFile: string;
let credentialsFile: string;

beforeAll(async () => {
  fake = await FakeSecretsManager.start({
    regions: ['us-east-1', 'eu-west-1'],
    credentials: [TEST_CREDENTIALS, FILE_CREDENTIALS, SESSION_CREDENTIALS],
  });
  cleanUp(() => fake.close());
  dir = privateTempDir('kb-awssm-');
  fs.mkdirSync(path.join(dir, 'home'), { mode: 0o700 });
  configFile = path.join(dir, 'aws-config');
  credentialsFile = path.join(dir, 'aws-credentials');
  fs.writeFileSync(
    configFile,
    [
      '[default]',
      'region = us-east-1',
      '[profile sso-user]',
      'sso_session = corp',
      'sso_account_id = 111122223333',
      'sso_role_name = Reader',
      'region = us-east-1',
      '[sso-session corp]',
      'sso_start_url = https://corp.awsapps.example/start',
      'sso_region = us-east-1',
      '[profile legacy-sso]',
      'sso_start_url = https://corp.awsapps.example/start',
      'sso_region = us-east-1',
      'sso_account_id = 111122223333',
      'sso_role_name = Reader',
      'region = us-east-1',
      '[profile broken-sso]',
      'sso_session = nowhere',
      'sso_account_id = 111122223333',
      'sso_role_name = Reader',
      '[profile files]',
      'region = eu-west-1',
      '',
    ].join('\n'),
    { mode: 0o600 },
  );
  fs.writeFileSync(
    credentialsFile,
    [
      '[files]',
      `aws_access_key_id = ${FILE_CREDENTIALS.accessKeyId}`,
      `aws_secret_access_key = ${FILE_CREDENTIALS.secretAccessKey}`,
      '',
    ].join('\n'),
    { mode: 0o600 },
  );
});

/** A clean AWS environment: static test keys, the fake as endpoint, no real ~/.aws, no IMDS. */
beforeEach(() => {
  for (const key of Object.keys(process.env)) if (key.startsWith('AWS_')) vi.stubEnv(key, undefined);
  vi.stubEnv('HOME', path.join(dir, 'home'));
  vi.stubEnv('AWS_CONFIG_FILE', configFile);
  vi.stubEnv('AWS_SHARED_CREDENTIALS_FILE', credentialsFile);
  vi.stubEnv('AWS_EC2_METADATA_DISABLED', 'true');
  vi.stubEnv('AWS_ACCESS_KEY_ID', TEST_CREDENTIALS.accessKeyId);
  vi.stubEnv('AWS_SECRET_ACCESS_KEY', TEST_CREDENTIALS.secretAccessKey);
  vi.stubEnv('AWS_REGION', 'us-east-1');
  vi.stubEnv('AWS_ENDPOINT_URL_SECRETS_MANAGER', fake.url);
});

afterEach(() => {
  vi.unstubAllEnvs();
  fake.reset();
});

/** An adapter closed when the test (or, made outside one, the file) is done. */
function newAdapter(settings?: Record<string, unknown>, log = silent): Adapter {
  const adapter = createAdapter({ settings, env: process.env, log });
  cleanUp(() => adapter.close());
  return adapter;
}

async function fetchValue(adapter: Adapter, uri: string, overrides?: Record<string, unknown>): Promise<string> {
  const ref = await adapter.parse(uri, { overrides, profile: 't' });
  return (await adapter.fetch(ref, fetchContext())).value.reveal();
}

async function fetchError(
  adapter: Adapter,
  uri: string,
  overrides?: Record<string, unknown>,
  signal?: AbortSignal,
): Promise<BrokerError> {
  const ref = await adapter.parse(uri, { overrides, profile: 't' });
  const err = await adapter.fetch(ref, fetchContext(signal ? { signal } : {})).then(
    () => undefined,
    (e: unknown) => e,
  );
  expect(err).toBeInstanceOf(BrokerError);
  return err as BrokerError;
}

function parseError(fn: () => unknown): BrokerError {
  try {
    fn();
  } catch (err) {
    expect(err).toBeInstanceOf(BrokerError);
    return err as BrokerError;
  }
  throw new Error('expected a BrokerError');
}

describeAdapterContract('aws-sm', async () => ({
  // Endpoint and region from the environment, as the SDK resolves them (AWS_ENDPOINT_URL_SECRETS_MANAGER, AWS_REGION).
  adapter: newAdapter(),
  uriFor: (name) => `aws-sm://kb/contract/${name}`,
  put: async (name, value) => {
    fake.put(`kb/contract/${name}`, value);
  },
  missingUri: 'aws-sm://kb/contract/missing',
  invalidUris: [
    'aws-sm://',
    'aws-sm:kb/contract/alpha',
    'aws-sm://kb/contract/alpha#',
    'aws-sm://kb/contract/alpha?colour=blue',
    'aws-sm://kb/contract/alpha?versionStage=AWSCURRENT&versionId=0123456789abcdef0123456789abcdef',
    'aws-sm://kb/contract/alpha?region=Mars',
    'aws-sm://has space',
    'aws-sm://arn:aws:s3:::a-bucket',
  ],
}));

describe('aws-sm values', () => {
  it('uses the whole SecretString without #key, byte for byte', async () => {
    fake.put('kb/whole', '  sk-ant-whole-1 ');
    expect(await fetchValue(newAdapter(), 'aws-sm://kb/whole')).toBe('  sk-ant-whole-1 ');
  });

  it('extracts a top-level key from a JSON SecretString', async () => {
    fake.put('kb/json', JSON.stringify({ api_key: 'sk-ant-json-1', other: 'x', 'odd key/1': 'sk-odd' }));
    const adapter = newAdapter();
    expect(await fetchValue(adapter, 'aws-sm://kb/json#api_key')).toBe('sk-ant-json-1');
    expect(await fetchValue(adapter, 'aws-sm://kb/json#odd%20key/1')).toBe('sk-odd');
  });

  it('returns a UTF-8 SecretBinary as text, and reads #key from a JSON SecretBinary', async () => {
    fake.put('kb/binary', Buffer.from('sk-ant-binary-ü', 'utf8'));
    fake.put('kb/binary-json', Buffer.from(JSON.stringify({ key: 'sk-ant-binary-json' })));
    const adapter = newAdapter();
    expect(await fetchValue(adapter, 'aws-sm://kb/binary')).toBe('sk-ant-binary-ü');
    expect(await fetchValue(adapter, 'aws-sm://kb/binary-json#key')).toBe('sk-ant-binary-json');
  });

  it('refuses a SecretBinary that is not UTF-8 with INVALID_VALUE', async () => {
    fake.put('kb/not-text', Uint8Array.from([0xff, 0xfe, 0x00, 0x80]));
    expect((await fetchError(newAdapter(), 'aws-sm://kb/not-text')).code).toBe('INVALID_VALUE');
  });

  it('fails clearly when the secret is not JSON, naming the key but not the secret', async () => {
    fake.put('kb/plain', 'sk-ant-not-json{');
    const err = await fetchError(newAdapter(), 'aws-sm://kb/plain#api_key');
    expect(err.code).toBe('INVALID_VALUE');
    expect(err.message).toContain('"api_key"');
    expect(err.message).toContain('not JSON');
    expect(err.message).not.toContain('sk-ant-not-json');
  });

  it("fails with NOT_FOUND when the JSON lacks the key, without listing the secret's keys or values", async () => {
    fake.put('kb/json-other', JSON.stringify({ apiKey: 'sk-ant-camel', 'sk-ant-as-key': 1 }));
    const err = await fetchError(newAdapter(), 'aws-sm://kb/json-other#api_key');
    expect(err.code).toBe('NOT_FOUND');
    expect(err.message).toContain('no key "api_key"');
    expect(err.message).not.toContain('sk-ant');
    expect(err.message).not.toContain('apiKey');
  });

  it('refuses a key whose value is not a string, and JSON that is not an object', async () => {
    fake.put('kb/json-types', JSON.stringify({ n: 42, o: { a: 'b' } }));
    fake.put('kb/json-array', JSON.stringify(['sk-ant-in-array']));
    const adapter = newAdapter();
    const n = await fetchError(adapter, 'aws-sm://kb/json-types#n');
    expect(n.code).toBe('INVALID_VALUE');
    expect(n.message).toContain('a number, not a string');
    expect((await fetchError(adapter, 'aws-sm://kb/json-types#o')).message).toContain('an object');
    const arr = await fetchError(adapter, 'aws-sm://kb/json-array#0');
    expect(arr.code).toBe('INVALID_VALUE');
    expect(arr.message).not.toContain('sk-ant-in-array');
  });

  it('picks up a rotated value on the next fetch and reports the version id', async () => {
    const adapter = newAdapter();
    const v1 = fake.put('kb/rotating', JSON.stringify({ api_key: 'sk-ant-rot-1' }));
    const ref = await adapter.parse('aws-sm://kb/rotating#api_key', { overrides: undefined, profile: 't' });
    const first = await adapter.fetch(ref, fetchContext());
    expect(first.value.reveal()).toBe('sk-ant-rot-1');
    expect(first.version).toBe(v1);
    const v2 = fake.put('kb/rotating', JSON.stringify({ api_key: 'sk-ant-rot-2' }));
    const second = await adapter.fetch(ref, fetchContext({}, 'refresh-ahead'));
    expect(second.value.reveal()).toBe('sk-ant-rot-2');
    expect(second.version).toBe(v2);
    expect(second.ttlMs).toBeUndefined();
  });

  it('reads the version a versionStage or versionId names', async () => {
    const v1 = fake.put('kb/staged', 'sk-ant-stage-1');
    const v2 = fake.put('kb/staged', 'sk-ant-stage-2');
    const v3 = fake.put('kb/staged', 'sk-ant-stage-3', { stages: ['AWSPENDING'] });
    const adapter = newAdapter();
    expect(await fetchValue(adapter, 'aws-sm://kb/staged')).toBe('sk-ant-stage-2');
    expect(await fetchValue(adapter, 'aws-sm://kb/staged?versionStage=AWSPREVIOUS')).toBe('sk-ant-stage-1');
    expect(await fetchValue(adapter, 'aws-sm://kb/staged?versionStage=AWSPENDING')).toBe('sk-ant-stage-3');
    expect(await fetchValue(adapter, `aws-sm://kb/staged?versionId=${v1}`)).toBe('sk-ant-stage-1');
    expect(await fetchValue(adapter, `aws-sm://kb/staged?versionId=${v3}`)).toBe('sk-ant-stage-3');
    const calls = fake.calls('kb/staged');
    expect(calls.map((c) => c.versionStage)).toEqual([undefined, 'AWSPREVIOUS', 'AWSPENDING', undefined, undefined]);
    expect(calls.map((c) => c.versionId)).toEqual([undefined, undefined, undefined, v1, v3]);
    // Moving a label moves what the URI reads.
    fake.setStage('kb/staged', 'AWSPREVIOUS', v2);
    expect(await fetchValue(adapter, 'aws-sm://kb/staged?versionStage=AWSPREVIOUS')).toBe('sk-ant-stage-2');
  });

  it('fails with NOT_FOUND naming the stage when no version carries it', async () => {
    fake.put('kb/unstaged', 'sk-ant-unstaged');
    const err = await fetchError(newAdapter(), 'aws-sm://kb/unstaged?versionStage=BLUE');
    expect(err.code).toBe('NOT_FOUND');
    expect(err.message).toContain('no version labelled BLUE');
  });
});

describe('aws-sm regions, endpoints and signing', () => {
  it('signs every request with SigV4 for the region and the credentials in use', async () => {
    fake.put('kb/signed', 'sk-ant-signed');
    await fetchValue(newAdapter(), 'aws-sm://kb/signed');
    const [call] = fake.calls('kb/signed');
    expect(call).toMatchObject({ status: 200, region: 'us-east-1', accessKeyId: TEST_CREDENTIALS.accessKeyId });
  });

  it('sends session tokens with temporary credentials', async () => {
    vi.stubEnv('AWS_ACCESS_KEY_ID', SESSION_CREDENTIALS.accessKeyId);
    vi.stubEnv('AWS_SECRET_ACCESS_KEY', SESSION_CREDENTIALS.secretAccessKey);
    vi.stubEnv('AWS_SESSION_TOKEN', SESSION_CREDENTIALS.sessionToken);
    fake.put('kb/session', 'sk-ant-session');
    expect(await fetchValue(newAdapter(), 'aws-sm://kb/session')).toBe('sk-ant-session');
    expect(fake.calls('kb/session')[0]?.accessKeyId).toBe(SESSION_CREDENTIALS.accessKeyId);
  });

  it('takes the region from ?region=, then the ARN, then the profile block, then the top-level block', async () => {
    fake.put('kb/eu', 'sk-ant-eu', { region: 'eu-west-1' });
    fake.put('kb/eu', 'sk-ant-us', { region: 'us-east-1' });
    const adapter = newAdapter({ region: 'us-east-1' });
    expect(await fetchValue(adapter, 'aws-sm://kb/eu')).toBe('sk-ant-us');
    expect(await fetchValue(adapter, 'aws-sm://kb/eu?region=eu-west-1')).toBe('sk-ant-eu');
    expect(await fetchValue(adapter, `aws-sm://${fake.arnOf('kb/eu', 'eu-west-1')}`)).toBe('sk-ant-eu');
    expect(await fetchValue(adapter, 'aws-sm://kb/eu', { region: 'eu-west-1' })).toBe('sk-ant-eu');
    expect(
      fake
        .calls()
        .slice(-4)
        .map((c) => c.region),
    ).toEqual(['us-east-1', 'eu-west-1', 'eu-west-1', 'eu-west-1']);
    expect(adapter.status!().filter((n) => n.startsWith('client:'))).toHaveLength(2);
  });

  it('uses the SDK region chain (AWS_REGION, then the profile in ~/.aws/config) when no region is configured', async () => {
    fake.put('kb/chain-region', 'sk-ant-chain-eu', { region: 'eu-west-1' });
    vi.stubEnv('AWS_REGION', 'eu-west-1');
    expect(await fetchValue(newAdapter(), 'aws-sm://kb/chain-region')).toBe('sk-ant-chain-eu');
    vi.stubEnv('AWS_REGION', undefined);
    // The "files" profile has region = eu-west-1 in the config file and keys in the credentials file.
    expect(await fetchValue(newAdapter({ profile: 'files' }), 'aws-sm://kb/chain-region')).toBe('sk-ant-chain-eu');
  });

  it('takes credentials from a named profile in the shared credentials file', async () => {
    vi.stubEnv('AWS_ACCESS_KEY_ID', undefined);
    vi.stubEnv('AWS_SECRET_ACCESS_KEY', undefined);
    // Its region (eu-west-1) comes from the config file too: AWS_REGION would win over it.
    vi.stubEnv('AWS_REGION', undefined);
    fake.put('kb/from-file', 'sk-ant-from-file', { region: 'eu-west-1' });
    expect(await fetchValue(newAdapter({ profile: 'files' }), 'aws-sm://kb/from-file')).toBe('sk-ant-from-file');
    vi.stubEnv('AWS_PROFILE', 'files');
    expect(await fetchValue(newAdapter(), 'aws-sm://kb/from-file')).toBe('sk-ant-from-file');
    expect(fake.calls('kb/from-file').map((c) => c.accessKeyId)).toEqual([
      FILE_CREDENTIALS.accessKeyId,
      FILE_CREDENTIALS.accessKeyId,
    ]);
  });

  it('lets the aws: endpoint setting win over AWS_ENDPOINT_URL_SECRETS_MANAGER', async () => {
    vi.stubEnv('AWS_ENDPOINT_URL_SECRETS_MANAGER', 'http://127.0.0.1:9');
    fake.put('kb/endpoint', 'sk-ant-endpoint');
    expect(await fetchValue(newAdapter({ endpoint: fake.url }), 'aws-sm://kb/endpoint')).toBe('sk-ant-endpoint');
  });

  it('honours AWS_ENDPOINT_URL when no service-specific endpoint is set', async () => {
    vi.stubEnv('AWS_ENDPOINT_URL_SECRETS_MANAGER', undefined);
    vi.stubEnv('AWS_ENDPOINT_URL', fake.url);
    fake.put('kb/generic-endpoint', 'sk-ant-generic');
    expect(await fetchValue(newAdapter(), 'aws-sm://kb/generic-endpoint')).toBe('sk-ant-generic');
  });

  it('reuses one client per region/profile/endpoint and releases them on close', async () => {
    fake.put('kb/reuse', 'sk-ant-reuse');
    const adapter = createAdapter({ settings: undefined, env: process.env, log: silent });
    for (let i = 0; i < 3; i++) await fetchValue(adapter, 'aws-sm://kb/reuse');
    await fetchValue(adapter, 'aws-sm://kb/reuse', { endpoint: fake.url });
    expect(adapter.status!()).toEqual([
      'GetSecretValue calls: 4',
      'client: region from the SDK default, default credential chain',
      `client: region from the SDK default, default credential chain, endpoint ${new URL(fake.url).host}`,
    ]);
    await adapter.close();
    expect(adapter.status!()).toEqual(['GetSecretValue calls: 4']);
    expect((await fetchError(adapter, 'aws-sm://kb/reuse')).code).toBe('SHUTTING_DOWN');
  });
});

describe('aws-sm errors', () => {
  it('maps ResourceNotFoundException to NOT_FOUND naming the secret id and region', async () => {
    const err = await fetchError(newAdapter({ region: 'eu-west-1' }), 'aws-sm://kb/nowhere');
    expect(err.code).toBe('NOT_FOUND');
    expect(err.status).toBe('ResourceNotFoundException');
    expect(err.message).toContain('"kb/nowhere"');
    expect(err.message).toContain('eu-west-1');
    expect(err.transient).toBe(false);
  });

  it('names the region the SDK resolved when none was configured', async () => {
    const err = await fetchError(newAdapter(), 'aws-sm://kb/nowhere');
    expect(err.message).toContain('in us-east-1');
  });

  it('maps AccessDeniedException to PERMISSION_DENIED naming secretsmanager:GetSecretValue', async () => {
    fake.put('kb/denied', 'sk-ant-denied');
    fake.fail({ type: 'AccessDeniedException' });
    const err = await fetchError(newAdapter(), 'aws-sm://kb/denied');
    expect(err.code).toBe('PERMISSION_DENIED');
    expect(err.fix).toContain('secretsmanager:GetSecretValue');
    expect(err.message).toContain('"kb/denied"');
    expect(err.message).not.toContain('arn:aws:iam');
  });

  it('maps DecryptionFailure to PERMISSION_DENIED naming kms:Decrypt', async () => {
    fake.put('kb/kms', 'sk-ant-kms');
    fake.fail({ type: 'DecryptionFailure' });
    const err = await fetchError(newAdapter(), 'aws-sm://kb/kms');
    expect(err.code).toBe('PERMISSION_DENIED');
    expect(err.fix).toContain('kms:Decrypt');
  });

  it('lets the SDK retry a throttled request, and succeeds when the throttling stops', async () => {
    fake.put('kb/throttled-once', 'sk-ant-after-throttle');
    fake.fail({ type: 'ThrottlingException', secretId: 'kb/throttled-once' });
    expect(await fetchValue(newAdapter(), 'aws-sm://kb/throttled-once')).toBe('sk-ant-after-throttle');
    expect(fake.calls('kb/throttled-once').map((c) => c.status)).toEqual([400, 200]);
  });

  it('maps persistent throttling to transient RATE_LIMITED after a bounded number of attempts', async () => {
    fake.put('kb/throttled', 'sk-ant-throttled');
    fake.fail({ type: 'ThrottlingException', times: Infinity, secretId: 'kb/throttled' });
    const err = await fetchError(newAdapter(), 'aws-sm://kb/throttled');
    expect(err.code).toBe('RATE_LIMITED');
    expect(err.transient).toBe(true);
    expect(fake.calls('kb/throttled')).toHaveLength(3);
  });

  it("keeps the Retry-After of the last throttled answer (429), so keybroker's own retry waits for it", async () => {
    fake.put('kb/throttled-429', 'sk-ant-throttled');
    // The SDK's own retries get 429s without a hint (so they do not wait long); the last one asks for 90 s.
    fake.fail({ type: 'ThrottlingException', status: 429, times: 2, secretId: 'kb/throttled-429' });
    fake.fail({ type: 'ThrottlingException', status: 429, times: 1, secretId: 'kb/throttled-429', retryAfter: '90' });
    const err = await fetchError(newAdapter(), 'aws-sm://kb/throttled-429');
    expect(err.code).toBe('RATE_LIMITED');
    expect(fake.calls('kb/throttled-429').map((c) => c.status)).toEqual([429, 429, 429]);
    expect(err.retryAfterMs).toBeGreaterThan(88_000);
    expect(err.retryAfterMs).toBeLessThanOrEqual(90_000);
  });

  it('maps InternalServiceError (HTTP 500) to transient UNAVAILABLE after the SDK retries', async () => {
    fake.put('kb/down', 'sk-ant-down');
    fake.fail({ type: 'InternalServiceError', times: Infinity, secretId: 'kb/down' });
    const err = await fetchError(newAdapter(), 'aws-sm://kb/down');
    expect(err.code).toBe('UNAVAILABLE');
    expect(err.transient).toBe(true);
    expect(fake.calls('kb/down')).toHaveLength(3);
  });

  it('maps a secret scheduled for deletion (InvalidRequestException) to SOURCE_ERROR with the restore command', async () => {
    fake.put('kb/deleted', 'sk-ant-deleted');
    fake.scheduleDeletion('kb/deleted');
    const err = await fetchError(newAdapter(), 'aws-sm://kb/deleted');
    expect(err.code).toBe('SOURCE_ERROR');
    expect(err.fix).toContain('restore-secret --secret-id kb/deleted');
  });

  it('maps an unknown access key and a wrong secret key to AUTH_REQUIRED', async () => {
    fake.put('kb/auth', 'sk-ant-auth');
    vi.stubEnv('AWS_ACCESS_KEY_ID', 'AKIAKBUNKNOWN000000');
    const unknown = await fetchError(newAdapter(), 'aws-sm://kb/auth');
    expect(unknown.code).toBe('AUTH_REQUIRED');
    expect(unknown.status).toBe('UnrecognizedClientException');
    expect(unknown.fix).toContain('aws sts get-caller-identity');
    vi.stubEnv('AWS_ACCESS_KEY_ID', TEST_CREDENTIALS.accessKeyId);
    vi.stubEnv('AWS_SECRET_ACCESS_KEY', 'not-the-right-secret-access-key');
    const badSig = await fetchError(newAdapter(), 'aws-sm://kb/auth');
    expect(badSig.code).toBe('AUTH_REQUIRED');
    expect(badSig.status).toBe('InvalidSignatureException');
    expect(badSig.message).not.toContain('not-the-right-secret-access-key');
  });

  it('resolves credentials again after AWS refuses them, so fixed credentials work without a restart', async () => {
    fake.put('kb/recover', 'sk-ant-recovered');
    vi.stubEnv('AWS_ACCESS_KEY_ID', 'AKIAKBUNKNOWN000000');
    const adapter = newAdapter();
    expect((await fetchError(adapter, 'aws-sm://kb/recover')).code).toBe('AUTH_REQUIRED');
    vi.stubEnv('AWS_ACCESS_KEY_ID', TEST_CREDENTIALS.accessKeyId);
    expect(await fetchValue(adapter, 'aws-sm://kb/recover')).toBe('sk-ant-recovered');
  });

  it('picks up a credentials file written after a failed fetch, without a restart', async () => {
    vi.stubEnv('AWS_ACCESS_KEY_ID', undefined);
    vi.stubEnv('AWS_SECRET_ACCESS_KEY', undefined);
    const later = path.join(dir, 'credentials-written-later');
    vi.stubEnv('AWS_SHARED_CREDENTIALS_FILE', later);
    fake.put('kb/later', 'sk-ant-later');
    const adapter = newAdapter();
    expect((await fetchError(adapter, 'aws-sm://kb/later')).code).toBe('AUTH_REQUIRED');
    fs.writeFileSync(
      later,
      `[default]\naws_access_key_id = ${FILE_CREDENTIALS.accessKeyId}\naws_secret_access_key = ${FILE_CREDENTIALS.secretAccessKey}\n`,
      { mode: 0o600 },
    );
    expect(await fetchValue(adapter, 'aws-sm://kb/later')).toBe('sk-ant-later');
  });

  it('maps ExpiredTokenException to AUTH_REQUIRED (after resolving the credentials again once)', async () => {
    fake.put('kb/expired', 'sk-ant-expired');
    fake.fail({
      type: 'ExpiredTokenException',
      message: 'The security token included in the request is expired',
      times: 2,
    });
    const err = await fetchError(newAdapter({ profile: 'files' }), 'aws-sm://kb/expired?region=us-east-1');
    expect(fake.calls('kb/expired').map((c) => c.error)).toEqual(['ExpiredTokenException', 'ExpiredTokenException']);
    expect(err.code).toBe('AUTH_REQUIRED');
    expect(err.message).toContain('expired');
    expect(err.fix).toContain('--profile files');
  });

  it('tells an SSO profile without a cached login to run aws sso login --profile', async () => {
    vi.stubEnv('AWS_ACCESS_KEY_ID', undefined);
    vi.stubEnv('AWS_SECRET_ACCESS_KEY', undefined);
    const viaSetting = await fetchError(newAdapter({ profile: 'sso-user' }), 'aws-sm://kb/sso');
    expect(viaSetting.code).toBe('AUTH_REQUIRED');
    expect(viaSetting.fix).toBe('run: aws sso login --profile sso-user');
    const legacy = await fetchError(newAdapter({ profile: 'legacy-sso' }), 'aws-sm://kb/sso');
    expect(legacy.fix).toBe('run: aws sso login --profile legacy-sso');
    vi.stubEnv('AWS_PROFILE', 'sso-user');
    const viaEnv = await fetchError(newAdapter(), 'aws-sm://kb/sso');
    expect(viaEnv.fix).toBe('run: aws sso login --profile sso-user');
    expect(fake.calls('kb/sso')).toHaveLength(0);
  });

  it('tells an SSO profile with an expired cached token to log in again', async () => {
    vi.stubEnv('AWS_ACCESS_KEY_ID', undefined);
    vi.stubEnv('AWS_SECRET_ACCESS_KEY', undefined);
    const home = fs.mkdtempSync(path.join(dir, 'home-expired-'));
    vi.stubEnv('HOME', home);
    const cacheDir = path.join(home, '.aws', 'sso', 'cache');
    fs.mkdirSync(cacheDir, { recursive: true, mode: 0o700 });
    // The SDK names the cache file after the SHA-1 of the sso-session name.
    const { createHash } = await import('node:crypto');
    const file = path.join(cacheDir, `${createHash('sha1').update('corp').digest('hex')}.json`);
    fs.writeFileSync(
      file,
      JSON.stringify({
        accessToken: 'kb-expired-sso-access-token',
        expiresAt: '2020-01-01T00:00:00Z',
        region: 'us-east-1',
        startUrl: 'https://corp.awsapps.example/start',
      }),
      { mode: 0o600 },
    );
    const err = await fetchError(newAdapter({ profile: 'sso-user' }), 'aws-sm://kb/sso');
    expect(err.code).toBe('AUTH_REQUIRED');
    expect(err.fix).toBe('run: aws sso login --profile sso-user');
    expect(err.message).not.toContain('kb-expired-sso-access-token');
  });

  it('says what is missing from an incomplete SSO profile instead of asking for a login', async () => {
    vi.stubEnv('AWS_ACCESS_KEY_ID', undefined);
    vi.stubEnv('AWS_SECRET_ACCESS_KEY', undefined);
    const err = await fetchError(newAdapter({ profile: 'broken-sso', region: 'us-east-1' }), 'aws-sm://kb/sso');
    expect(err.code).toBe('AUTH_REQUIRED');
    expect(err.fix).toBe('run: aws configure sso --profile broken-sso');
    expect(err.message).not.toContain('aws sso login');
  });

  it('says which credential sources were tried when there are none', async () => {
    vi.stubEnv('AWS_ACCESS_KEY_ID', undefined);
    vi.stubEnv('AWS_SECRET_ACCESS_KEY', undefined);
    vi.stubEnv('AWS_CONFIG_FILE', path.join(dir, 'no-such-config'));
    vi.stubEnv('AWS_SHARED_CREDENTIALS_FILE', path.join(dir, 'no-such-credentials'));
    const none = await fetchError(newAdapter(), 'aws-sm://kb/none');
    expect(none.code).toBe('AUTH_REQUIRED');
    expect(none.message).toContain('no AWS credentials found');
    expect(none.message).toContain('AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY not set');
    expect(none.message).toContain('profile "default"');
    expect(none.message).toContain('EC2 instance metadata (disabled by AWS_EC2_METADATA_DISABLED)');
    const missingProfile = await fetchError(newAdapter({ profile: 'nobody' }), 'aws-sm://kb/none');
    expect(missingProfile.code).toBe('AUTH_REQUIRED');
    expect(missingProfile.message).toContain('profile "nobody"');
    expect(missingProfile.message).toContain('not found');
    expect(fake.calls('kb/none')).toHaveLength(0);
  });

  it('maps a missing region to CONFIG_INVALID saying where to set one', async () => {
    vi.stubEnv('AWS_REGION', undefined);
    vi.stubEnv('AWS_DEFAULT_REGION', 'eu-west-1');
    vi.stubEnv('AWS_CONFIG_FILE', path.join(dir, 'no-such-config'));
    const err = await fetchError(newAdapter(), 'aws-sm://kb/no-region');
    expect(err.code).toBe('CONFIG_INVALID');
    expect(err.fix).toContain('?region=');
    expect(err.fix).toContain('AWS_DEFAULT_REGION is set');
  });

  it('maps an unreachable endpoint to transient UNAVAILABLE naming the host', async () => {
    const port = await closedPort();
    const err = await fetchError(newAdapter({ endpoint: `http://127.0.0.1:${port}` }), 'aws-sm://kb/unreachable');
    expect(err.code).toBe('UNAVAILABLE');
    expect(err.transient).toBe(true);
    expect(err.message).toContain(`127.0.0.1:${port}`);
    expect(err.message).toContain('ECONNREFUSED');
  });

  it("gives up with the signal's reason when the profile timeout fires mid-request", async () => {
    fake.put('kb/slow', 'sk-ant-slow');
    fake.hold(5_000);
    const controller = new AbortController();
    setTimeout(() => controller.abort(new BrokerError('TIMEOUT', 'profile timeout (test)')), 150);
    const started = Date.now();
    const err = await fetchError(newAdapter(), 'aws-sm://kb/slow', undefined, controller.signal);
    expect(Date.now() - started).toBeLessThan(2_000);
    expect(err.code).toBe('TIMEOUT');
    expect(err.message).toBe('profile timeout (test)');
  });
});

describe('the fake Secrets Manager checks SigV4 like AWS', () => {
  const post = async (headers: Record<string, string>, body: string): Promise<{ status: number; type: unknown }> => {
    const res = await fetch(`${fake.url}/`, { method: 'POST', headers, body });
    const json = (await res.json()) as Record<string, unknown>;
    return { status: res.status, type: json.__type };
  };
  const body = JSON.stringify({ SecretId: 'kb/signing' });

  it('answers a correctly signed request and refuses an unsigned one', async () => {
    fake.put('kb/signing', 'sk-ant-signing');
    const headers = await signedHeaders({ url: fake.url, body, credentials: TEST_CREDENTIALS, region: 'us-east-1' });
    expect(await post(headers, body)).toEqual({ status: 200, type: undefined });
    const { authorization: _dropped, ...unsigned } = headers;
    expect(await post(unsigned, body)).toEqual({ status: 400, type: 'MissingAuthenticationTokenException' });
  });

  it('refuses a body changed after signing, a foreign region or service, and an unknown key', async () => {
    const headers = await signedHeaders({ url: fake.url, body, credentials: TEST_CREDENTIALS, region: 'us-east-1' });
    expect(await post(headers, JSON.stringify({ SecretId: 'kb/other' }))).toEqual({
      status: 400,
      type: 'InvalidSignatureException',
    });
    expect(
      await post(
        await signedHeaders({ url: fake.url, body, credentials: TEST_CREDENTIALS, region: 'ap-south-1' }),
        body,
      ),
    ).toEqual({ status: 400, type: 'InvalidSignatureException' });
    expect(
      await post(
        await signedHeaders({
          url: fake.url,
          body,
          credentials: TEST_CREDENTIALS,
          region: 'us-east-1',
          service: 'ssm',
        }),
        body,
      ),
    ).toEqual({ status: 400, type: 'InvalidSignatureException' });
    const stranger = { accessKeyId: 'AKIAKBSTRANGER00000', secretAccessKey: 'x' };
    expect(
      await post(await signedHeaders({ url: fake.url, body, credentials: stranger, region: 'us-east-1' }), body),
    ).toEqual({ status: 400, type: 'UnrecognizedClientException' });
  });

  it('surfaces a request signed for a region the endpoint does not serve as AUTH_REQUIRED', async () => {
    const err = await fetchError(newAdapter(), 'aws-sm://kb/signing?region=ap-south-1');
    expect(err.code).toBe('AUTH_REQUIRED');
    expect(err.status).toBe('InvalidSignatureException');
  });
});

describe('aws-sm keeps secrets out of errors, logs and status', () => {
  it('never puts a secret value, an AWS message or a credential in an error, a log line or a status note', async () => {
    const canary = 'sk-ant-canary-5b1e0c9d';
    const lines: string[] = [];
    const log = createLogger({ level: 'trace', destination: { write: (line: string) => void lines.push(line) } });
    const adapter = newAdapter({ region: 'us-east-1' }, log);
    const ctx = fetchContext({ log });
    const attempt = async (uri: string): Promise<string> => {
      const ref = await adapter.parse(uri, { overrides: undefined, profile: 'canary' });
      return adapter.fetch(ref, ctx).then(
        (r) => inspect(r, { depth: 10 }) + JSON.stringify(r),
        (e: unknown) => `${(e as Error).message} ${inspect(e, { depth: 10 })} ${JSON.stringify(e)}`,
      );
    };
    fake.put('kb/canary-json', JSON.stringify({ api_key: canary, [canary]: canary }));
    fake.put('kb/canary-plain', `${canary}{not json`);
    fake.put('kb/canary-number', JSON.stringify({ n: 1, api_key: canary }));
    const outputs = [
      await attempt('aws-sm://kb/canary-json#api_key'),
      await attempt('aws-sm://kb/canary-json#missing'),
      await attempt('aws-sm://kb/canary-plain#api_key'),
      await attempt('aws-sm://kb/canary-plain'),
      await attempt('aws-sm://kb/canary-number#n'),
    ];
    // AWS error messages are not copied: a hostile or verbose endpoint cannot smuggle text through.
    for (const type of [
      'AccessDeniedException',
      'ResourceNotFoundException',
      'DecryptionFailure',
      'ValidationException',
      'InternalServiceError',
    ]) {
      fake.fail({ type, message: `echo of ${canary} and ${TEST_CREDENTIALS.secretAccessKey}`, times: 3 });
      outputs.push(await attempt('aws-sm://kb/canary-json#api_key'));
      fake.reset();
    }
    vi.stubEnv('AWS_SECRET_ACCESS_KEY', 'kb-wrong-secret-access-key-canary');
    // A new client (another region) signing with a wrong secret key: refused, and the key stays out.
    outputs.push(await attempt('aws-sm://kb/canary-json?region=eu-west-1#api_key'));
    const everything = [
      ...outputs,
      ...lines,
      ...adapter.status!(),
      adapter.describe(await adapter.parse('aws-sm://kb/canary-json#api_key', { overrides: undefined, profile: 'c' })),
    ].join('\n');
    expect(outputs[0]).toContain('[redacted]');
    // Every other attempt failed, so its message was the thing under test.
    expect(outputs.slice(1).map((o) => /code: '([A-Z_]+)'/.exec(o)?.[1])).toEqual([
      'NOT_FOUND',
      'INVALID_VALUE',
      undefined,
      'INVALID_VALUE',
      'PERMISSION_DENIED',
      'NOT_FOUND',
      'PERMISSION_DENIED',
      'SOURCE_ERROR',
      'UNAVAILABLE',
      'AUTH_REQUIRED',
    ]);
    expect(lines.length).toBeGreaterThan(0);
    expect(everything).not.toContain(canary);
    expect(everything).not.toContain(TEST_CREDENTIALS.secretAccessKey);
    expect(everything).not.toContain('kb-wrong-secret-access-key-canary');
    expect(everything).not.toContain('not json');
  });
});

describe('aws-sm source URIs', () => {
  it('parses names, ARNs, regions, versions and JSON keys', () => {
    expect(parseSecretUri('aws-sm://prod/anthropic#api_key')).toEqual({
      secretId: 'prod/anthropic',
      jsonKey: 'api_key',
    });
    expect(parseSecretUri('aws-sm://prod/anthropic?region=eu-west-1&versionStage=AWSPREVIOUS')).toEqual({
      secretId: 'prod/anthropic',
      region: 'eu-west-1',
      regionFrom: 'query',
      versionStage: 'AWSPREVIOUS',
    });
    expect(parseSecretUri('aws-sm://x?versionId=EXAMPLE1-90ab-cdef-fedc-ba987EXAMPLE#k%23ey')).toEqual({
      secretId: 'x',
      versionId: 'EXAMPLE1-90ab-cdef-fedc-ba987EXAMPLE',
      jsonKey: 'k#ey',
    });
    const arn = 'arn:aws:secretsmanager:ap-southeast-2:123456789012:secret:prod/anthropic-AbCdEf';
    expect(parseSecretUri(`aws-sm://${arn}#api_key`)).toEqual({
      secretId: arn,
      region: 'ap-southeast-2',
      regionFrom: 'arn',
      jsonKey: 'api_key',
    });
    // An ARN's region is the secret's identity, even when ?region= repeats it (a lock cannot move it).
    expect(parseSecretUri(`aws-sm://${arn}?region=ap-southeast-2`)).toMatchObject({
      region: 'ap-southeast-2',
      regionFrom: 'arn',
    });
    expect(parseSecretUri('aws-sm://name_with+=.@-chars').secretId).toBe('name_with+=.@-chars');
  });

  it('prints a canonical form', () => {
    expect(formatSecretUri(parseSecretUri('aws-sm://p/a?versionStage=AWSPENDING&region=us-west-2#api_key'))).toBe(
      'aws-sm://p/a?region=us-west-2&versionStage=AWSPENDING#api_key',
    );
    expect(
      formatSecretUri(parseSecretUri('aws-sm://arn:aws:secretsmanager:us-east-1:123456789012:secret:x-AbCdEf')),
    ).toBe('aws-sm://arn:aws:secretsmanager:us-east-1:123456789012:secret:x-AbCdEf');
  });

  it.each([
    ['aws-sm://', 'needs a secret name'],
    ['aws-sm:prod/x', 'after "aws-sm://"'],
    ['aws-sm://prod/x#', 'nothing after "#"'],
    ['aws-sm://prod/x?Region=us-east-1', 'did you mean "region"'],
    ['aws-sm://prod/x?region=us-east-1&region=eu-west-1', 'given twice'],
    ['aws-sm://prod/x?region=', 'needs a value'],
    ['aws-sm://prod/x?region=useast1', 'AWS region name'],
    ['aws-sm://prod/x?versionId=short', 'version UUID'],
    ['aws-sm://prod/x?versionStage=AWSCURRENT&versionId=0123456789abcdef0123456789abcdef', 'not both'],
    ['aws-sm://arn:aws:secretsmanager:us-east-1:123456789012:secret:x-AbCdEf?region=eu-west-1', 'contradicts the ARN'],
    ['aws-sm://arn:aws:ssm:us-east-1:123456789012:parameter/x', 'not a Secrets Manager secret ARN'],
    ['aws-sm://prod/x#%E0%A4%A', 'malformed'],
    ['aws-sm://sk-ant-pasted key', 'may use only'],
  ])('refuses %s with CONFIG_INVALID', (uri, expected) => {
    const err = parseError(() => parseSecretUri(uri));
    expect(err.code).toBe('CONFIG_INVALID');
    expect(err.message).toContain(expected);
  });

  it('does not echo an unparseable secret id (it may be a pasted key)', () => {
    const err = parseError(() => parseSecretUri('aws-sm://sk-ant-api03-PASTED KEY'));
    expect(err.message).not.toContain('PASTED');
  });

  it('describes a reference with the region and profile it will use', async () => {
    const adapter = newAdapter({ region: 'eu-west-1', profile: 'work' });
    const ref = await adapter.parse('aws-sm://prod/anthropic#api_key', {
      overrides: { profile: 'claude' },
      profile: 't',
    });
    expect(adapter.describe(ref)).toBe('aws-sm://prod/anthropic#api_key (eu-west-1, profile claude)');
  });
});

describe('aws-sm settings (the aws: block)', () => {
  it('accepts region, profile and endpoint, and lets a profile block override key by key', async () => {
    const settingsOf = async (settings: unknown, overrides: unknown): Promise<unknown> =>
      (
        (await newAdapter(settings as Record<string, unknown>).parse('aws-sm://x', {
          overrides: overrides as Record<string, unknown>,
          profile: 't',
        })) as { settings: unknown }
      ).settings;
    expect(await settingsOf({ region: 'eu-west-1', profile: 'work' }, { region: 'us-east-1' })).toEqual({
      region: 'us-east-1',
      profile: 'work',
    });
    expect(await settingsOf(undefined, undefined)).toEqual({});
    expect(parseAwsSettings({ endpoint: 'http://127.0.0.1:4566' })).toEqual({ endpoint: 'http://127.0.0.1:4566' });
  });

  it.each([
    [{ regoin: 'us-east-1' }, 'unknown key "regoin" (did you mean "region"?)'],
    [{ endpoint_url: 'http://x' }, 'unknown key "endpoint_url" (did you mean "endpoint"?)'],
    [{ region: 'Ireland' }, 'AWS region name'],
    [{ region: 5 }, 'region must be a string'],
    [{ profile: 'two words' }, 'no spaces'],
    [{ endpoint: 'secretsmanager.example' }, 'absolute http:// or https:// URL'],
    [{ endpoint: 'ftp://example.com' }, 'http:// or https://'],
    [{ endpoint: 'https://AKIA:secret@example.com' }, 'must not contain a user name or password'],
    ['us-east-1', 'must be a mapping'],
  ])('refuses %j with CONFIG_INVALID', (settings, expected) => {
    const err = parseError(() => parseAwsSettings(settings));
    expect(err.code).toBe('CONFIG_INVALID');
    expect(err.message).toMatch(/^aws: /);
    expect(err.message).toContain(expected);
  });

  it('refuses a bad top-level block when the adapter is created, and a bad profile block at parse', () => {
    expect(
      parseError(() =>
        createAdapter({ settings: { endpoint: 'https://user:pw@x.example' }, env: process.env, log: silent }),
      ).message,
    ).not.toContain('pw@');
    const adapter = newAdapter({ region: 'us-east-1' });
    const err = parseError(() => adapter.parse('aws-sm://x', { overrides: { extra: true }, profile: 't' }));
    expect(err.code).toBe('CONFIG_INVALID');
    expect(err.message).toMatch(/^profiles\.t\.aws: unknown key "extra"/);
  });
});

function closedPort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const server = net.createServer();
    server.on('error', reject);
    server.listen(0, '127.0.0.1', () => {
      const { port } = server.address() as net.AddressInfo;
      server.close(() => resolve(port));
    });
  });
}
