// Which 1Password credential a profile uses, decided offline when the config loads, and the
// service account token read (from the environment or a private file) only when a fetch needs it.
import { readPrivateFile } from '../../src/adapter.js';
import { BrokerError } from '../../src/errors.js';
import { SecretValue } from '../../src/secret.js';
import type { CredentialSettings } from './settings.js';

export const TOKEN_ENV = 'OP_SERVICE_ACCOUNT_TOKEN';
export const ACCOUNT_ENV = 'OP_ACCOUNT';
/** Service account tokens are about a kilobyte; anything far larger is not one. */
const MAX_TOKEN_BYTES = 16 * 1024;

export type CredentialSpec =
  | { kind: 'service-account'; from: 'env'; label: string }
  | { kind: 'service-account'; from: 'file'; path: string; written: string; label: string }
  | { kind: 'desktop'; account: string; label: string }
  | { kind: 'none'; wanted: CredentialSettings['auth'] };

/** Explicit config beats the environment; within each, a token beats a desktop account. */
export function resolveCredential(settings: CredentialSettings, env: NodeJS.ProcessEnv): CredentialSpec {
  const envToken = (env[TOKEN_ENV] ?? '').trim() !== '';
  const envAccount = (env[ACCOUNT_ENV] ?? '').trim();
  const fromFile = (): CredentialSpec => ({
    kind: 'service-account',
    from: 'file',
    path: settings.tokenFile!,
    written: settings.tokenFileWritten ?? settings.tokenFile!,
    label: `service account (token file ${settings.tokenFileWritten ?? settings.tokenFile})`,
  });
  const fromEnv = (): CredentialSpec => ({
    kind: 'service-account',
    from: 'env',
    label: `service account (${TOKEN_ENV})`,
  });
  const desktop = (account: string): CredentialSpec => ({
    kind: 'desktop',
    account,
    label: `desktop app account "${account}"`,
  });
  switch (settings.auth) {
    case 'service-account':
      if (settings.tokenFile) return fromFile();
      if (envToken) return fromEnv();
      return { kind: 'none', wanted: 'service-account' };
    case 'desktop':
      if (settings.account) return desktop(settings.account);
      if (envAccount) return desktop(envAccount);
      return { kind: 'none', wanted: 'desktop' };
    default:
      if (settings.tokenFile) return fromFile();
      if (settings.account) return desktop(settings.account);
      if (envToken) return fromEnv();
      if (envAccount) return desktop(envAccount);
      return { kind: 'none', wanted: 'auto' };
  }
}

/** What is missing and how to authenticate, for a profile that has no credential. */
export function noCredentialError(spec: Extract<CredentialSpec, { kind: 'none' }>): { message: string; fix: string } {
  const serviceAccount = `set ${TOKEN_ENV} in the daemon's environment (or tokenFile: in the onepassword: block) to a service account token`;
  const desktop = `set ${ACCOUNT_ENV} (or account: in the onepassword: block) to your account name as the 1Password app shows it, and turn on Settings > Developer > "Integrate with other apps" in the app`;
  const tail =
    '; a daemon started by systemd or launchd sees only the variables its unit sets, so restart it after changing them';
  switch (spec.wanted) {
    case 'service-account':
      return { message: 'no 1Password service account token (auth: service-account)', fix: `${serviceAccount}${tail}` };
    case 'desktop':
      return { message: 'no 1Password account for the desktop app (auth: desktop)', fix: `${desktop}${tail}` };
    default:
      return { message: 'no 1Password credentials', fix: `${serviceAccount}, or ${desktop}${tail}` };
  }
}

/** The token, wrapped at once. Errors name where it came from, never what it holds. */
export async function readServiceAccountToken(
  spec: Extract<CredentialSpec, { kind: 'service-account' }>,
  env: NodeJS.ProcessEnv,
): Promise<SecretValue> {
  if (spec.from === 'env') {
    const raw = env[TOKEN_ENV] ?? '';
    const token = raw.trim();
    if (token === '')
      throw new BrokerError(
        'AUTH_REQUIRED',
        `${TOKEN_ENV} is empty: set it to a service account token and restart the daemon`,
      );
    checkTokenShape(Buffer.from(token.slice(0, 4)), spec.label);
    return SecretValue.fromString(token);
  }
  let bytes: Buffer | undefined;
  try {
    bytes = await readPrivateFile(spec.path, {
      label: `token file ${spec.written}`,
      maxBytes: MAX_TOKEN_BYTES,
      invalid: 'AUTH_REQUIRED',
    });
    let start = 0;
    let end = bytes.length;
    while (start < end && isSpace(bytes[start]!)) start++;
    while (end > start && isSpace(bytes[end - 1]!)) end--;
    if (end === start)
      throw new BrokerError(
        'AUTH_REQUIRED',
        `token file ${spec.written} is empty: write the service account token into it`,
      );
    const token = bytes.subarray(start, end);
    checkTokenShape(token.subarray(0, 4), spec.label);
    return SecretValue.fromBytes(token);
  } catch (err) {
    if (err instanceof BrokerError) throw err;
    throw tokenFileError(err, spec.written);
  } finally {
    bytes?.fill(0);
  }
}

/** Only the prefix is looked at: enough to tell a pasted password or a path from a token. */
function checkTokenShape(prefix: Buffer, label: string): void {
  if (prefix.toString('latin1') !== 'ops_') {
    throw new BrokerError(
      'AUTH_REQUIRED',
      `the ${label} does not hold a service account token (those start with "ops_"): copy the token again from 1Password`,
    );
  }
}

function isSpace(b: number): boolean {
  return b === 0x20 || b === 0x09 || b === 0x0a || b === 0x0d;
}

function tokenFileError(err: unknown, written: string): BrokerError {
  const code = (err as NodeJS.ErrnoException | undefined)?.code;
  switch (code) {
    case 'ENOENT':
      return new BrokerError('AUTH_REQUIRED', `token file ${written} does not exist`, {
        fix: `write your service account token there: (umask 077; printf '%s\\n' 'ops_…' > ${written})`,
      });
    case 'EACCES':
    case 'EPERM':
      return new BrokerError('PERMISSION_DENIED', `cannot read token file ${written}: permission denied`);
    case 'EISDIR':
      return new BrokerError(
        'AUTH_REQUIRED',
        `token file ${written} is a directory: put the service account token in a file`,
      );
    default:
      return new BrokerError('SOURCE_ERROR', `cannot read token file ${written}${code ? ` (${code})` : ''}`);
  }
}
