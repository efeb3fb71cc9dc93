// aws-sm: — a secret from AWS Secrets Manager, read with GetSecretValue:
//
//   aws:
//     region: eu-west-1                      # optional; see src/aws-settings.ts
//   profiles:
//     claude:
//       source: aws-sm://prod/anthropic#api_key
//       ttl: 1h
//
// URI: aws-sm://<name or full ARN>[?region=R][&versionStage=S | &versionId=ID][#json-key].
// Without #json-key the whole SecretString is the key; with it the SecretString must be a JSON
// object and that top-level key (a string) is used. A SecretBinary is used when it is UTF-8.
//
// Options (the aws: block, top level and per profile): region, profile, endpoint.
// Env fallbacks, read by the AWS SDK itself from the daemon's environment: AWS_REGION,
// AWS_PROFILE, AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY/AWS_SESSION_TOKEN, AWS_CONFIG_FILE,
// AWS_SHARED_CREDENTIALS_FILE, AWS_ENDPOINT_URL_SECRETS_MANAGER, AWS_ENDPOINT_URL,
// AWS_WEB_IDENTITY_TOKEN_FILE, AWS_CONTAINER_CREDENTIALS_*, AWS_EC2_METADATA_DISABLED.
//
// Credentials come from the SDK's default chain (env keys, SSO, shared files, credential_process,
// web identity, container and instance metadata). The SDK is imported on the first fetch, never
// at construction; one client per region/profile/endpoint is kept and reused, so its
// credentials and connections are too. Each GetSecretValue is billed by AWS: the cache above
// makes N Claude Code sessions one read per TTL.
import { isUtf8 } from 'node:buffer';
import { Readable, Transform } from 'node:stream';
import type {
  GetSecretValueCommandOutput,
  SecretsManagerClient,
  ServiceInputTypes,
  ServiceOutputTypes,
} from '@aws-sdk/client-secrets-manager';
import type { DeserializeMiddleware } from '@smithy/types';
import {
  abortable,
  awsSecretLocations,
  isLocked,
  parseAwsSettings,
  type Adapter,
  type AdapterInit,
  type AwsSettings,
  type FetchResult,
  type ParseOptions,
} from '../../src/adapter.js';
import { asBrokerError, BrokerError } from '../../src/errors.js';
import { SecretValue } from '../../src/secret.js';
import { credentialChainError, describeAwsError, translateSecretsManagerError } from './aws-error-translator.js';
import { formatSecretUri, parseSecretUri, type SecretRef } from './aws-sm-uri.js';

export interface AwsSmRef extends SecretRef {
  /** The profile's aws: block over the top-level one. */
  settings: AwsSettings;
  label: string;
}

// AWS caps a secret at 65,536 bytes; anything larger did not come from Secrets Manager.
const MAX_SECRET_BYTES = 64 * 1024;
// Up to three attempts with the SDK's jittered backoff, all inside the profile timeout (ctx.signal).
const MAX_ATTEMPTS = 3;
/** A credentials rejection is retried once with freshly resolved credentials. */
const CREDENTIAL_ATTEMPTS = 2;
// A GetSecretValue answer holds one secret (escaped, or base64 for SecretBinary) and a few fields.
const MAX_RESPONSE_BYTES = 1024 * 1024;
const CONNECTION_TIMEOUT_MS = 3_000;
const REQUEST_TIMEOUT_MS = 5_000;

type SdkModule = typeof import('@aws-sdk/client-secrets-manager');
type CredentialsModule = typeof import('@aws-sdk/credential-providers');

interface ClientEntry {
  client: SecretsManagerClient;
  region: string | undefined;
  profile: string | undefined;
  endpoint: string | undefined;
}

