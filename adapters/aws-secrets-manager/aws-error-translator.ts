// The one place AWS SDK errors become BrokerErrors, for the aws-sm: source (the credential-chain
// half, credentialChainError, is also what aws-credentials: reports).
//
// Map, don't wrap: nothing from the SDK error is copied but its name (the AWS error code), its
// HTTP status and an errno code. AWS messages and credential-provider messages can quote ARNs,
// account ids, request bodies or a credential_process's output; ours are written here instead,
// each naming the secret, region and profile and saying what to do.
import fs from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { formatDuration, parseRetryAfter } from '../../src/adapter.js';
import { asBrokerError, BrokerError } from '../../src/errors.js';

export interface AwsErrorContext {
  /** The source as status shows it, e.g. aws-sm://prod/anthropic#api_key. */
  label: string;
  secretId: string;
  /** The region the request went to, when known. */
  region: string | undefined;
  /** The profile from the aws: block; AWS_PROFILE and "default" are looked up from env. */
  profile: string | undefined;
  /** Where requests went when not to AWS itself (aws.endpoint, AWS_ENDPOINT_URL_*). */
  endpoint: string | undefined;
  versionStage?: string | undefined;
  versionId?: string | undefined;
  env: NodeJS.ProcessEnv;
  signal?: AbortSignal;
}

/** What kind of failure, for the adapter's bookkeeping (an auth failure drops the client). */
export type AwsFailureKind = 'credentials' | 'service' | 'network' | 'aborted' | 'other';

export interface TranslatedError {
  error: BrokerError;
  kind: AwsFailureKind;
}

// AWS error codes by meaning (AWS common errors + the Secrets Manager API reference).
const THROTTLING = new Set([
  'ThrottlingException',
  'Throttling',
  'TooManyRequestsException',
  'RequestLimitExceeded',
  'RequestThrottled',
  'RequestThrottledException',
  'SlowDown',
  'LimitExceededException',
]);
const SERVER = new Set([
  'InternalServiceError',
  'InternalFailure',
  'InternalServerError',
  'ServiceUnavailable',
  'ServiceUnavailableException',
]);
const UNKNOWN_KEY = new Set([
  'UnrecognizedClientException',
  'InvalidClientTokenId',
  'InvalidAccessKeyId',
  'MissingAuthenticationTokenException',
  'MissingAuthenticationToken',
]);
const BAD_SIGNATURE = new Set([
  'InvalidSignatureException',
  'SignatureDoesNotMatch',
  'IncompleteSignatureException',
  'IncompleteSignature',
]);
const EXPIRED = new Set(['ExpiredTokenException', 'ExpiredToken', 'RequestExpired']);
const NETWORK = new Set([
  'ECONNREFUSED',
  'ECONNRESET',
  'ENOTFOUND',
  'EAI_AGAIN',
  'ETIMEDOUT',
  'EPIPE',
  'EHOSTUNREACH',
  'ENETUNREACH',
  'ECONNABORTED',
  'EPROTO',
  'CERT_HAS_EXPIRED',
  'DEPTH_ZERO_SELF_SIGNED_CERT',
  'SELF_SIGNED_CERT_IN_CHAIN',
  'UNABLE_TO_VERIFY_LEAF_SIGNATURE',
  'ERR_TLS_CERT_ALTNAME_INVALID',
]);

const NO_CREDENTIALS = 'Could not load credentials from any providers';

/** The parts of an SDK error that are safe to log: names and numbers, never its message. */
export function describeAwsError(err: unknown): Record<string, string | number> {
  const out: Record<string, string | number> = { errName: errorName(err) };
  const e = err as {
    $metadata?: { httpStatusCode?: number; requestId?: string; attempts?: number };
    code?: unknown;
  } | null;
  if (e && typeof e === 'object') {
    if (typeof e.$metadata?.httpStatusCode === 'number') out.httpStatus = e.$metadata.httpStatusCode;
    if (typeof e.$metadata?.requestId === 'string' && /^[A-Za-z0-9-]{1,64}$/.test(e.$metadata.requestId))
      out.requestId = e.$metadata.requestId;
    if (typeof e.$metadata?.attempts === 'number') out.attempts = e.$metadata.attempts;
    if (typeof e.code === 'string' && /^[A-Z0-9_]{1,40}$/.test(e.code)) out.errCode = e.code;
  }
  return out;
}

