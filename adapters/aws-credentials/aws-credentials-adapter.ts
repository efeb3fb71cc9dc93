// aws-credentials:// — AWS credentials for Claude Code's awsCredentialExport (Bedrock), resolved by
// the AWS SDK's own credential chain once, then served from the daemon's cache until shortly before
// they expire, so each refresh no longer costs an `aws` CLI start.
//
//   profiles:
//     bedrock:
//       source: aws-credentials://work    # AWS profile "work" of ~/.aws/config or ~/.aws/credentials:
//                                         # static keys, SSO, assume-role, credential_process, web identity
//     ambient:
//       source: aws-credentials://        # the SDK's default chain: env, SSO, ini files, process, IMDS …
//   aws:                                  # optional, shared with aws-sm: (also per profile)
//     profile: work                       # the AWS profile of a bare aws-credentials:// source
//     region: eu-west-1                   # STS region for assume-role when the AWS profile names none
//     # endpoint: is Secrets Manager's; this source does not use it
//
// Claude Code: "awsCredentialExport": "keybroker-shim --format aws-credentials bedrock". The value is
// the JSON {"AccessKeyId","SecretAccessKey","SessionToken"?,"Expiration"?}; the shim wraps it in
// {"Credentials": …}. Temporary credentials are cached until 5 minutes before their Expiration.
//
// Env (the daemon's): AWS_PROFILE (bare source), AWS_SHARED_CREDENTIALS_FILE, AWS_CONFIG_FILE, and
// whatever else the SDK reads itself: AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY/AWS_SESSION_TOKEN,
// AWS_REGION, AWS_ENDPOINT_URL_STS, AWS_ENDPOINT_URL_SSO, AWS_EC2_METADATA_DISABLED, HOME. (The SDK's
// SSO step re-reads the profile from the files process.env names; in the daemon that is the same env.)
// @aws-sdk/credential-providers is loaded with import() on the first fetch.
//
// The daemon cannot prompt: an AWS profile that needs an MFA code fails with AUTH_REQUIRED, and an
// expired SSO session asks for `aws sso login`.
import type * as CredentialProviders from '@aws-sdk/credential-providers';
import {
  abortable,
  awsSecretLocations,
  parseAwsSettings,
  type Adapter,
  type AdapterInit,
  type FetchResult,
  type Logger,
} from '../../src/adapter.js';
import { asBrokerError, BrokerError } from '../../src/errors.js';
import { SecretValue } from '../../src/secret.js';

export interface AwsCredentialsRef {
  /** The AWS profile to read; undefined means the SDK's default chain. */
  profile: string | undefined;
  region: string | undefined;
  label: string;
}

type Sdk = typeof CredentialProviders;
type AwsCredentials = Awaited<ReturnType<ReturnType<Sdk['fromIni']>>>;

const SCHEME = 'aws-credentials:';
/** The characters the SDK's ini parser accepts in a profile name, minus the ones that break a URI. */
const PROFILE_NAME = /^[A-Za-z0-9_.@+%-]{1,128}$/;
/** Cache temporary credentials until this long before they expire (Claude Code then gets fresh ones). */
export const EXPIRY_MARGIN_MS = 5 * 60_000;
/** STS/SSO calls: one retry (the SDK's jittered backoff), and no socket waits longer than these. */
const CLIENT_CONFIG = { maxAttempts: 2, requestHandler: { connectionTimeout: 3_000, requestTimeout: 6_000 } };

