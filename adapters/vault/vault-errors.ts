// The one translator from what node-vault and axios throw to BrokerError. Map, don't wrap: an
// axios error carries the request config, whose headers hold X-Vault-Token, and node-vault's
// ApiResponseError carries the response body. Only the HTTP status, the network error code and a
// scrubbed first line of Vault's own `errors` array make it into a message.
import { formatDuration } from '../../src/adapter.js';
import { BrokerError } from '../../src/errors.js';
import { redactText } from '../../src/secret.js';

export type VaultOperation = 'read' | 'preflight' | 'login' | 'renew' | 'lookup';

export interface VaultErrorContext {
  operation: VaultOperation;
  /** mount/path as the user wrote it (no value), or the auth path for login. */
  target: string;
  /** The Vault address, safe to print (credentials in it are refused at config time). */
  address: string;
  version?: number;
  /** How the token was supplied ("VAULT_TOKEN", "~/.vault-token"), for auth advice. */
  tokenSource?: string;
  /** The response's Retry-After, parsed (a rate limit quota's 429 sends one). */
  retryAfterMs?: number;
}

/** Node and OpenSSL codes for a certificate the client would not trust. */
const CERT_CODES = new Set([
  'DEPTH_ZERO_SELF_SIGNED_CERT',
  'SELF_SIGNED_CERT_IN_CHAIN',
  'UNABLE_TO_VERIFY_LEAF_SIGNATURE',
  'UNABLE_TO_GET_ISSUER_CERT',
  'UNABLE_TO_GET_ISSUER_CERT_LOCALLY',
  'CERT_UNTRUSTED',
  'CERT_REJECTED',
  'CERT_SIGNATURE_FAILURE',
  'CERT_CHAIN_TOO_LONG',
  'INVALID_CA',
  'UNABLE_TO_DECRYPT_CERT_SIGNATURE',
]);
const CERT_TIME_CODES = new Set(['CERT_HAS_EXPIRED', 'CERT_NOT_YET_VALID']);
const NAME_CODES = new Set(['ERR_TLS_CERT_ALTNAME_INVALID', 'HOSTNAME_MISMATCH']);
const UNREACHABLE_CODES = new Set(['EHOSTUNREACH', 'ENETUNREACH', 'EHOSTDOWN', 'ENETDOWN', 'EADDRNOTAVAIL']);
const RESET_CODES = new Set([
  'ECONNRESET',
  'EPIPE',
  'ERR_SOCKET_CONNECTION_TIMEOUT',
  'ERR_BAD_RESPONSE',
  'ERR_STREAM_PREMATURE_CLOSE',
]);

interface ResponseShape {
  statusCode: number;
  body: unknown;
}

export function translateVaultError(err: unknown, ctx: VaultErrorContext): BrokerError {
  if (err instanceof BrokerError) return err;
  const response = responseOf(err);
  if (response) return fromStatus(response, ctx);
  return fromNetwork(errorCode(err), err instanceof Error ? err.name : typeof err, ctx);
}