export async function translateSecretsManagerError(err: unknown, ctx: AwsErrorContext): Promise<TranslatedError> {
  if (err instanceof BrokerError) return { error: err, kind: 'other' };
  const where = whereText(ctx);
  if (ctx.signal?.aborted) {
    return {
      error: asBrokerError(ctx.signal.reason, 'TIMEOUT', `${ctx.label}: stopped before Secrets Manager answered`),
      kind: 'aborted',
    };
  }
  const name = errorName(err);
  const status = httpStatus(err);

  if (name === 'CredentialsProviderError' || name === 'TokenProviderError') {
    return {
      error: await credentialChainError(err, { label: ctx.label, profile: ctx.profile, env: ctx.env }),
      kind: 'credentials',
    };
  }
  if (name === 'AbortError') {
    return {
      error: new BrokerError('TIMEOUT', `${ctx.label}: stopped before Secrets Manager answered`),
      kind: 'aborted',
    };
  }
  if (isRegionMissing(err)) {
    return {
      error: new BrokerError('CONFIG_INVALID', `${ctx.label}: no AWS region`, {
        fix: `add ?region=… to the source, set region in the aws: block, set AWS_REGION for the daemon, or give the profile a region in ~/.aws/config${ctx.env.AWS_DEFAULT_REGION ? ' (AWS_DEFAULT_REGION is set, but the JavaScript SDK reads only AWS_REGION)' : ''}`,
      }),
      kind: 'other',
    };
  }

  const refused =
    namedRefusal(name, ctx, where) ??
    busyOrDown(err, name, status, ctx, where) ??
    credentialRejection(name, ctx) ??
    (status === 403
      ? service(name, 'PERMISSION_DENIED', `${ctx.label}: AWS refused access ${where} (${name}, HTTP 403)`)
      : undefined);
  if (refused) return refused;

  const errno = errnoCode(err);
  if (name === 'TimeoutError' || (errno !== undefined && NETWORK.has(errno))) {
    return {
      error: new BrokerError(
        'UNAVAILABLE',
        `${ctx.label}: could not reach Secrets Manager ${endpointText(ctx)} (${errno ?? name})`,
        { status: errno ?? name, fix: `check the network${ctx.endpoint ? ' and the endpoint setting' : ''}` },
      ),
      kind: 'network',
    };
  }
  if (status !== undefined) {
    return service(
      name,
      'SOURCE_ERROR',
      `${ctx.label}: Secrets Manager answered ${name} (HTTP ${status}) for secret "${ctx.secretId}" ${where}`,
    );
  }
  return {
    error: new BrokerError(
      'SOURCE_ERROR',
      `${ctx.label}: unexpected ${name} from the AWS SDK (details withheld; run the daemon with --log-level debug)`,
      { status: name },
    ),
    kind: 'other',
  };
}

function service(
  name: string,
  code: ConstructorParameters<typeof BrokerError>[0],
  message: string,
  fix?: string,
): TranslatedError {
  return { error: new BrokerError(code, message, { status: name, fix }), kind: 'service' };
}

/** Secrets Manager's own refusals of this secret, by the error's name. */
function namedRefusal(name: string, ctx: AwsErrorContext, where: string): TranslatedError | undefined {
  switch (true) {
    case name === 'ResourceNotFoundException': {
      const version =
        ctx.versionStage !== undefined
          ? ` has no version labelled ${ctx.versionStage}, or`
          : ctx.versionId !== undefined
            ? ` has no version ${ctx.versionId}, or`
            : '';
      return service(
        name,
        'NOT_FOUND',
        `${ctx.label}: secret "${ctx.secretId}"${version} does not exist ${where}`,
        'check the name, the region and the account the credentials belong to',
      );
    }
    case name === 'AccessDeniedException':
      return service(
        name,
        'PERMISSION_DENIED',
        `${ctx.label}: access denied reading secret "${ctx.secretId}" ${where}`,
        'the caller needs secretsmanager:GetSecretValue on it (and kms:Decrypt on its KMS key if that is a customer managed key)',
      );
    case name === 'DecryptionFailure':
      return service(
        name,
        'PERMISSION_DENIED',
        `${ctx.label}: Secrets Manager could not decrypt secret "${ctx.secretId}" ${where}`,
        "the caller needs kms:Decrypt on the secret's KMS key, and the key must be enabled",
      );
    case name === 'InvalidRequestException':
      return service(
        name,
        'SOURCE_ERROR',
        `${ctx.label}: Secrets Manager refused to read secret "${ctx.secretId}" ${where} (InvalidRequestException)`,
        `it is probably scheduled for deletion (restore it with: aws secretsmanager restore-secret --secret-id ${ctx.secretId})`,
      );
    case name === 'InvalidParameterException':
      return service(
        name,
        'CONFIG_INVALID',
        `${ctx.label}: Secrets Manager says a parameter is invalid (InvalidParameterException)`,
        'check the secret id, versionStage and versionId',
      );
  }
  return undefined;
}

