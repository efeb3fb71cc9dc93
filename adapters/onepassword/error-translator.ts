// The 1Password adapter's one error translator: SDK errors and per-reference resolveAll errors in,
// BrokerError out. Map, don't wrap: the SDK's own text is only *classified*, never copied — it can
// quote the token it rejected ("bad service account token, please rotate it: …").
//
// What the SDK 0.5.0 throws (dist/errors.js, dist/core.js):
//   RateLimitExceededError, DesktopSessionExpiredError, AuthExpiredError — the core's errors named
//   RateLimitExceeded, DesktopSessionExpired, AuthExpired;
//   a plain Error carrying the core's message for everything else (not found, network, bad token);
//   a plain Error "Native library is not available." when DesktopAuth cannot find the desktop app.
// resolveAll reports each reference's failure as data: { type: "itemNotFound" | … }.
import type { ResolveReferenceError } from '@1password/sdk';
import { BrokerError } from '../../src/errors.js';
import type { Sdk } from './client-factory.js';
import type { ReferenceParts } from './secret-reference.js';

/** The credential an error is about: its kind and a printable label (never the token). */
export interface CredentialContext {
  kind: 'service-account' | 'desktop';
  label: string;
  /** Desktop account name. */
  account?: string;
  /** Where a token lives, for "update it here" advice. */
  where?: string;
}

type SdkErrors = Pick<Sdk, 'RateLimitExceededError' | 'DesktopSessionExpiredError' | 'AuthExpiredError'>;

const SIGN_IN_DESKTOP = (account: string): string =>
  `unlock the 1Password app for account "${account}" and approve keybroker when it asks (Settings > Developer > "Integrate with other apps" must be on), then run: keybroker refresh --all`;

function signInAgain(cred: CredentialContext): string {
  return cred.kind === 'desktop'
    ? SIGN_IN_DESKTOP(cred.account ?? '')
    : `create a new service account token in 1Password, put it in ${cred.where ?? 'OP_SERVICE_ACCOUNT_TOKEN'}, and restart the daemon`;
}

/** Translate anything the SDK (or its client creation) threw. */
export function translateSdkError(err: unknown, sdk: SdkErrors, cred: CredentialContext): BrokerError {
  if (err instanceof BrokerError) return err;
  const name = errorName(err);
  if (err instanceof sdk.RateLimitExceededError) return rateLimited(cred, 'RateLimitExceeded');
  if (err instanceof sdk.DesktopSessionExpiredError) {
    return new BrokerError(
      'AUTH_REQUIRED',
      `the 1Password app session for ${cred.label} has ended (the app locked or signed out)`,
      { status: 'DesktopSessionExpired', fix: SIGN_IN_DESKTOP(cred.account ?? '') },
    );
  }
  if (err instanceof sdk.AuthExpiredError) {
    return new BrokerError(
      'AUTH_REQUIRED',
      `1Password no longer accepts the ${cred.label} (authorisation expired or revoked)`,
      { status: 'AuthExpired', fix: signInAgain(cred) },
    );
  }
  const text = messageOf(err);
  if (/rate limit exceeded|too many requests/i.test(text)) return rateLimited(cred, name);
  if (/DesktopSessionExpired/.test(text)) {
    return new BrokerError('AUTH_REQUIRED', `the 1Password app session for ${cred.label} has ended`, {
      status: 'DesktopSessionExpired',
      fix: SIGN_IN_DESKTOP(cred.account ?? ''),
    });
  }
  if (/native library is not available|desktop application not found|unsupported platform/i.test(text)) {
    return new BrokerError(
      'AUTH_REQUIRED',
      `cannot reach the 1Password desktop app for ${cred.label}: install it and sign in, turn on Settings > Developer > "Integrate with other apps", and run the daemon as your own user in your desktop session`,
      { status: name },
    );
  }
  if (/service account token|throttle token|one authentication method/i.test(text)) {
    return new BrokerError(
      'AUTH_REQUIRED',
      `1Password refused the ${cred.label}: it is not a valid service account token`,
      { status: name, fix: `copy it again from 1Password (or ${signInAgain(cred)})` },
    );
  }
  if (
    /not authenticated|failed to authenticate|session expired|account couldn't be found|unauthori[sz]ed|invalid sign-in/i.test(
      text,
    )
  ) {
    return new BrokerError('AUTH_REQUIRED', `1Password did not accept the ${cred.label}`, {
      status: name,
      fix: signInAgain(cred),
    });
  }
  if (/right permissions|forbidden/i.test(text)) {
    return new BrokerError(
      'PERMISSION_DENIED',
      `the ${cred.label} may not read this: grant it read access to the vault in 1Password`,
      { status: name },
    );
  }
  if (
    /no vault matched|no item matched|no section matched|cannot be found within the item|resource not found|not in an active state/i.test(
      text,
    )
  ) {
    return new BrokerError(
      'NOT_FOUND',
      `1Password found nothing at this reference (check the vault, item and field names the ${cred.label} can see)`,
      { status: name },
    );
  }
  if (/more than one (vault|item|field)/i.test(text)) {
    return new BrokerError(
      'SOURCE_ERROR',
      'the reference matches more than one vault, item or field in 1Password: use its ID instead of its name',
      { status: name },
    );
  }
  if (
    /request timeout|timed out|retriesexhausted|error sending request|connection|dns|network|service unavailable|bad gateway|gateway timeout|server error|econn|enotfound|eai_again/i.test(
      text,
    )
  ) {
    return new BrokerError(
      'UNAVAILABLE',
      `cannot reach 1Password right now (network or service trouble); serving the cached value if there is one and retrying with backoff`,
      { status: name },
    );
  }
  return new BrokerError(
    'SOURCE_ERROR',
    `1Password failed with ${name} (details withheld: SDK messages can quote credentials; run the daemon with --log-level debug for the error kind)`,
    { status: name },
  );
}