export function createAdapter(init: AdapterInit): Adapter<AwsCredentialsRef> {
  const settings = parseAwsSettings(init.settings);
  const env = init.env;
  let sdk: Promise<Sdk> | undefined;
  const loadSdk = (): Promise<Sdk> => {
    sdk ??= import('@aws-sdk/credential-providers').catch((err: unknown) => {
      sdk = undefined;
      init.log.error(
        { errName: err instanceof Error ? err.name : typeof err },
        'could not load @aws-sdk/credential-providers',
      );
      throw new BrokerError('SOURCE_ERROR', 'the AWS SDK (@aws-sdk/credential-providers) could not be loaded', {
        fix: 'is the install complete? (npm ci)',
      });
    });
    return sdk;
  };
  const sdkLogger = quietSdkLogger(init.log);

  return {
    kind: 'aws-credentials',
    parse(uri, options) {
      const overrides = parseAwsSettings(options.overrides, options.profile);
      const named = parseProfileName(uri);
      if (named !== undefined && overrides.profile !== undefined && overrides.profile !== named) {
        throw new BrokerError(
          'CONFIG_INVALID',
          `names two AWS profiles: "${named}" in the source and "${overrides.profile}" in its aws: block — keep one`,
        );
      }
      const profile = named ?? overrides.profile ?? settings.profile;
      return {
        profile,
        region: overrides.region ?? settings.region,
        label: profile === undefined ? 'aws-credentials:// (SDK default chain)' : `aws-credentials://${profile}`,
      };
    },
    describe: (ref) => ref.label,
    secretLocations: () => awsSecretLocations(env),
    async fetch(ref, ctx): Promise<FetchResult> {
      if (ctx.signal.aborted) throw abortError(ctx.signal, ref);
      // The SDK takes no AbortSignal: a slow STS/SSO call or credential_process finishes on its own
      // (its client timeouts bound it) after we leave.
      const providers = await abortable(loadSdk(), ctx.signal, (s) => abortError(s, ref));
      const common = {
        // The SDK caches file reads for the life of the process; a rotated key must be seen.
        ignoreCache: true,
        filepath: env.AWS_SHARED_CREDENTIALS_FILE || undefined,
        configFilepath: env.AWS_CONFIG_FILE || undefined,
        clientConfig: CLIENT_CONFIG,
        // parentClientConfig.region is what STS falls back to after the AWS profile's own region;
        // clientConfig.region would also override the SSO portal's region, which is wrong.
        ...(ref.region !== undefined && { parentClientConfig: { region: ref.region } }),
        logger: sdkLogger,
      };
      // A new provider per fetch: the SDK's chain memoizes credentials, and the daemon's cache is
      // the one place that decides when to ask again.
      const provider =
        ref.profile !== undefined
          ? providers.fromIni({ ...common, profile: ref.profile })
          : providers.fromNodeProviderChain({ ...common, profile: env.AWS_PROFILE || undefined });
      let credentials: AwsCredentials;
      try {
        credentials = await abortable(provider(), ctx.signal, (s) => abortError(s, ref));
      } catch (err) {
        const mapped = translateAwsCredentialsError(err, ref, env);
        if (!(err instanceof BrokerError))
          ctx.log.debug(
            { errName: errorName(err), code: mapped.code, status: mapped.status },
            'AWS credential resolution failed',
          );
        throw mapped;
      }
      return toFetchResult(credentials, ref, Date.now(), ctx.log);
    },
    async close() {},
  };
}

/** The AWS profile a URI names, or undefined for the default chain. Throws CONFIG_INVALID. */
function parseProfileName(uri: string): string | undefined {
  const rest = uri.slice(SCHEME.length);
  if (rest === '' || rest === '//') return undefined;
  if (!rest.startsWith('//')) {
    throw new BrokerError(
      'CONFIG_INVALID',
      'write aws-credentials://PROFILE (an AWS profile name) or aws-credentials:// for the SDK default chain',
    );
  }
  const name = rest.slice(2);
  if (!PROFILE_NAME.test(name)) {
    throw new BrokerError(
      'CONFIG_INVALID',
      'not a valid AWS profile name after aws-credentials:// — use letters, digits and . _ - @ + % (no "/", "?", "#" or spaces), e.g. aws-credentials://work',
    );
  }
  return name;
}