/** Throttled, or a server error: the SDK has already retried both. */
function busyOrDown(
  err: unknown,
  name: string,
  status: number | undefined,
  ctx: AwsErrorContext,
  where: string,
): TranslatedError | undefined {
  switch (true) {
    case THROTTLING.has(name) || status === 429: {
      // The SDK has already retried (within the profile timeout); what the last answer asked for
      // is what keybroker's own retry waits for.
      const retryAfterMs = parseRetryAfter(responseHeader(err, 'retry-after'), Date.now());
      const wait = retryAfterMs !== undefined ? `; retrying in ${formatDuration(retryAfterMs)} as it asks` : '';
      return {
        error: new BrokerError(
          'RATE_LIMITED',
          `${ctx.label}: Secrets Manager is throttling requests ${where} (${name}) — it was retried; keybroker serves the cached value meanwhile${wait}`,
          {
            status: name,
            ...(retryAfterMs !== undefined && { retryAfterMs }),
          },
        ),
        kind: 'service',
      };
    }
    case SERVER.has(name) || (status !== undefined && status >= 500):
      return service(
        name,
        'UNAVAILABLE',
        `${ctx.label}: Secrets Manager had a server error ${where} (${name}${status ? `, HTTP ${status}` : ''}) and it was retried`,
        'try again later',
      );
  }
  return undefined;
}

/** The credentials were refused: kind 'credentials', so the adapter resolves them again and retries once. */
function credentialRejection(name: string, ctx: AwsErrorContext): TranslatedError | undefined {
  switch (true) {
    case UNKNOWN_KEY.has(name):
      return {
        ...service(
          name,
          'AUTH_REQUIRED',
          `${ctx.label}: AWS does not recognise the access key ${credentialSourceText(ctx)} (${name}): the credentials are wrong, deleted or for another partition`,
          `check them with: aws sts get-caller-identity${profileFlag(ctx)}`,
        ),
        kind: 'credentials',
      };
    case BAD_SIGNATURE.has(name):
      return {
        ...service(
          name,
          'AUTH_REQUIRED',
          `${ctx.label}: AWS rejected the request signature ${credentialSourceText(ctx)} (${name}): the secret access key does not match the access key id`,
          'fix the credentials',
        ),
        kind: 'credentials',
      };
    case EXPIRED.has(name):
      return {
        ...service(
          name,
          'AUTH_REQUIRED',
          name === 'RequestExpired'
            ? `${ctx.label}: AWS says the request expired (RequestExpired)`
            : `${ctx.label}: the AWS session credentials ${credentialSourceText(ctx)} have expired (${name})`,
          name === 'RequestExpired'
            ? "check this machine's clock"
            : `refresh them (for an SSO profile run: aws sso login${profileFlag(ctx)})`,
        ),
        kind: 'credentials',
      };
  }
  return undefined;
}

/**
 * A failure of the SDK's credential chain, as one actionable line: an SSO profile without a
 * valid login says which command to run; an empty chain says which sources were tried.
 */
