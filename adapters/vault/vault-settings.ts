// The vault: settings block (top level and per profile), validated with zod, merged over Vault's
// own environment variables. Precedence: the profile's vault: block, then the top-level vault:
// block, then the daemon's environment (VAULT_ADDR, VAULT_TOKEN, ...), then Vault's defaults.
//
// Nothing secret is ever held here: a token or secret_id is named by where it lives (a file, an
// environment variable), and read at fetch time. That keeps the resolved settings safe to compare,
// fingerprint and print.
import path from 'node:path';
import { z } from 'zod';
import { resolveUserPath } from '../../src/adapter.js';
import { BrokerError } from '../../src/errors.js';

/** Vault's own default (the CLI's, too) when VAULT_ADDR is unset. */
export const DEFAULT_ADDRESS = 'https://127.0.0.1:8200';
export const DEFAULT_APPROLE_MOUNT = 'approle';
/** keybroker conventions, not Vault's: Vault itself has no environment variables for AppRole. */
export const DEFAULT_ROLE_ID_ENV = 'VAULT_ROLE_ID';
export const DEFAULT_SECRET_ID_ENV = 'VAULT_SECRET_ID';

const ENV_NAME = /^[A-Za-z_][A-Za-z0-9_]*$/;
const MOUNT_PATH = /^[A-Za-z0-9._-]+(\/[A-Za-z0-9._-]+)*$/;

const text = () =>
  z
    .string({ error: () => 'must be a string' })
    .trim()
    .min(1, 'must not be empty');
const envName = () => text().regex(ENV_NAME, 'must be an environment variable name');

const tokenAuthSchema = z.strictObject({
  method: z.literal('token'),
});

const appRoleSchema = z.strictObject({
  method: z.literal('approle'),
  mount: text().regex(MOUNT_PATH, 'must be an auth mount path such as approle or team/approle').optional(),
  roleId: text().optional(),
  roleIdFile: text().optional(),
  roleIdEnv: envName().optional(),
  secretIdFile: text().optional(),
  secretIdEnv: envName().optional(),
});

const authSchema = z.discriminatedUnion('method', [tokenAuthSchema, appRoleSchema], {
  error: () => 'needs method: token or method: approle',
});

const settingsSchema = z.strictObject({
  address: text().optional(),
  namespace: z
    .string({ error: () => 'must be a string' })
    .trim()
    .optional(),
  tokenFile: text().optional(),
  caCert: text().optional(),
  caPath: text().optional(),
  clientCert: text().optional(),
  clientKey: text().optional(),
  skipVerify: z.boolean({ error: () => 'must be true or false' }).optional(),
  tlsServerName: text().optional(),
  auth: authSchema.optional(),
});

export type VaultSettingsBlock = z.output<typeof settingsSchema>;

/** Where a credential comes from; the credential itself is read at fetch time. */
export type CredentialSource =
  { kind: 'literal'; value: string } | { kind: 'file'; path: string; label: string } | { kind: 'env'; name: string };

export type TokenSource = { kind: 'env'; name: 'VAULT_TOKEN' } | { kind: 'file'; path: string; label: string };

export type ResolvedAuth =
  | { method: 'token'; source: TokenSource }
  | { method: 'approle'; mount: string; roleId: CredentialSource; secretId: CredentialSource };

export interface ResolvedTls {
  caCert?: string;
  caPath?: string;
  clientCert?: string;
  clientKey?: string;
  skipVerify: boolean;
  serverName?: string;
}

export interface ResolvedVaultSettings {
  /** Base URL without a trailing slash, e.g. https://vault.example.com:8200 */
  address: string;
  namespace?: string;
  tls: ResolvedTls;
  auth: ResolvedAuth;
}

/**
 * Validate one settings block (top level or a profile's). Keys that would put a secret into the
 * config file are refused by name, with where the secret belongs instead.
 */