function rateLimited(cred: CredentialContext, status: string): BrokerError {
  const limits =
    cred.kind === 'service-account'
      ? ' (service accounts may read 1,000 times an hour on Teams/Families, 10,000 on Business)'
      : '';
  return new BrokerError(
    'RATE_LIMITED',
    `1Password rate limit reached for the ${cred.label}${limits}; serving the cached value if there is one and retrying with backoff`,
    { status, transient: true },
  );
}

/** Translate one reference's failure from resolveAll. */
export function translateReferenceError(
  error: ResolveReferenceError | { type: string },
  parts: ReferenceParts,
  description: string,
  cred: CredentialContext,
): BrokerError {
  const type = typeof error.type === 'string' && SAFE_NAME.test(error.type) ? error.type : 'unknown';
  const status = type;
  const inVault = `in vault "${parts.vault}"`;
  const field = `field "${parts.field}"${parts.section ? ` in section "${parts.section}"` : ''}`;
  const useId = 'use its ID instead of its name in the reference';
  switch (type) {
    case 'vaultNotFound':
      return new BrokerError('NOT_FOUND', `${description}: the ${cred.label} sees no vault "${parts.vault}"`, {
        status,
        fix: 'check the name (a service account sees only the vaults it was granted)',
      });
    case 'itemNotFound':
      return new BrokerError('NOT_FOUND', `${description}: no item "${parts.item}" ${inVault}`, { status });
    case 'noMatchingSections':
      return new BrokerError(
        'NOT_FOUND',
        `${description}: item "${parts.item}" ${inVault} has no section "${parts.section ?? ''}"`,
        { status },
      );
    case 'fieldNotFound':
      return new BrokerError('NOT_FOUND', `${description}: item "${parts.item}" ${inVault} has no ${field}`, {
        status,
      });
    case 'tooManyVaults':
      return new BrokerError(
        'SOURCE_ERROR',
        `${description}: more than one vault is named "${parts.vault}": ${useId}`,
        { status },
      );
    case 'tooManyItems':
      return new BrokerError(
        'SOURCE_ERROR',
        `${description}: more than one item ${inVault} is named "${parts.item}": ${useId}`,
        { status },
      );
    case 'tooManyMatchingFields':
      return new BrokerError(
        'SOURCE_ERROR',
        `${description}: item "${parts.item}" has more than one ${field}: ${useId}`,
        { status },
      );
    case 'parsing':
      return new BrokerError('CONFIG_INVALID', `${description}: 1Password could not parse the reference`, { status });
    case 'incompatibleTOTPQueryParameterField':
    case 'unableToGenerateTotpCode':
      return new BrokerError(
        'INVALID_VALUE',
        `${description}: ?attribute=otp needs a one-time password field, and 1Password could not make a code from ${field}`,
        { status },
      );
    case 'sSHKeyMetadataNotFound':
    case 'incompatibleSshKeyQueryParameterField':
    case 'unableToParsePrivateKey':
    case 'unableToFormatPrivateKeyToOpenSsh':
      return new BrokerError(
        'INVALID_VALUE',
        `${description}: ?ssh-format=openssh needs an SSH key field, and ${field} could not be converted`,
        { status },
      );
    case 'unsupportedFileFormat':
      return new BrokerError('INVALID_VALUE', `${description}: ${field} is a file 1Password cannot return as text`, {
        status,
      });
    default:
      return new BrokerError('SOURCE_ERROR', `${description}: 1Password could not resolve the reference (${type})`, {
        status,
      });
  }
}

/** An identifier-like name is safe to print; anything else might be data. */
const SAFE_NAME = /^[A-Za-z][A-Za-z0-9_]{0,63}$/;

/** An error's class name, for logs and status; never its message. */
export function errorName(err: unknown): string {
  if (err instanceof Error) {
    const name = err.constructor?.name && err.constructor.name !== 'Object' ? err.constructor.name : err.name;
    return SAFE_NAME.test(name) ? name : 'Error';
  }
  return typeof err;
}

function messageOf(err: unknown): string {
  if (typeof err === 'string') return err;
  if (err instanceof Error) return typeof err.message === 'string' ? err.message : '';
  return '';
}