export async function credentialChainError(
  err: unknown,
  ctx: { label: string; profile: string | undefined; env: NodeJS.ProcessEnv },
): Promise<BrokerError> {
  const profile = ctx.profile ?? nonEmpty(ctx.env.AWS_PROFILE) ?? 'default';
  const named = ctx.profile !== undefined || nonEmpty(ctx.env.AWS_PROFILE) !== undefined;
  const message = err instanceof Error ? err.message : '';
  const info = await inspectProfile(ctx.env, profile);
  const status = errorName(err);

  // The SDK's SSO providers say "run aws sso login" when the cached token is missing, invalid
  // or expired; an SSO portal refusal (revoked session) arrives wrapped without that hint.
  // Anything but a provider error (the SDK throws a TypeError for an sso_session it cannot
  // find) means the settings could not be used at all: logging in again would not help.
  const providerError = status === 'CredentialsProviderError' || status === 'TokenProviderError';
  const ssoConfigProblem =
    !providerError ||
    /configured with invalid SSO|could not be found in shared credentials|missing required property|Conflicting SSO/i.test(
      message,
    );
  const ssoLoginHint = /sso login|SSO session|SSO Token|Token is expired|UnauthorizedException/i.test(message);
  if ((info.sso || ssoLoginHint) && !ssoConfigProblem && message !== NO_CREDENTIALS) {
    return new BrokerError(
      'AUTH_REQUIRED',
      `${ctx.label}: AWS profile "${profile}" signs in with IAM Identity Center (SSO) and has no valid login`,
      { status, fix: `run: aws sso login --profile ${profile}` },
    );
  }
  if (info.sso && ssoConfigProblem) {
    return new BrokerError(
      'AUTH_REQUIRED',
      `${ctx.label}: the SSO settings of AWS profile "${profile}" in ${info.configFile} are incomplete: it needs sso_session (or sso_start_url and sso_region), sso_account_id and sso_role_name`,
      { status, fix: `run: aws configure sso --profile ${profile}` },
    );
  }
  if (message === NO_CREDENTIALS || (named && !info.inConfig && !info.inCredentials)) {
    const tried: string[] = [];
    if (named) tried.push(`environment keys (skipped: a profile is named)`);
    else
      tried.push(
        `environment keys (AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY ${ctx.env.AWS_ACCESS_KEY_ID ? 'incomplete' : 'not set'})`,
      );
    tried.push(
      info.inConfig || info.inCredentials
        ? `profile "${profile}" (found, but it has no usable credentials)`
        : `profile "${profile}" in ${info.configFile} and ${info.credentialsFile} (not found)`,
    );
    tried.push(`web identity (AWS_WEB_IDENTITY_TOKEN_FILE ${ctx.env.AWS_WEB_IDENTITY_TOKEN_FILE ? 'set' : 'not set'})`);
    if (ctx.env.AWS_CONTAINER_CREDENTIALS_RELATIVE_URI || ctx.env.AWS_CONTAINER_CREDENTIALS_FULL_URI)
      tried.push('the container credentials endpoint (no answer)');
    else if (ctx.env.AWS_EC2_METADATA_DISABLED && ctx.env.AWS_EC2_METADATA_DISABLED !== 'false')
      tried.push('EC2 instance metadata (disabled by AWS_EC2_METADATA_DISABLED)');
    else tried.push('EC2 instance metadata (no answer)');
    return new BrokerError('AUTH_REQUIRED', `${ctx.label}: no AWS credentials found (tried ${tried.join('; ')})`, {
      status,
      fix: 'run aws configure or aws sso login, or name a profile in the aws: block',
    });
  }
  return new BrokerError(
    'AUTH_REQUIRED',
    `${ctx.label}: could not get AWS credentials for profile "${profile}" (${status})`,
    { status, fix: `check them with: aws sts get-caller-identity --profile ${profile}` },
  );
}

interface ProfileInfo {
  configFile: string;
  credentialsFile: string;
  inConfig: boolean;
  inCredentials: boolean;
  /** The profile has sso_* settings (its credentials come from an SSO login). */
  sso: boolean;
}

const MAX_AWS_FILE_BYTES = 1024 * 1024;
const SSO_KEYS = new Set(['sso_session', 'sso_start_url', 'sso_account_id', 'sso_role_name', 'sso_region']);

/** Where the SDK looks for a profile and what it found, read the way the SDK reads them. */
async function inspectProfile(env: NodeJS.ProcessEnv, profile: string): Promise<ProfileInfo> {
  const home = env.HOME || os.homedir();
  const expand = (p: string): string => (p.startsWith('~/') ? path.join(home, p.slice(2)) : p);
  const configFile = expand(nonEmpty(env.AWS_CONFIG_FILE) ?? path.join(home, '.aws', 'config'));
  const credentialsFile = expand(nonEmpty(env.AWS_SHARED_CREDENTIALS_FILE) ?? path.join(home, '.aws', 'credentials'));
  const [config, credentials] = await Promise.all([readIni(configFile), readIni(credentialsFile)]);
  const fromConfig = config.get(`profile ${profile}`) ?? (profile === 'default' ? config.get('default') : undefined);
  const fromCredentials = credentials.get(profile);
  const keys = [...(fromConfig?.keys() ?? []), ...(fromCredentials?.keys() ?? [])];
  return {
    configFile,
    credentialsFile,
    inConfig: fromConfig !== undefined,
    inCredentials: fromCredentials !== undefined,
    sso: keys.some((k) => SSO_KEYS.has(k)),
  };
}