export function parseSettingsBlock(raw: unknown, where: string): VaultSettingsBlock {
  if (raw === undefined || raw === null) return {};
  if (typeof raw !== 'object' || Array.isArray(raw)) {
    throw new BrokerError('CONFIG_INVALID', `${where}: must be a mapping of Vault settings`);
  }
  const record = raw as Record<string, unknown>;
  if ('token' in record) {
    throw new BrokerError(
      'CONFIG_INVALID',
      `${where}.token: a Vault token does not belong in the config file — use VAULT_TOKEN, ~/.vault-token (vault login) or tokenFile: PATH`,
    );
  }
  const auth = record.auth;
  if (auth && typeof auth === 'object' && 'secretId' in auth) {
    throw new BrokerError(
      'CONFIG_INVALID',
      `${where}.auth.secretId: a secret_id does not belong in the config file — use secretIdFile: PATH or secretIdEnv: NAME`,
    );
  }
  const result = settingsSchema.safeParse(raw);
  if (result.success) return result.data;
  const problems = result.error.issues.map((issue) => {
    const at = [where, ...issue.path.map(String)].join('.');
    if (issue.code === 'unrecognized_keys') {
      return `${at}: unknown key${issue.keys.length > 1 ? 's' : ''} ${issue.keys.map((k) => `"${k}"`).join(', ')} — known keys: ${knownKeysAt(issue.path)}`;
    }
    return `${at}: ${issue.message.replace(/^Invalid input: /, '')}`;
  });
  throw new BrokerError('CONFIG_INVALID', problems.join('; '));
}

function knownKeysAt(issuePath: PropertyKey[]): string {
  if (issuePath.length === 0) return Object.keys(settingsSchema.shape).join(', ');
  return ['method', ...Object.keys(appRoleSchema.shape).filter((k) => k !== 'method')].join(', ');
}

/** A profile's block overrides the top-level one key by key; an `auth:` block replaces it whole. */
export function mergeSettings(base: VaultSettingsBlock, override: VaultSettingsBlock): VaultSettingsBlock {
  return { ...base, ...override };
}

/** Apply the environment fallbacks and Vault's defaults, and check what can be checked offline. */
export function resolveSettings(block: VaultSettingsBlock, env: NodeJS.ProcessEnv): ResolvedVaultSettings {
  const home = env.HOME;
  const fromEnv = (name: string): string | undefined => {
    const v = env[name]?.trim();
    return v ? v : undefined;
  };
  const pick = (key: keyof VaultSettingsBlock, envName: string): { value: string; from: string } | undefined => {
    const configured = block[key];
    if (typeof configured === 'string') return { value: configured, from: `vault.${key}` };
    const value = fromEnv(envName);
    return value === undefined ? undefined : { value, from: envName };
  };
  const filePath = (key: keyof VaultSettingsBlock, envName: string): string | undefined => {
    const p = pick(key, envName);
    return p ? resolveUserPath(p.value, home, p.from) : undefined;
  };

  const addr = pick('address', 'VAULT_ADDR');
  const address = normaliseAddress(addr?.value ?? DEFAULT_ADDRESS, addr?.from ?? 'the default address');

  const nsRaw = block.namespace ?? fromEnv('VAULT_NAMESPACE');
  const namespace = nsRaw?.replace(/^\/+|\/+$/g, '') || undefined;

  let skipVerify = block.skipVerify;
  if (skipVerify === undefined) {
    const raw = fromEnv('VAULT_SKIP_VERIFY');
    skipVerify = raw === undefined ? false : parseGoBool(raw, 'VAULT_SKIP_VERIFY');
  }
  const tls: ResolvedTls = { skipVerify };
  const caCert = filePath('caCert', 'VAULT_CACERT');
  const caPath = filePath('caPath', 'VAULT_CAPATH');
  const clientCert = filePath('clientCert', 'VAULT_CLIENT_CERT');
  const clientKey = filePath('clientKey', 'VAULT_CLIENT_KEY');
  const serverName = pick('tlsServerName', 'VAULT_TLS_SERVER_NAME')?.value;
  if (caCert) tls.caCert = caCert;
  if (caPath) tls.caPath = caPath;
  if (clientCert) tls.clientCert = clientCert;
  if (clientKey) tls.clientKey = clientKey;
  if (serverName) tls.serverName = serverName;
  if ((clientCert === undefined) !== (clientKey === undefined)) {
    throw new BrokerError(
      'CONFIG_INVALID',
      'a Vault client certificate needs both VAULT_CLIENT_CERT and VAULT_CLIENT_KEY (or vault.clientCert and vault.clientKey)',
    );
  }

  const resolved: ResolvedVaultSettings = { address, tls, auth: resolveAuth(block, env, home) };
  if (namespace) resolved.namespace = namespace;
  return resolved;
}