/** ttlMs for credentials that expire in `remainingMs`: end EXPIRY_MARGIN_MS early, or halfway for short ones. */
export function ttlBeforeExpiry(remainingMs: number): number {
  return remainingMs > 2 * EXPIRY_MARGIN_MS ? remainingMs - EXPIRY_MARGIN_MS : Math.floor(remainingMs / 2);
}

function toFetchResult(credentials: AwsCredentials, ref: AwsCredentialsRef, now: number, log: Logger): FetchResult {
  const { accessKeyId, secretAccessKey, sessionToken } = credentials;
  if (
    typeof accessKeyId !== 'string' ||
    accessKeyId === '' ||
    typeof secretAccessKey !== 'string' ||
    secretAccessKey === ''
  ) {
    throw new BrokerError(
      'INVALID_VALUE',
      `${ref.label}: the AWS SDK returned credentials without an access key id or secret key`,
    );
  }
  const expiration =
    credentials.expiration instanceof Date && Number.isFinite(credentials.expiration.getTime())
      ? credentials.expiration
      : undefined;
  if (expiration && expiration.getTime() <= now) {
    throw new BrokerError('AUTH_REQUIRED', `${ref.label}: the credentials expired at ${expiration.toISOString()}`, {
      fix: refreshHint(ref),
    });
  }
  const body: Record<string, string> = { AccessKeyId: accessKeyId, SecretAccessKey: secretAccessKey };
  if (typeof sessionToken === 'string' && sessionToken !== '') body.SessionToken = sessionToken;
  if (expiration) body.Expiration = expiration.toISOString();
  const result: FetchResult = { value: SecretValue.fromString(JSON.stringify(body)) };
  if (expiration) {
    // ttlMs refreshes them well ahead (Claude Code holds on to what it gets); expiresAt is the
    // hard stop: never served at or after it, stale or not.
    result.ttlMs = ttlBeforeExpiry(expiration.getTime() - now);
    result.expiresAt = expiration.getTime();
    result.version = `expires ${expiration.toISOString()}`;
  }
  log.debug(
    { temporary: body.SessionToken !== undefined, expiresAt: body.Expiration ?? null },
    'AWS credentials resolved',
  );
  return result;
}

function refreshHint(ref: AwsCredentialsRef): string {
  return ref.profile !== undefined
    ? `refresh them (for SSO: aws sso login --profile ${ref.profile})`
    : 'refresh them (for SSO: aws sso login)';
}

function filesHint(env: NodeJS.ProcessEnv): string {
  return `${env.AWS_CONFIG_FILE || '~/.aws/config'} and ${env.AWS_SHARED_CREDENTIALS_FILE || '~/.aws/credentials'}`;
}

const NETWORK_CODES = new Set([
  'ECONNREFUSED',
  'ECONNRESET',
  'ENOTFOUND',
  'EAI_AGAIN',
  'ETIMEDOUT',
  'EHOSTUNREACH',
  'ENETUNREACH',
  'EPIPE',
  'ECONNABORTED',
]);
const AUTH_REJECTED = new Set([
  'ExpiredToken',
  'ExpiredTokenException',
  'InvalidClientTokenId',
  'UnrecognizedClientException',
  'SignatureDoesNotMatch',
  'IncompleteSignature',
  'InvalidIdentityToken',
  'IDPRejectedClaim',
  'UnauthorizedException',
  'InvalidGrantException',
]);
const DENIED = new Set(['AccessDenied', 'AccessDeniedException', 'ForbiddenException', 'RegionDisabledException']);
const THROTTLED = new Set([
  'Throttling',
  'ThrottlingException',
  'TooManyRequestsException',
  'RequestLimitExceeded',
  'SlowDown',
]);
const KNOWN_SERVICE_ERRORS = new Set([...AUTH_REJECTED, ...DENIED, ...THROTTLED]);