export function createAdapter(init: AdapterInit): Adapter<AwsSmRef> {
  // Validated now so a bad top-level block is reported once, against the config, not per fetch.
  const topLevel = parseAwsSettings(init.settings);
  const clients = new SecretsManagerClients(init.log);
  let closed = false;
  const stats = { calls: 0, failed: 0, credentialFailures: 0 };

  return {
    kind: 'aws-sm',

    parse: (uri, options) => parseRef(uri, options, topLevel),

    describe: (ref) => ref.label,
    secretLocations: () => awsSecretLocations(init.env),

    async fetch(ref, ctx) {
      if (closed) throw new BrokerError('SHUTTING_DOWN', `${ref.label}: the aws-sm source was closed`);
      if (ctx.signal.aborted) throw abortReason(ctx.signal, ref);
      const region = ref.region ?? ref.settings.region;
      const envEndpoint = init.env.AWS_ENDPOINT_URL_SECRETS_MANAGER || init.env.AWS_ENDPOINT_URL || undefined;
      const errorContext = {
        label: ref.label,
        secretId: ref.secretId,
        region,
        profile: ref.settings.profile,
        endpoint: ref.settings.endpoint ?? envEndpoint,
        versionStage: ref.versionStage,
        versionId: ref.versionId,
        env: init.env,
        signal: ctx.signal,
      };
      const started = Date.now();
      let output: GetSecretValueCommandOutput | undefined;
      // A credentials rejection (UnrecognizedClientException, InvalidSignatureException,
      // ExpiredTokenException…) usually means the keys were rotated under the running daemon: the
      // client memoised the old ones. Resolve them again with a fresh client and retry once, in
      // this same fetch, so the first refresh after a rotation already works.
      for (let attempt = 1; output === undefined; attempt++) {
        const { key, entry, sm } = await clients.get(region, ref.settings);
        try {
          await abortable(entry.client.config.credentials(), ctx.signal);
        } catch (err) {
          stats.credentialFailures++;
          const error = ctx.signal.aborted
            ? abortReason(ctx.signal, ref)
            : await credentialChainError(err, { label: ref.label, profile: ref.settings.profile, env: init.env });
          ctx.log.debug(
            { secretId: ref.secretId, ms: Date.now() - started, code: error.code, ...describeAwsError(err) },
            'AWS credentials failed',
          );
          throw error;
        }
        stats.calls++;
        try {
          const command = new sm.GetSecretValueCommand({
            SecretId: ref.secretId,
            ...(ref.versionId !== undefined && { VersionId: ref.versionId }),
            ...(ref.versionStage !== undefined && { VersionStage: ref.versionStage }),
          });
          output = await abortable(entry.client.send(command, { abortSignal: ctx.signal }), ctx.signal);
        } catch (err) {
          stats.failed++;
          if (errorContext.region === undefined) errorContext.region = await resolvedRegion(entry.client);
          const { error, kind } = await translateSecretsManagerError(err, errorContext);
          ctx.log.debug(
            { secretId: ref.secretId, ms: Date.now() - started, code: error.code, attempt, ...describeAwsError(err) },
            'GetSecretValue failed',
          );
          if (kind !== 'credentials') throw error;
          clients.drop(key);
          if (attempt >= CREDENTIAL_ATTEMPTS || ctx.signal.aborted) throw error;
          ctx.log.info(
            { secretId: ref.secretId, status: error.status },
            'AWS rejected the credentials: resolving them again and retrying once',
          );
        }
      }
      ctx.log.debug(
        { secretId: ref.secretId, ms: Date.now() - started, versionId: output.VersionId },
        'GetSecretValue',
      );
      const value = valueOf(output, ref);
      const result: FetchResult = { value };
      if (typeof output.VersionId === 'string') result.version = output.VersionId;
      return result;
    },

    status() {
      const notes = [`GetSecretValue calls: ${stats.calls}${stats.failed > 0 ? ` (${stats.failed} failed)` : ''}`];
      if (stats.credentialFailures > 0) notes.push(`credential lookups failed: ${stats.credentialFailures}`);
      return [...notes, ...clients.status()];
    },

    async close() {
      closed = true;
      clients.dropAll();
    },
  };
}

/** A profile's reference: its URI, and its aws: block over the top-level one. */
function parseRef(uri: string, options: ParseOptions, topLevel: AwsSettings): AwsSmRef {
  let ref = parseSecretUri(uri);
  const settings = { ...topLevel, ...parseAwsSettings(options.overrides, options.profile) };
  // A managed lock on aws.region wins over the URI's own ?region=.
  if (ref.regionFrom === 'query' && isLocked(options, 'region')) {
    const { region, regionFrom: _from, ...rest } = ref;
    ref = rest;
    options.warn?.(
      `?region=${region} is ignored: aws.region is locked by ${options.locked!.by}` +
        (settings.region ? ` (${settings.region})` : ''),
    );
  }
  return { ...ref, settings, label: labelFor(ref, settings) };
}

type Sdk = { sm: SdkModule; creds: CredentialsModule };

/** One client per region/profile/endpoint, made on first use (the SDK is imported then) and reused. */
class SecretsManagerClients {
  readonly #clients = new Map<string, ClientEntry>();
  readonly #log: AdapterInit['log'];
  #sdk: Promise<Sdk> | undefined;

  constructor(log: AdapterInit['log']) {
    this.#log = log;
  }

  async get(
    region: string | undefined,
    settings: AwsSettings,
  ): Promise<{ key: string; entry: ClientEntry; sm: SdkModule }> {
    const { sm, creds } = await this.#loadSdk();
    const key = JSON.stringify([region ?? null, settings.profile ?? null, settings.endpoint ?? null]);
    let entry = this.#clients.get(key);
    if (!entry) {
      entry = {
        client: newClient(sm, creds, region, settings, this.#log),
        region,
        profile: settings.profile,
        endpoint: settings.endpoint,
      };
      this.#clients.set(key, entry);
      this.#log.debug(
        {
          region: region ?? '(sdk default)',
          profile: settings.profile ?? '(sdk default)',
          endpoint: settings.endpoint ? hostOf(settings.endpoint) : undefined,
        },
        'created Secrets Manager client',
      );
    }
    return { key, entry, sm };
  }