function fromStatus({ statusCode: status, body }: ResponseShape, ctx: VaultErrorContext): BrokerError {
  const said = vaultMessage(body);
  const quoted = said ? `: ${said}` : '';
  const what = describeTarget(ctx);
  const at = `Vault at ${ctx.address}`;
  const opts = (transient?: boolean) => (transient === undefined ? { status } : { status, transient });

  if (ctx.operation === 'login') {
    if (status === 400 || status === 401 || status === 403) {
      return new BrokerError(
        'AUTH_REQUIRED',
        `AppRole login at ${ctx.target} was refused (${status}${quoted}): check the role_id and secret_id`,
        opts(),
      );
    }
    if (status === 404) {
      return new BrokerError(
        'AUTH_REQUIRED',
        `no AppRole auth method at ${ctx.target} on ${at} (404): check vault.auth.mount and the namespace`,
        opts(),
      );
    }
  }
  if (
    (ctx.operation === 'renew' || ctx.operation === 'lookup') &&
    (status === 400 || status === 401 || status === 403)
  ) {
    return new BrokerError(
      'AUTH_REQUIRED',
      `the Vault token${ctx.tokenSource ? ` from ${ctx.tokenSource}` : ''} is invalid or expired (${status}${quoted})`,
      opts(),
    );
  }
  switch (status) {
    case 401:
      return new BrokerError('AUTH_REQUIRED', `${at} wants a valid token for ${what} (401${quoted})`, opts());
    case 403:
      if (ctx.operation === 'preflight') {
        return new BrokerError(
          'PERMISSION_DENIED',
          `permission denied checking the KV engine version of ${ctx.target}: check the token's policy (no mount there, or nothing under it granted), or name the version with ?kv=2 or ?kv=1`,
          opts(),
        );
      }
      return new BrokerError('PERMISSION_DENIED', `permission denied ${what}: check the token's policy`, opts());
    case 404:
      return new BrokerError('NOT_FOUND', notFoundMessage(body, ctx), opts());
    case 412:
      return new BrokerError(
        'UNAVAILABLE',
        `${at} could not serve ${what} yet (412, eventual consistency): retrying`,
        opts(true),
      );
    case 429: {
      const wait =
        ctx.retryAfterMs !== undefined
          ? `retrying in ${formatDuration(ctx.retryAfterMs)} as it asks`
          : 'retrying with backoff';
      return new BrokerError('RATE_LIMITED', `${at} is rate limiting requests (429) ${what}: ${wait}`, {
        ...opts(true),
        ...(ctx.retryAfterMs !== undefined && { retryAfterMs: ctx.retryAfterMs }),
      });
    }
    case 503:
      return new BrokerError(
        'UNAVAILABLE',
        `${at} is sealed or unavailable (503${quoted}): serving the cached value if there is one; retrying`,
        opts(true),
      );
    default:
      if (status >= 500)
        return new BrokerError('UNAVAILABLE', `${at} failed ${what} (${status}${quoted}): retrying`, opts(true));
      return new BrokerError('SOURCE_ERROR', `${at} refused ${what} (${status}${quoted})`, opts(false));
  }
}

function notFoundMessage(body: unknown, ctx: VaultErrorContext): string {
  if (ctx.operation === 'preflight') return `no Vault mount found for ${ctx.target} at Vault ${ctx.address} (404)`;
  const version = ctx.version !== undefined ? ` version ${ctx.version}` : '';
  // KV v2 answers a deleted or destroyed version with 404 and that version's metadata.
  const metadata = (
    body as { data?: { metadata?: { deletion_time?: unknown; destroyed?: unknown; version?: unknown } } } | undefined
  )?.data?.metadata;
  if (metadata && typeof metadata === 'object') {
    const v = typeof metadata.version === 'number' ? ` version ${metadata.version}` : version;
    if (metadata.destroyed === true)
      return `${ctx.target}${v} was destroyed in Vault (404): pin another ?version= or write a new one`;
    if (typeof metadata.deletion_time === 'string' && metadata.deletion_time !== '') {
      return `${ctx.target}${v} was deleted in Vault (404): undelete it (vault kv undelete) or write a new version`;
    }
  }
  return `no secret at ${ctx.target}${version} in Vault at ${ctx.address} (404)${ctx.version !== undefined ? ': check the pinned ?version=' : ''}`;
}