function resolveAuth(block: VaultSettingsBlock, env: NodeJS.ProcessEnv, home: string | undefined): ResolvedAuth {
  const auth = block.auth ?? { method: 'token' as const };
  if (auth.method === 'token') {
    if (block.tokenFile) {
      const p = resolveUserPath(block.tokenFile, home, 'vault.tokenFile');
      return { method: 'token', source: { kind: 'file', path: p, label: displayPath(p, home) } };
    }
    // Vault's CLI order: VAULT_TOKEN wins over the token helper's file.
    if (env.VAULT_TOKEN?.trim()) return { method: 'token', source: { kind: 'env', name: 'VAULT_TOKEN' } };
    if (!home) {
      throw new BrokerError(
        'CONFIG_INVALID',
        'no Vault token source: VAULT_TOKEN is unset and HOME is unset (so no ~/.vault-token) — set one, or vault.tokenFile',
      );
    }
    const p = path.join(home, '.vault-token');
    return { method: 'token', source: { kind: 'file', path: p, label: '~/.vault-token' } };
  }
  const credential = (
    literal: string | undefined,
    file: string | undefined,
    envVar: string | undefined,
    fallbackEnv: string,
    key: string,
  ): CredentialSource => {
    const given = [literal, file, envVar].filter((v) => v !== undefined).length;
    if (given > 1) {
      throw new BrokerError(
        'CONFIG_INVALID',
        `vault.auth: give the AppRole ${key} one way only (${key}, ${key}File or ${key}Env)`,
      );
    }
    if (literal !== undefined) return { kind: 'literal', value: literal };
    if (file !== undefined) {
      const p = resolveUserPath(file, home, `vault.auth.${key}File`);
      return { kind: 'file', path: p, label: displayPath(p, home) };
    }
    return { kind: 'env', name: envVar ?? fallbackEnv };
  };
  return {
    method: 'approle',
    mount: auth.mount ?? DEFAULT_APPROLE_MOUNT,
    roleId: credential(auth.roleId, auth.roleIdFile, auth.roleIdEnv, DEFAULT_ROLE_ID_ENV, 'roleId'),
    secretId: credential(undefined, auth.secretIdFile, auth.secretIdEnv, DEFAULT_SECRET_ID_ENV, 'secretId'),
  };
}

function normaliseAddress(raw: string, from: string): string {
  let url: URL;
  try {
    url = new URL(raw);
  } catch {
    throw new BrokerError('CONFIG_INVALID', `${from} is not a URL: write it as https://HOST:8200`);
  }
  if (url.protocol !== 'https:' && url.protocol !== 'http:') {
    throw new BrokerError(
      'CONFIG_INVALID',
      `${from} must be an http:// or https:// URL (${url.protocol} addresses are not supported)`,
    );
  }
  // Credentials in the URL would end up in every log line and error that names the address.
  if (url.username || url.password)
    throw new BrokerError('CONFIG_INVALID', `${from} must not carry a user name or password`);
  if (url.search || url.hash) throw new BrokerError('CONFIG_INVALID', `${from} must not have a ?query or #fragment`);
  return `${url.origin}${url.pathname.replace(/\/+$/, '')}`;
}

/** Go's strconv.ParseBool, which is what Vault applies to VAULT_SKIP_VERIFY. */
function parseGoBool(raw: string, name: string): boolean {
  if (['1', 't', 'T', 'TRUE', 'true', 'True'].includes(raw)) return true;
  if (['0', 'f', 'F', 'FALSE', 'false', 'False'].includes(raw)) return false;
  throw new BrokerError('CONFIG_INVALID', `${name} must be true or false (as Vault reads it: 1, t, true, 0, f, false)`);
}

export function displayPath(p: string, home: string | undefined): string {
  if (home && (p === home || p.startsWith(home.endsWith('/') ? home : `${home}/`)))
    return `~${p.slice(home.replace(/\/+$/, '').length)}`;
  return p;
}

/**
 * The files and variables that lead to this Vault's secrets: the token (or AppRole credentials)
 * and a TLS client key. A token source read from the environment still names ~/.vault-token, and
 * one read from a file still names VAULT_TOKEN: either, wherever it is set, opens Vault.
 */
export function vaultSecretLocations(
  settings: ResolvedVaultSettings,
  home: string | undefined,
): { files: string[]; env: string[] } {
  const files: string[] = [];
  const env: string[] = [];
  const add = (source: CredentialSource | TokenSource): void => {
    if (source.kind === 'file') files.push(source.path);
    else if (source.kind === 'env') env.push(source.name);
  };
  const { auth } = settings;
  if (auth.method === 'token') {
    add(auth.source);
    if (auth.source.kind === 'env' && home) files.push(path.join(home, '.vault-token'));
    if (auth.source.kind === 'file') env.push('VAULT_TOKEN');
  } else {
    add(auth.roleId);
    add(auth.secretId);
  }
  if (settings.tls.clientKey) files.push(settings.tls.clientKey);
  return { files, env };
}