async function readIni(file: string): Promise<Map<string, Map<string, string>>> {
  const sections = new Map<string, Map<string, string>>();
  let text: string;
  try {
    const handle = await fs.open(file, 'r');
    try {
      const buf = Buffer.alloc(MAX_AWS_FILE_BYTES);
      const { bytesRead } = await handle.read(buf, 0, buf.length, 0);
      text = buf.subarray(0, bytesRead).toString('utf8');
      buf.fill(0);
    } finally {
      await handle.close();
    }
  } catch {
    return sections;
  }
  let current: Map<string, string> | undefined;
  for (const raw of text.split(/\r?\n/)) {
    const line = raw.trim();
    if (line.length === 0 || line.startsWith('#') || line.startsWith(';')) continue;
    const section = /^\[\s*([^\]]+?)\s*\]$/.exec(line);
    if (section) {
      const name = section[1]!.replace(/\s+/g, ' ');
      current = sections.get(name) ?? new Map<string, string>();
      sections.set(name, current);
      continue;
    }
    const eq = line.indexOf('=');
    // Only key names are kept: values may be secret access keys.
    if (current && eq > 0) current.set(line.slice(0, eq).trim().toLowerCase(), '');
  }
  return sections;
}

function whereText(ctx: AwsErrorContext): string {
  const parts = [`in ${ctx.region ?? 'the default region'}`];
  if (ctx.profile) parts.push(`with AWS profile "${ctx.profile}"`);
  if (ctx.endpoint) parts.push(`at ${safeHost(ctx.endpoint)}`);
  return parts.join(' ');
}

function endpointText(ctx: AwsErrorContext): string {
  if (ctx.endpoint) return `at ${safeHost(ctx.endpoint)}`;
  return ctx.region ? `at secretsmanager.${ctx.region}.amazonaws.com` : '';
}

function credentialSourceText(ctx: AwsErrorContext): string {
  const profile = ctx.profile ?? nonEmpty(ctx.env.AWS_PROFILE);
  if (profile) return `of AWS profile "${profile}"`;
  return ctx.env.AWS_ACCESS_KEY_ID ? 'from AWS_ACCESS_KEY_ID' : 'from the default credential chain';
}

function profileFlag(ctx: AwsErrorContext): string {
  const profile = ctx.profile ?? nonEmpty(ctx.env.AWS_PROFILE);
  return profile ? ` --profile ${profile}` : '';
}

/** host[:port] of an endpoint URL, never its path or user info. */
function safeHost(endpoint: string): string {
  try {
    return new URL(endpoint).host;
  } catch {
    return 'the configured endpoint';
  }
}

function isRegionMissing(err: unknown): boolean {
  return err instanceof Error && err.message === 'Region is missing';
}

/** The AWS error code or JS error name, if it looks like one (a hostile endpoint could send anything). */
function errorName(err: unknown): string {
  const name = err instanceof Error || (err && typeof err === 'object') ? (err as { name?: unknown }).name : undefined;
  return typeof name === 'string' && /^[A-Za-z][A-Za-z0-9_.]{0,63}$/.test(name) ? name : 'UnknownError';
}

function httpStatus(err: unknown): number | undefined {
  const status = (err as { $metadata?: { httpStatusCode?: unknown } } | null)?.$metadata?.httpStatusCode;
  return typeof status === 'number' ? status : undefined;
}

/** A header of the HTTP response an SDK error came from (smithy's $response), if there was one. */
function responseHeader(err: unknown, name: string): string | undefined {
  const headers = (err as { $response?: { headers?: unknown } } | null)?.$response?.headers;
  if (typeof headers !== 'object' || headers === null) return undefined;
  for (const [key, value] of Object.entries(headers))
    if (key.toLowerCase() === name && typeof value === 'string') return value;
  return undefined;
}

function errnoCode(err: unknown): string | undefined {
  const code = (err as { code?: unknown } | null)?.code;
  return typeof code === 'string' && /^[A-Z0-9_]{1,40}$/.test(code) ? code : undefined;
}

function nonEmpty(value: string | undefined): string | undefined {
  return value === undefined || value === '' ? undefined : value;
}