function fromNetwork(code: string | undefined, name: string, ctx: VaultErrorContext): BrokerError {
  const at = ctx.address;
  const what = describeTarget(ctx);
  const status = code ?? name;
  if (code === 'ECONNREFUSED') {
    return new BrokerError(
      'UNAVAILABLE',
      `cannot connect to Vault at ${at} (connection refused): is Vault running, and is VAULT_ADDR right?`,
      { status },
    );
  }
  if (code === 'ENOTFOUND' || code === 'EAI_AGAIN') {
    return new BrokerError(
      'UNAVAILABLE',
      `cannot resolve the host of Vault at ${at} (${code}): check VAULT_ADDR and the network`,
      { status },
    );
  }
  if (code === 'ETIMEDOUT' || code === 'ECONNABORTED') {
    return new BrokerError('TIMEOUT', `Vault at ${at} did not answer ${what} in time (${code})`, { status });
  }
  if (code && UNREACHABLE_CODES.has(code)) {
    return new BrokerError('UNAVAILABLE', `Vault at ${at} is unreachable (${code}): check the network or VPN`, {
      status,
    });
  }
  if (code && RESET_CODES.has(code)) {
    return new BrokerError('UNAVAILABLE', `the connection to Vault at ${at} broke off ${what} (${code}): retrying`, {
      status,
    });
  }
  if (code && CERT_CODES.has(code)) {
    return new BrokerError(
      'SOURCE_ERROR',
      `TLS: cannot verify the certificate of Vault at ${at} (${code}): set VAULT_CACERT (or vault.caCert) to the CA that signed it`,
      { status, transient: false },
    );
  }
  if (code && CERT_TIME_CODES.has(code)) {
    return new BrokerError(
      'SOURCE_ERROR',
      `TLS: the certificate of Vault at ${at} is not valid now (${code}): check the server's certificate and this machine's clock`,
      { status, transient: false },
    );
  }
  if (code && NAME_CODES.has(code)) {
    return new BrokerError(
      'SOURCE_ERROR',
      `TLS: the certificate of Vault at ${at} does not name that host (${code}): fix VAULT_ADDR, or set VAULT_TLS_SERVER_NAME to a name the certificate carries`,
      { status, transient: false },
    );
  }
  if (code === 'EPROTO' || code?.startsWith('ERR_SSL_') || code?.startsWith('ERR_TLS_')) {
    return new BrokerError(
      'SOURCE_ERROR',
      `TLS handshake with Vault at ${at} failed (${code}): is it an https:// server? (a plain-HTTP dev server needs http:// in VAULT_ADDR)`,
      { status, transient: false },
    );
  }
  return new BrokerError('SOURCE_ERROR', `${what} from Vault at ${at} failed (${status})`, { status });
}

function describeTarget(ctx: VaultErrorContext): string {
  const version = ctx.version !== undefined ? ` version ${ctx.version}` : '';
  switch (ctx.operation) {
    case 'read':
      return `reading ${ctx.target}${version}`;
    case 'preflight':
      return `checking the KV engine of ${ctx.target}`;
    case 'login':
      return `logging in at ${ctx.target}`;
    case 'renew':
      return 'renewing the token';
    case 'lookup':
      return 'looking up the token';
  }
}

function responseOf(err: unknown): ResponseShape | undefined {
  if (typeof err !== 'object' || err === null || !('response' in err)) return undefined;
  const response = (err as { response?: unknown }).response;
  if (typeof response !== 'object' || response === null) return undefined;
  const statusCode = (response as { statusCode?: unknown }).statusCode;
  if (typeof statusCode !== 'number') return undefined;
  return { statusCode, body: (response as { body?: unknown }).body };
}

function errorCode(err: unknown): string | undefined {
  if (typeof err !== 'object' || err === null) return undefined;
  const code = (err as { code?: unknown }).code;
  if (typeof code === 'string' && code.length > 0) return code;
  // axios reports some socket failures by message only.
  const message = (err as { message?: unknown }).message;
  if (message === 'socket hang up') return 'ECONNRESET';
  return undefined;
}

// eslint-disable-next-line no-control-regex -- stripping control characters is the point
const CONTROL = /[\u0000-\u001f\u007f]+/g;

/**
 * The first entry of Vault's `errors` array, fit for one line: Vault's multierror wrapper
 * ("1 error occurred:\n\t* permission denied\n\n") unwrapped, anything token-shaped removed,
 * and cut short. Vault's messages name paths and causes; the scrub is for the ones we have not
 * seen.
 */
export function vaultMessage(body: unknown): string {
  if (typeof body !== 'object' || body === null) return '';
  const errors = (body as { errors?: unknown }).errors;
  if (!Array.isArray(errors)) return '';
  const first = errors.find((e): e is string => typeof e === 'string' && e.trim().length > 0);
  if (!first) return '';
  const unwrapped = first
    .replace(/^\s*\d+ errors? occurred:\s*/, '')
    .split(/\n\s*\*\s*/)
    .map((s) => s.trim())
    .filter(Boolean)
    .join('; ');
  const clean = redactText(unwrapped.replace(CONTROL, ' ')).trim();
  return clean.length > 160 ? `${clean.slice(0, 160)}…` : clean;
}