/**
 * Map whatever the SDK threw to a BrokerError. Map, don't wrap: an SDK error can carry request
 * metadata, a credential_process's output or a service message, so none of its text is copied —
 * it is only matched against the SDK's known messages to pick a code and write our own words.
 */
export function translateAwsCredentialsError(
  err: unknown,
  ref: AwsCredentialsRef,
  env: NodeJS.ProcessEnv = {},
): BrokerError {
  if (err instanceof BrokerError) return err;
  const who = ref.profile !== undefined ? `AWS profile "${ref.profile}"` : 'the AWS SDK default chain';
  const name = errorName(err);
  const message = err instanceof Error ? err.message : '';
  const errno = (err as { code?: unknown } | null)?.code;
  const status = (err as { $metadata?: { httpStatusCode?: unknown } } | null)?.$metadata?.httpStatusCode;
  const httpStatus = typeof status === 'number' ? status : undefined;
  // The SSO provider re-throws service errors as CredentialsProviderError("<Name>: …"): recover the name.
  const named = /^([A-Z][A-Za-z]+): /.exec(message)?.[1];
  const serviceName =
    httpStatus !== undefined
      ? name
      : named !== undefined && (KNOWN_SERVICE_ERRORS.has(named) || named.endsWith('Exception'))
        ? named
        : undefined;

  if (
    (typeof errno === 'string' && NETWORK_CODES.has(errno)) ||
    name === 'TimeoutError' ||
    name === 'RequestTimeout' ||
    /\b(ECONNREFUSED|ENOTFOUND|EAI_AGAIN|ETIMEDOUT)\b/.test(message)
  ) {
    const code = typeof errno === 'string' ? errno : (/\b(E[A-Z_]+)\b/.exec(message)?.[1] ?? name);
    return new BrokerError('UNAVAILABLE', `${ref.label}: could not reach AWS (STS/SSO) to resolve ${who} (${code})`, {
      status: code,
    });
  }
  if (serviceName !== undefined) {
    const refused = serviceRefusal(serviceName, httpStatus, ref, who);
    if (refused) return refused;
  }
  const failed = chainFailure(message, ref, who, env);
  if (failed) return failed;
  return new BrokerError(
    'SOURCE_ERROR',
    `${ref.label}: could not resolve ${who} (${name}; details withheld, run the daemon with --log-level debug)`,
  );
}

/** An AWS service's refusal (STS, SSO), by its error name and HTTP status. */
function serviceRefusal(
  serviceName: string,
  httpStatus: number | undefined,
  ref: AwsCredentialsRef,
  who: string,
): BrokerError | undefined {
  const s = httpStatus ?? serviceName;
  if (AUTH_REJECTED.has(serviceName) || httpStatus === 401) {
    return new BrokerError(
      'AUTH_REQUIRED',
      `${ref.label}: AWS rejected the credentials behind ${who} (${serviceName})`,
      { status: s, fix: refreshHint(ref) },
    );
  }
  if (DENIED.has(serviceName) || httpStatus === 403) {
    return new BrokerError('PERMISSION_DENIED', `${ref.label}: AWS denied ${who} (${serviceName})`, {
      status: s,
      fix: "check the role's trust policy and your permissions to assume it",
    });
  }
  if (THROTTLED.has(serviceName) || httpStatus === 429) {
    return new BrokerError(
      'RATE_LIMITED',
      `${ref.label}: AWS throttled the request for ${who} (${serviceName}); retrying later`,
      { status: s },
    );
  }
  if (serviceName === 'ResourceNotFoundException' || httpStatus === 404) {
    return new BrokerError('NOT_FOUND', `${ref.label}: AWS found no such account or role for ${who} (${serviceName})`, {
      status: s,
    });
  }
  if (httpStatus !== undefined && httpStatus >= 500) {
    return new BrokerError(
      'UNAVAILABLE',
      `${ref.label}: AWS answered ${httpStatus} (${serviceName}) for ${who}; retrying later`,
      { status: s },
    );
  }
  if (httpStatus !== undefined) {
    return new BrokerError(
      'SOURCE_ERROR',
      `${ref.label}: AWS refused the request for ${who} (${serviceName}, HTTP ${httpStatus})`,
      { status: s },
    );
  }
  return undefined;
}

