// vault:// — a field of a HashiCorp Vault KV secret (KV v1 or v2):
//
//   vault:                            # optional; every key falls back to Vault's own env vars
//     address: https://vault.example.com:8200
//     namespace: team-a
//   profiles:
//     work:
//       source: vault://secret/anthropic#api_key       # KV v2 at secret/, field api_key
//     pinned:
//       source: vault://secret/anthropic?version=3#api_key
//     legacy:
//       source: vault://kv1/anthropic?kv=1#api_key     # skip the KV version preflight
//       vault:                                         # per-profile overrides
//         auth: { method: approle, roleIdFile: ~/.vault/role-id, secretIdFile: ~/.vault/secret-id }
//
// Options (vault: block, top level or per profile): address, namespace, tokenFile, caCert,
// caPath, clientCert, clientKey, skipVerify, tlsServerName, auth ({ method: token } or
// { method: approle, mount, roleId | roleIdFile | roleIdEnv, secretIdFile | secretIdEnv }).
// Environment fallbacks (the daemon's environment): VAULT_ADDR, VAULT_TOKEN, ~/.vault-token,
// VAULT_NAMESPACE, VAULT_CACERT, VAULT_CAPATH, VAULT_CLIENT_CERT, VAULT_CLIENT_KEY,
// VAULT_SKIP_VERIFY, VAULT_TLS_SERVER_NAME; for AppRole, VAULT_ROLE_ID and VAULT_SECRET_ID.
//
// Client library: node-vault over axios (see vault-client.ts for what it does and what is added).
// The KV engine version is detected the way `vault kv get` does it (vault-kv.ts); a secret's
// lease_duration caps the profile's TTL.
import {
  systemClock,
  type Adapter,
  type AdapterInit,
  type Clock,
  type FetchContext,
  type FetchResult,
  type Logger,
} from '../../src/adapter.js';
import { asBrokerError, BrokerError } from '../../src/errors.js';
import type { SecretValue } from '../../src/secret.js';
import { createTokenProvider, type TokenProvider } from './vault-auth.js';
import { VaultClient } from './vault-client.js';
import type { VaultErrorContext, VaultOperation } from './vault-errors.js';
import {
  extractSecret,
  kvLabel,
  kvReadPath,
  locateByOverride,
  locateFromPreflight,
  preflightPath,
  selectField,
  type KvLocation,
} from './vault-kv.js';
import {
  mergeSettings,
  parseSettingsBlock,
  resolveSettings,
  vaultSecretLocations,
  type ResolvedVaultSettings,
} from './vault-settings.js';
import { parseVaultUri, type VaultUri } from './vault-uri.js';

export interface VaultRef extends VaultUri {
  settings: ResolvedVaultSettings;
  /** Profiles with equal resolved settings share one connection (client, token, renewals). */
  connectionKey: string;
}

export interface VaultAdapterOptions {
  /** Drives token renewal and re-login; tests pass a manual clock. */
  clock?: Clock;
  random?: () => number;
}

export function createAdapter(init: AdapterInit): Adapter<VaultRef> {
  return createVaultAdapter(init);
}

export function createVaultAdapter(init: AdapterInit, options: VaultAdapterOptions = {}): Adapter<VaultRef> {
  // Validated now (offline) so a bad vault: block is reported against every profile using it.
  const base = parseSettingsBlock(init.settings, 'vault');
  const clock = options.clock ?? systemClock;
  const random = options.random ?? Math.random;
  const connections = new Map<string, VaultConnection>();
  let closed = false;

  const connectionFor = (ref: VaultRef): VaultConnection => {
    if (closed) throw new BrokerError('SHUTTING_DOWN', 'the vault source was closed');
    let conn = connections.get(ref.connectionKey);
    if (!conn) {
      conn = new VaultConnection(ref.settings, { env: init.env, log: init.log, clock, random });
      connections.set(ref.connectionKey, conn);
    }
    return conn;
  };

  return {
    kind: 'vault',
    parse(uri, { overrides, profile }) {
      const parsed = parseVaultUri(uri);
      const block = mergeSettings(base, parseSettingsBlock(overrides, `profiles.${profile}.vault`));
      const settings = resolveSettings(block, init.env);
      return { ...parsed, settings, connectionKey: JSON.stringify(settings) };
    },
    describe: (ref) => ref.label,
    secretLocations: (ref) => vaultSecretLocations(ref.settings, init.env.HOME),
    async fetch(ref, ctx) {
      return connectionFor(ref).fetchSecret(ref, ctx);
    },
    status() {
      return [...connections.values()].map((c) => c.status());
    },
    async close() {
      closed = true;
      for (const conn of connections.values()) conn.close();
      connections.clear();
    },
  };
}

interface ConnectionDeps {
  env: NodeJS.ProcessEnv;
  log: Logger;
  clock: Clock;
  random: () => number;
}

/** One Vault address, namespace, TLS setup and identity: its client, token and preflight answers. */
class VaultConnection {
  readonly #settings: ResolvedVaultSettings;
  readonly #client: VaultClient;
  readonly #auth: TokenProvider;
  /** KV locations by full path; dropped when a read at that location fails. */
  readonly #locations = new Map<string, KvLocation>();