  drop(key: string): void {
    const entry = this.#clients.get(key);
    if (!entry) return;
    this.#clients.delete(key);
    entry.client.destroy();
  }

  dropAll(): void {
    for (const key of [...this.#clients.keys()]) this.drop(key);
  }

  status(): string[] {
    return [...this.#clients.values()].map((entry) => {
      const parts = [
        `region ${entry.region ?? 'from the SDK default'}`,
        entry.profile ? `profile ${entry.profile}` : 'default credential chain',
      ];
      if (entry.endpoint) parts.push(`endpoint ${hostOf(entry.endpoint)}`);
      return `client: ${parts.join(', ')}`;
    });
  }

  #loadSdk(): Promise<Sdk> {
    this.#sdk ??= Promise.all([
      import('@aws-sdk/client-secrets-manager'),
      import('@aws-sdk/credential-providers'),
    ]).then(
      ([sm, creds]) => ({ sm, creds }),
      (err: unknown) => {
        this.#sdk = undefined;
        this.#log.error(describeAwsError(err), 'could not load the AWS SDK');
        throw new BrokerError(
          'CONFIG_INVALID',
          'aws-sm: the AWS SDK (@aws-sdk/client-secrets-manager) could not be loaded',
          { fix: 'is the install complete? try: npm ci' },
        );
      },
    );
    return this.#sdk;
  }
}

function newClient(
  sm: SdkModule,
  creds: CredentialsModule,
  region: string | undefined,
  settings: AwsSettings,
  log: AdapterInit['log'],
): SecretsManagerClient {
  const client = new sm.SecretsManagerClient({
    ...(region !== undefined && { region }),
    ...(settings.profile !== undefined && { profile: settings.profile }),
    ...(settings.endpoint !== undefined && { endpoint: settings.endpoint }),
    // The default chain, re-reading ~/.aws files whenever it resolves, so `aws configure`
    // or a fixed profile takes effect on the next fetch without restarting the daemon.
    credentials: creds.fromNodeProviderChain({
      ...(settings.profile !== undefined && { profile: settings.profile }),
      ignoreCache: true,
      logger: sdkLogger(log),
    }),
    maxAttempts: MAX_ATTEMPTS,
    requestHandler: { connectionTimeout: CONNECTION_TIMEOUT_MS, requestTimeout: REQUEST_TIMEOUT_MS },
  });
  // Innermost, next to the HTTP handler: the deserializer would otherwise collect the whole
  // body, however long, before parsing it.
  const limitResponse: DeserializeMiddleware<ServiceInputTypes, ServiceOutputTypes> = (next) => async (args) => {
    const result = await next(args);
    const response = result.response as { body?: unknown };
    if (response.body instanceof Readable)
      response.body = boundedBody(response.body, MAX_RESPONSE_BYTES, settings.endpoint);
    return result;
  };
  client.middlewareStack.addRelativeTo(limitResponse, {
    relation: 'after',
    toMiddleware: 'deserializerMiddleware',
    name: 'keybrokerResponseLimit',
  });
  return client;
}

/**
 * The chain's only use of a logger worth keeping is warn() ("both AWS_PROFILE and
 * AWS_ACCESS_KEY_ID are set"), which would otherwise go to console.warn, outside the JSON log.
 */
function sdkLogger(
  log: AdapterInit['log'],
): Record<'debug' | 'info' | 'error' | 'warn', (...content: unknown[]) => void> {
  return {
    debug: (): void => {},
    info: (): void => {},
    error: (): void => {},
    warn: (...content: unknown[]): void => {
      const text = content
        .filter((c) => typeof c === 'string')
        .join(' ')
        .replace(/\s+/g, ' ')
        .trim();
      log.warn({ sdkWarning: text.slice(0, 300) }, 'the AWS SDK warned');
    },
  };
}