/**
 * A failure of the credential chain itself, recognised by the SDK's own message (matched, never
 * copied: it may hold a credential_process's output).
 */
function chainFailure(
  message: string,
  ref: AwsCredentialsRef,
  who: string,
  env: NodeJS.ProcessEnv,
): BrokerError | undefined {
  if (
    /Could not resolve credentials using profile|could not be found in shared credentials file|Profile \S+ was not found/.test(
      message,
    )
  ) {
    return new BrokerError(
      'NOT_FOUND',
      `${ref.label}: ${who} is not in ${filesHint(env)}, or has no credentials there`,
      {
        fix: 'check the name (aws configure list-profiles)',
      },
    );
  }
  if (/SSO session|SSO Token|sso login|Token is expired|SSO session token/i.test(message)) {
    return new BrokerError('AUTH_REQUIRED', `${ref.label}: the SSO session of ${who} has expired or is missing`, {
      fix: `run: aws sso login${ref.profile !== undefined ? ` --profile ${ref.profile}` : ''}`,
    });
  }
  if (/multi-factor authentication/.test(message)) {
    return new BrokerError('AUTH_REQUIRED', `${ref.label}: ${who} needs an MFA code and the daemon cannot prompt`, {
      fix: 'use an SSO profile, or a credential_process that caches its session',
    });
  }
  if (/credential_process returned expired credentials/.test(message)) {
    return new BrokerError(
      'AUTH_REQUIRED',
      `${ref.label}: the credential_process of ${who} returned expired credentials`,
      {
        fix: refreshHint(ref),
      },
    );
  }
  if (/credential_process|Command failed/.test(message)) {
    return new BrokerError(
      'SOURCE_ERROR',
      `${ref.label}: the credential_process of ${who} failed or printed no valid credentials`,
      { fix: 'run it by hand to see why' },
    );
  }
  if (/Could not load credentials from any providers|EC2 Instance Metadata Service access disabled/.test(message)) {
    return new BrokerError(
      'AUTH_REQUIRED',
      `${ref.label}: the AWS SDK found no credentials (environment, SSO, ${filesHint(env)}, credential_process, web identity, instance metadata)`,
      { fix: 'run aws configure or aws sso login, or name a profile: aws-credentials://PROFILE' },
    );
  }
  if (
    /Detected a cycle|Unsupported credential source|Incomplete configuration|Conflicting SSO|invalid SSO credentials|missing required property|is not configured with SSO/.test(
      message,
    )
  ) {
    return new BrokerError('SOURCE_ERROR', `${ref.label}: ${who} is misconfigured in ${filesHint(env)}`, {
      fix: `check it with: aws configure list${ref.profile !== undefined ? ` --profile ${ref.profile}` : ''}`,
    });
  }
  return undefined;
}

function errorName(err: unknown): string {
  return err instanceof Error ? err.name : typeof err;
}

/** The SDK's logger: its debug chatter is dropped; warnings are kept, cut short. */
function quietSdkLogger(log: Logger) {
  const warn = (...args: unknown[]): void => {
    log.warn(
      {
        sdkWarning: args
          .filter((a) => typeof a === 'string')
          .join(' ')
          .slice(0, 300),
      },
      'AWS SDK warning',
    );
  };
  const drop = (): void => {};
  return { debug: drop, info: drop, trace: drop, warn, error: warn };
}

function abortError(signal: AbortSignal, ref: AwsCredentialsRef): BrokerError {
  return asBrokerError(signal.reason, 'TIMEOUT', `${ref.label}: stopped before the AWS SDK answered`);
}