  constructor(settings: ResolvedVaultSettings, deps: ConnectionDeps) {
    this.#settings = settings;
    this.#client = new VaultClient(settings, deps.log);
    this.#auth = createTokenProvider(settings.auth, {
      client: this.#client,
      env: deps.env,
      log: deps.log,
      clock: deps.clock,
      random: deps.random,
    });
    if (settings.address.startsWith('http://') && !isLoopback(settings.address)) {
      deps.log.warn(
        { address: settings.address },
        'vault: VAULT_ADDR is plain http:// to another host: the token crosses the network unencrypted',
      );
    }
  }

  async fetchSecret(ref: VaultRef, ctx: FetchContext): Promise<FetchResult> {
    const fullPath = ref.segments.join('/');
    const errCtx = (operation: VaultOperation, target: string): VaultErrorContext => {
      const c: VaultErrorContext = {
        operation,
        target,
        address: this.#settings.address,
        tokenSource: this.#auth.sourceLabel,
      };
      if (operation === 'read' && ref.version !== undefined) c.version = ref.version;
      return c;
    };
    if (ctx.signal.aborted)
      throw asBrokerError(ctx.signal.reason, 'TIMEOUT', `${ref.label} was stopped before it started`);

    let loc = ref.kv !== undefined ? locateByOverride(ref.segments, ref.kv) : this.#locations.get(fullPath);
    if (!loc) {
      loc = await this.#withToken(ctx, errCtx('preflight', fullPath), (token, c) =>
        this.#client.read(preflightPath(ref.segments), token, ctx.signal, c),
      ).then(
        (body) => locateFromPreflight(body, ref.segments),
        (err: unknown) => {
          // As the CLI: a Vault too old to have the preflight endpoint has only KV v1.
          if (err instanceof BrokerError && err.code === 'NOT_FOUND' && err.status === 404)
            return locateByOverride(ref.segments, 1);
          throw err;
        },
      );
      this.#locations.set(fullPath, loc);
      ctx.log.debug({ mount: loc.mount.join('/'), kv: loc.version }, 'vault: KV engine detected');
    }
    const label = kvLabel(loc);
    if (loc.rest.length === 0) {
      throw new BrokerError(
        'CONFIG_INVALID',
        `${ref.label} names the mount ${loc.mount.join('/')} itself: add the secret's path after it`,
      );
    }
    if (loc.version === 1 && ref.version !== undefined) {
      throw new BrokerError(
        'CONFIG_INVALID',
        `${ref.label}: ?version= needs KV v2, but ${loc.mount.join('/')} is a KV v1 engine (which keeps no versions)`,
      );
    }
    try {
      const body = await this.#withToken(ctx, errCtx('read', label), (token, c) =>
        this.#client.read(kvReadPath(loc, ref.version), token, ctx.signal, c),
      );
      const secret = extractSecret(body, loc, label);
      const value = selectField(secret, ref.field, loc, label);
      const result: FetchResult = { value };
      // A KV lease is advisory (the mount's default TTL or the secret's `ttl` key): the value keeps
      // working after it, so it is a refresh hint (ttlMs), not an expiry, and stale-if-error
      // still applies. A secret engine with real leases would set expiresAt.
      if (secret.leaseSeconds > 0) result.ttlMs = secret.leaseSeconds * 1000;
      if (secret.version !== undefined) result.version = String(secret.version);
      return result;
    } catch (err) {
      // The engine may have been remounted or upgraded (vault kv enable-versioning): detect again.
      if (ref.kv === undefined && !(err instanceof BrokerError && err.transient)) this.#locations.delete(fullPath);
      throw err;
    }
  }

  status(): string {
    const ns = this.#settings.namespace ? ` namespace ${this.#settings.namespace}` : '';
    return `${this.#settings.address}${ns}: ${this.#auth.status()}`;
  }

  close(): void {
    this.#auth.close();
    this.#client.close();
  }

  /**
   * Run a call with the current token. Vault answers 403 both for a bad token and for a path the
   * policy does not grant, so a 403 is followed by one lookup-self: a token Vault still knows
   * means the policy is what is missing (PERMISSION_DENIED, no new login); a token it refuses is
   * replaced when it can be (the token file changed; AppRole logs in again) and the call is
   * retried once, or else reported as invalid or expired (AUTH_REQUIRED).
   */
  async #withToken<T>(
    ctx: FetchContext,
    errCtx: VaultErrorContext,
    call: (token: SecretValue, c: VaultErrorContext) => Promise<T>,
  ): Promise<T> {
    const token = await this.#auth.token(ctx.signal);
    try {
      return await call(token, errCtx);
    } catch (err) {
      if (!isForbidden(err) || (await this.#tokenAccepted(token, ctx))) throw err;
      if (await this.#auth.rejected(token, ctx.signal)) return call(await this.#auth.token(ctx.signal), errCtx);
      const source = this.#auth.sourceLabel;
      const fix =
        source === 'VAULT_TOKEN'
          ? 'set a valid VAULT_TOKEN for the daemon'
          : source.startsWith('AppRole')
            ? 'check the AppRole'
            : 'run vault login';
      throw new BrokerError(
        'AUTH_REQUIRED',
        `the Vault token from ${source} is invalid or expired (Vault at ${this.#settings.address} refused it)`,
        { status: 403, fix },
      );
    }
  }

  /** False only when Vault says the token itself is no good; any other answer leaves the 403 as it was. */
  async #tokenAccepted(token: SecretValue, ctx: FetchContext): Promise<boolean> {
    try {
      await this.#client.lookupSelf(token, ctx.signal, {
        operation: 'lookup',
        target: 'auth/token/lookup-self',
        address: this.#settings.address,
        tokenSource: this.#auth.sourceLabel,
      });
      return true;
    } catch (err) {
      return !(err instanceof BrokerError && err.code === 'AUTH_REQUIRED');
    }
  }
}

function isForbidden(err: unknown): err is BrokerError {
  return err instanceof BrokerError && err.code === 'PERMISSION_DENIED' && err.status === 403;
}

function isLoopback(address: string): boolean {
  const host = new URL(address).hostname;
  return host === 'localhost' || host === '[::1]' || host.startsWith('127.');
}