/** The secret's value: the whole SecretString or SecretBinary, or one key of its JSON. */
function valueOf(output: GetSecretValueCommandOutput, ref: AwsSmRef): SecretValue {
  const binary = output.SecretBinary;
  try {
    let text: string;
    if (typeof output.SecretString === 'string') {
      if (Buffer.byteLength(output.SecretString, 'utf8') > MAX_SECRET_BYTES) throw tooLarge(ref);
      if (ref.jsonKey === undefined) return SecretValue.fromString(output.SecretString);
      text = output.SecretString;
    } else if (binary instanceof Uint8Array) {
      if (binary.byteLength > MAX_SECRET_BYTES) throw tooLarge(ref);
      const bytes = Buffer.from(binary.buffer, binary.byteOffset, binary.byteLength);
      if (!isUtf8(bytes)) {
        throw new BrokerError(
          'INVALID_VALUE',
          `${ref.label}: the secret holds binary data that is not UTF-8 text, so it cannot be a key`,
        );
      }
      if (ref.jsonKey === undefined) return SecretValue.fromBytes(bytes);
      text = bytes.toString('utf8');
    } else {
      throw new BrokerError(
        'INVALID_VALUE',
        `${ref.label}: the secret version has neither a SecretString nor a SecretBinary`,
      );
    }
    return SecretValue.fromString(jsonField(text, ref.jsonKey, ref));
  } finally {
    // The SDK's copy of a binary secret is ours to wipe; strings cannot be.
    if (binary instanceof Uint8Array) binary.fill(0);
  }
}

function jsonField(text: string, key: string, ref: AwsSmRef): string {
  let data: unknown;
  try {
    data = JSON.parse(text);
  } catch {
    // JSON.parse's message quotes the text around the fault: the secret. Say only what to do.
    throw new BrokerError(
      'INVALID_VALUE',
      `${ref.label}: the secret is not JSON, so key "${key}" cannot be read from it`,
      {
        fix: `drop "#${key}" to use the whole secret`,
      },
    );
  }
  if (typeof data !== 'object' || data === null || Array.isArray(data)) {
    throw new BrokerError(
      'INVALID_VALUE',
      `${ref.label}: the secret is JSON but not an object, so key "${key}" cannot be read from it`,
      { fix: `drop "#${key}" to use the whole secret` },
    );
  }
  if (!Object.prototype.hasOwnProperty.call(data, key)) {
    // The other keys are not listed: key names are part of the secret's content.
    throw new BrokerError(
      'NOT_FOUND',
      `${ref.label}: the secret's JSON has no key "${key}" (keys are case-sensitive)`,
      {
        fix: `see its keys with: aws secretsmanager get-secret-value --secret-id ${ref.secretId} --query SecretString`,
      },
    );
  }
  const field = (data as Record<string, unknown>)[key];
  if (typeof field !== 'string') {
    const kind =
      field === null
        ? 'null'
        : Array.isArray(field)
          ? 'an array'
          : typeof field === 'object'
            ? 'an object'
            : `a ${typeof field}`;
    throw new BrokerError('INVALID_VALUE', `${ref.label}: key "${key}" of the secret's JSON is ${kind}, not a string`);
  }
  return field;
}

function tooLarge(ref: AwsSmRef): BrokerError {
  return new BrokerError(
    'INVALID_VALUE',
    `${ref.label}: the secret is larger than ${MAX_SECRET_BYTES} bytes; a key is expected`,
  );
}

function labelFor(ref: SecretRef, settings: AwsSettings): string {
  const uri = formatSecretUri(ref);
  const context: string[] = [];
  if (ref.region === undefined && settings.region) context.push(settings.region);
  if (settings.profile) context.push(`profile ${settings.profile}`);
  return context.length > 0 ? `${uri} (${context.join(', ')})` : uri;
}

function hostOf(endpoint: string): string {
  try {
    return new URL(endpoint).host;
  } catch {
    return '(invalid endpoint)';
  }
}

async function resolvedRegion(client: SecretsManagerClient): Promise<string | undefined> {
  try {
    const region = await client.config.region();
    return typeof region === 'string' && region.length > 0 ? region : undefined;
  } catch {
    return undefined;
  }
}

function abortReason(signal: AbortSignal, ref: AwsSmRef): BrokerError {
  return asBrokerError(signal.reason, 'TIMEOUT', `${ref.label}: stopped before Secrets Manager answered`);
}

/**
 * The response body, cut off past `max` bytes: the stream fails with SOURCE_ERROR and the
 * connection is destroyed, so an endpoint that never stops sending costs a megabyte, not memory
 * until the profile timeout.
 */
function boundedBody(body: Readable, max: number, endpoint: string | undefined): Readable {
  let seen = 0;
  const limited = new Transform({
    transform(chunk: Buffer, _encoding, callback) {
      seen += chunk.length;
      if (seen <= max) {
        callback(null, chunk);
        return;
      }
      body.destroy();
      const error = new BrokerError(
        'SOURCE_ERROR',
        `Secrets Manager${endpoint ? ` at ${hostOf(endpoint)}` : ''} sent more than ${max} bytes for one secret: that is not a GetSecretValue answer`,
      );
      // The SDK's deserializer appends a multi-line hint to any error without $metadata.
      Object.defineProperty(error, '$metadata', { value: {}, enumerable: false });
      callback(error);
    },
  });
  body.on('error', (err) => limited.destroy(err));
  return body.pipe(limited);
}
