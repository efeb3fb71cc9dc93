// A fake HashiCorp Vault HTTP server, written from Vault's API documentation so the real client
// (node-vault over axios) is exercised against the wire protocol, not against a mock:
//
//   GET  /v1/<kv1-mount>/<path>                 KV v1 read: { data: {...}, lease_duration } where the
//                                               lease is the secret's `ttl` key or the mount default
//   GET  /v1/<kv2-mount>/data/<path>[?version=N] KV v2 read: { data: { data, metadata: { version, ... } } };
//                                               a deleted/destroyed version: 404 with its metadata
//   GET  /v1/sys/internal/ui/mounts/<path>      the `vault kv` preflight: { data: { path, type,
//                                               options: { version } } }; no mount, or nothing granted
//                                               under it: 403 "preflight capability check returned 403…"
//   GET  /v1/auth/token/lookup-self             { data: { id, ttl, renewable, policies, ... } }
//   POST /v1/auth/token/renew-self              { auth: { client_token, lease_duration, renewable } },
//                                               capped at the token's max TTL
//   POST /v1/auth/<approle-mount>/login         { auth: { client_token, accessor, lease_duration, renewable } };
//                                               wrong role_id/secret_id: 400 "invalid role or secret ID"
//
// Errors use Vault's envelope { "errors": [...] }: 403 "permission denied" for a missing, unknown
// or expired X-Vault-Token (or Authorization: Bearer) and for a path the token's policy does not
// grant; 404 {"errors":[]} for a missing secret; 404 "no handler for route" for no mount; 503
// "Vault is sealed" when sealed; 429 for a rate limit quota. X-Vault-Namespace selects the
// namespace whose mounts a request sees. Tests control it: write and rotate secrets, grant
// policies, seal, rate-limit, fail or stall requests, and read back every request it received.
import { execFileSync } from 'node:child_process';
import { randomBytes, randomUUID } from 'node:crypto';
import fs from 'node:fs';
import http from 'node:http';
import https from 'node:https';
import type { AddressInfo } from 'node:net';
import path from 'node:path';

export interface RecordedRequest {
  method: string;
  /** The decoded path after /v1/, e.g. "secret/data/anthropic". */
  path: string;
  query: Record<string, string>;
  namespace: string | undefined;
  token: string | undefined;
  /** The X-Vault-Request header the CLI (and keybroker) send. */
  vaultRequest: boolean;
  status: number;
  /** The fake's clock when the request arrived. */
  at: number;
}

export interface TokenOptions {
  /** Policy paths granting read: exact, or a prefix ending in "*" (e.g. "secret/data/*"). */
  read?: string[];
  root?: boolean;
  /** 0 = never expires. */
  ttlSec?: number;
  maxTtlSec?: number;
  renewable?: boolean;
  namespace?: string;
}

export interface AppRoleOptions {
  mount?: string;
  roleId: string;
  secretId: string;
  read?: string[];
  tokenTtlSec?: number;
  tokenMaxTtlSec?: number;
  renewable?: boolean;
  namespace?: string;
}

export interface FakeVaultOptions {
  /** Serve HTTPS; with clientCa, require a client certificate signed by it (mutual TLS). */
  tls?: { key: string | Buffer; cert: string | Buffer; clientCa?: string | Buffer };
  /** The fake's clock for token expiry (ms); share a ManualClock with the adapter under test. */
  now?: () => number;
}

interface MountEntry {
  path: string;
  version: 1 | 2;
  namespace: string;
  defaultLeaseSec: number;
  accessor: string;
}

interface KvVersion {
  data: Record<string, unknown>;
  createdTime: string;
  deletionTime: string;
  destroyed: boolean;
}

interface TokenEntry {
  id: string;
  accessor: string;
  namespace: string;
  read: string[];
  root: boolean;
  ttlSec: number;
  issuedAt: number;
  expiresAt: number;
  maxExpiresAt: number;
  renewable: boolean;
  path: string;
}

interface Scripted {
  remaining: number;
  status: number;
  errors: string[];
  pathPrefix: string;
}

/** Vault's default max lease TTL (768h), which KV v1 reports as lease_duration without a `ttl` key. */
export const KV1_DEFAULT_LEASE_SEC = 2_764_800;
const MAX_BODY_BYTES = 1024 * 1024;

export class FakeVault {
  readonly url: string;
  readonly requests: RecordedRequest[] = [];
  readonly #server: http.Server;
  readonly #now: () => number;
  readonly #mounts: MountEntry[] = [];
  readonly #secrets = new Map<string, KvVersion[] | Record<string, unknown>>();
  readonly #tokens = new Map<string, TokenEntry>();
  readonly #roles: Array<Required<Omit<AppRoleOptions, 'tokenMaxTtlSec'>> & { tokenMaxTtlSec: number }> = [];
  #sealed = false;
  #rateLimited = 0;
  #retryAfter: string | undefined;
  #scripted: Scripted[] = [];
  #stalled: string[] = [];
  #preflight: 'on' | 'missing' = 'on';

  private constructor(server: http.Server, url: string, now: () => number) {
    this.#server = server;
    this.url = url;
    this.#now = now;
  }

  static async start(options: FakeVaultOptions = {}): Promise<FakeVault> {
    const holder: { fake?: FakeVault } = {};
    const handler = (req: http.IncomingMessage, res: http.ServerResponse): void => {
      holder.fake!.#handle(req, res).catch(() => {
        if (!res.headersSent) res.writeHead(500).end();
      });
    };
    const tls = options.tls;
    const server = tls
      ? https.createServer(
          {
            key: tls.key,
            cert: tls.cert,
            ...(tls.clientCa ? { requestCert: true, rejectUnauthorized: true, ca: tls.clientCa } : {}),
          },
          handler,
        )
      : http.createServer(handler);
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    const { port } = server.address() as AddressInfo;
    holder.fake = new FakeVault(
      server,
      `${options.tls ? 'https' : 'http'}://127.0.0.1:${port}`,
      options.now ?? Date.now,
    );
    return holder.fake;
  }

  async close(): Promise<void> {
    this.#server.closeAllConnections();
    await new Promise<void>((resolve) => this.#server.close(() => resolve()));
  }

  // ---- controls -------------------------------------------------------------------------------

  /** Mount a KV engine, as `vault secrets enable -version=N -path=PATH kv`. */
  enableKv(mountPath: string, version: 1 | 2, options: { namespace?: string; defaultLeaseSec?: number } = {}): void {
    this.#mounts.push({
      path: `${trimSlashes(mountPath)}/`,
      version,
      namespace: trimSlashes(options.namespace ?? ''),
      defaultLeaseSec: options.defaultLeaseSec ?? KV1_DEFAULT_LEASE_SEC,
      accessor: `kv_${randomBytes(4).toString('hex')}`,
    });
  }

  /** Write a secret at its full path (mount included); on KV v2 this adds a version. Returns it. */
  put(fullPath: string, data: Record<string, unknown>, namespace = ''): number {
    const { mount, key } = this.#mountFor(trimSlashes(fullPath), trimSlashes(namespace), true)!;
    const k = storeKey(mount, key);
    if (mount.version === 1) {
      this.#secrets.set(k, { ...data });
      return 0;
    }
    const versions = (this.#secrets.get(k) as KvVersion[] | undefined) ?? [];
    versions.push({
      data: { ...data },
      createdTime: new Date(this.#now()).toISOString(),
      deletionTime: '',
      destroyed: false,
    });
    this.#secrets.set(k, versions);
    return versions.length;
  }

  /** KV v2 soft delete (vault kv delete -versions=N). */
  deleteVersion(fullPath: string, version: number, namespace = ''): void {
    this.#version(fullPath, version, namespace).deletionTime = new Date(this.#now()).toISOString();
  }

  /** KV v2 destroy (vault kv destroy -versions=N). */
  destroyVersion(fullPath: string, version: number, namespace = ''): void {
    const v = this.#version(fullPath, version, namespace);
    v.destroyed = true;
    v.data = {};
  }

  createToken(options: TokenOptions = {}): string {
    return this.#issue({ ...options, path: 'auth/token/create' }).id;
  }

  revokeToken(id: string): void {
    this.#tokens.delete(id);
  }

  /** Every token the fake has issued and not revoked (for "never in a log" checks). */
  issuedTokens(): string[] {
    return [...this.#tokens.keys()];
  }

  createAppRole(options: AppRoleOptions): void {
    this.#roles.push({
      mount: trimSlashes(options.mount ?? 'approle'),
      roleId: options.roleId,
      secretId: options.secretId,
      read: options.read ?? [],
      tokenTtlSec: options.tokenTtlSec ?? 3600,
      tokenMaxTtlSec: options.tokenMaxTtlSec ?? 0,
      renewable: options.renewable ?? true,
      namespace: trimSlashes(options.namespace ?? ''),
    });
  }

  seal(): void {
    this.#sealed = true;
  }

  unseal(): void {
    this.#sealed = false;
  }

  /**
   * The next `count` requests get 429, as a rate limit quota answers, with a Retry-After header
   * (seconds, as Vault sends it) when `retryAfter` is given.
   */
  rateLimit(count: number, retryAfter?: string): void {
    this.#rateLimited = count;
    this.#retryAfter = retryAfter;
  }

  /** The next `count` requests whose path starts with `pathPrefix` get this status and errors. */
  failNext(count: number, status: number, errors: string[], pathPrefix = ''): void {
    this.#scripted.push({ remaining: count, status, errors, pathPrefix });
  }

  clearFailures(): void {
    this.#scripted = [];
  }

  /** Requests whose path starts with `pathPrefix` are never answered (until close). */
  stall(pathPrefix: string): void {
    this.#stalled.push(pathPrefix);
  }

  /** "missing": answer the preflight with 404, as Vault versions before the endpoint existed do. */
  setPreflight(mode: 'on' | 'missing'): void {
    this.#preflight = mode;
  }

  count(filter: { method?: string; path?: string; pathPrefix?: string } = {}): number {
    return this.requests.filter(
      (r) =>
        (filter.method === undefined || r.method === filter.method) &&
        (filter.path === undefined || r.path === filter.path) &&
        (filter.pathPrefix === undefined || r.path.startsWith(filter.pathPrefix)),
    ).length;
  }

  clearRequests(): void {
    this.requests.length = 0;
  }

  // ---- the server ----------------------------------------------------------------------------

  async #handle(req: http.IncomingMessage, res: http.ServerResponse): Promise<void> {
    const url = new URL(req.url ?? '/', 'http://fake');
    const method = req.method ?? 'GET';
    const nsHeader = header(req, 'x-vault-namespace');
    const namespace = trimSlashes(nsHeader ?? '');
    const bearer = header(req, 'authorization')?.match(/^Bearer (.+)$/)?.[1];
    const token = header(req, 'x-vault-token') ?? bearer;
    const record: RecordedRequest = {
      method,
      path: '',
      query: Object.fromEntries(url.searchParams),
      namespace: nsHeader,
      token,
      vaultRequest: header(req, 'x-vault-request') === 'true',
      status: 0,
      at: this.#now(),
    };
    this.requests.push(record);
    const send = (status: number, body?: unknown, extra: Record<string, string> = {}): void => {
      record.status = status;
      const text = body === undefined ? '' : JSON.stringify(body);
      res.writeHead(status, {
        'Content-Type': 'application/json',
        'Content-Length': Buffer.byteLength(text),
        ...extra,
      });
      res.end(text);
    };
    const errors = (status: number, list: string[], extra?: Record<string, string>): void =>
      send(status, { errors: list }, extra);

    if (!url.pathname.startsWith('/v1/')) return errors(404, []);
    let p: string;
    try {
      p = decodeURIComponent(url.pathname.slice('/v1/'.length));
    } catch {
      return errors(400, ['invalid path encoding']);
    }
    record.path = p;
    const body = await readJson(req);

    if (this.#stalled.some((prefix) => p.startsWith(prefix))) return; // never answered
    if (this.#sealed) return errors(503, ['Vault is sealed']);
    const scripted = this.#scripted.find((s) => s.remaining > 0 && p.startsWith(s.pathPrefix));
    if (scripted) {
      scripted.remaining--;
      return errors(scripted.status, scripted.errors);
    }
    if (this.#rateLimited > 0) {
      this.#rateLimited--;
      return errors(
        429,
        [`request path "${p}": rate limit quota exceeded`],
        this.#retryAfter === undefined ? {} : { 'Retry-After': this.#retryAfter },
      );
    }

    const login = /^auth\/(.+)\/login$/.exec(p);
    if (login && (method === 'POST' || method === 'PUT')) return this.#login(login[1]!, namespace, body, send, errors);

    const entry = token ? this.#tokens.get(token) : undefined;
    if (!entry || !this.#valid(entry, namespace)) return errors(403, ['permission denied']);

    if (p === 'auth/token/lookup-self' && method === 'GET')
      return send(200, envelope({ data: this.#lookupData(entry) }));
    if (p === 'auth/token/renew-self' && (method === 'POST' || method === 'PUT'))
      return this.#renew(entry, send, errors);

    const preflight = /^sys\/internal\/ui\/mounts\/(.+)$/.exec(p);
    if (preflight && method === 'GET') {
      if (this.#preflight === 'missing') return errors(404, []);
      const target = `${trimSlashes(preflight[1]!)}/`;
      const found = this.#mountFor(trimSlashes(preflight[1]!), namespace, false);
      if (!found || !hasMountAccess(entry, found.mount.path)) {
        return errors(403, [
          `preflight capability check returned 403, please ensure client's policies grant access to path "${target}"`,
        ]);
      }
      const m = found.mount;
      return send(
        200,
        envelope({
          data: {
            accessor: m.accessor,
            config: { default_lease_ttl: 0, force_no_cache: false, max_lease_ttl: 0 },
            description: 'key/value secret storage',
            external_entropy_access: false,
            local: false,
            options: m.version === 2 ? { version: '2' } : null,
            path: m.path,
            seal_wrap: false,
            type: 'kv',
            uuid: randomUUID(),
          },
        }),
      );
    }

    const found = this.#mountFor(p, namespace, false);
    if (!found) return errors(404, [`no handler for route "${p}". route entry not found.`]);
    if (method !== 'GET') return errors(405, ['unsupported operation']);
    if (!canRead(entry, p)) return errors(403, ['1 error occurred:\n\t* permission denied\n\n']);
    const { mount, key } = found;
    if (mount.version === 1) {
      const data = this.#secrets.get(storeKey(mount, key)) as Record<string, unknown> | undefined;
      if (!data) return errors(404, []);
      return send(200, envelope({ data, lease_duration: kv1Lease(data, mount.defaultLeaseSec) }));
    }
    if (!key.startsWith('data/')) return errors(404, []);
    const versions = this.#secrets.get(storeKey(mount, key.slice('data/'.length))) as KvVersion[] | undefined;
    const wanted = record.query.version ? Number(record.query.version) : (versions?.length ?? 0);
    const version = versions?.[wanted - 1];
    if (!version) return errors(404, []);
    const metadata = {
      created_time: version.createdTime,
      custom_metadata: null,
      deletion_time: version.deletionTime,
      destroyed: version.destroyed,
      version: wanted,
    };
    if (version.deletionTime || version.destroyed) return send(404, envelope({ data: { data: null, metadata } }));
    return send(200, envelope({ data: { data: version.data, metadata } }));
  }

  #login(
    mountPath: string,
    namespace: string,
    body: Record<string, unknown>,
    send: (s: number, b?: unknown) => void,
    errors: (s: number, l: string[]) => void,
  ): void {
    const roles = this.#roles.filter((r) => r.mount === mountPath && r.namespace === namespace);
    if (roles.length === 0)
      return errors(404, [`no handler for route "auth/${mountPath}/login". route entry not found.`]);
    if (typeof body.role_id !== 'string' || body.role_id === '') return errors(400, ['missing role_id']);
    const role = roles.find((r) => r.roleId === body.role_id && r.secretId === body.secret_id);
    if (!role) return errors(400, ['invalid role or secret ID']);
    const entry = this.#issue({
      read: role.read,
      ttlSec: role.tokenTtlSec,
      maxTtlSec: role.tokenMaxTtlSec,
      renewable: role.renewable,
      namespace: role.namespace,
      path: `auth/${role.mount}/login`,
    });
    send(
      200,
      envelope({
        auth: {
          renewable: entry.renewable,
          lease_duration: entry.ttlSec,
          metadata: { role_name: 'keybroker' },
          token_policies: ['default', 'keybroker'],
          policies: ['default', 'keybroker'],
          accessor: entry.accessor,
          client_token: entry.id,
        },
      }),
    );
  }

  #renew(entry: TokenEntry, send: (s: number, b?: unknown) => void, errors: (s: number, l: string[]) => void): void {
    if (!entry.renewable || entry.ttlSec === 0) return errors(400, ['lease is not renewable']);
    const now = this.#now();
    entry.expiresAt = Math.min(now + entry.ttlSec * 1000, entry.maxExpiresAt);
    const lease = Math.max(0, Math.floor((entry.expiresAt - now) / 1000));
    const capped = entry.expiresAt === entry.maxExpiresAt && lease < entry.ttlSec;
    send(
      200,
      envelope({
        warnings: capped
          ? [`TTL of "${entry.ttlSec}s" exceeded the effective max_ttl of "${lease}s"; TTL value is capped accordingly`]
          : null,
        auth: {
          client_token: entry.id,
          accessor: entry.accessor,
          policies: ['default', 'keybroker'],
          token_policies: ['default', 'keybroker'],
          metadata: null,
          lease_duration: lease,
          renewable: entry.renewable,
          entity_id: '',
          token_type: 'service',
          orphan: true,
        },
      }),
    );
  }

  #lookupData(entry: TokenEntry): Record<string, unknown> {
    const now = this.#now();
    return {
      accessor: entry.accessor,
      creation_time: Math.floor(entry.issuedAt / 1000),
      creation_ttl: entry.ttlSec,
      display_name: 'token',
      entity_id: '',
      expire_time: entry.expiresAt === Infinity ? null : new Date(entry.expiresAt).toISOString(),
      explicit_max_ttl: 0,
      id: entry.id,
      issue_time: new Date(entry.issuedAt).toISOString(),
      meta: null,
      num_uses: 0,
      orphan: true,
      path: entry.path,
      policies: entry.root ? ['root'] : ['default', 'keybroker'],
      renewable: entry.renewable,
      ttl: entry.expiresAt === Infinity ? 0 : Math.max(0, Math.floor((entry.expiresAt - now) / 1000)),
      type: 'service',
    };
  }

  #issue(options: TokenOptions & { path: string }): TokenEntry {
    const now = this.#now();
    const ttlSec = options.ttlSec ?? 0;
    const maxTtlSec = options.maxTtlSec ?? 0;
    const entry: TokenEntry = {
      // The shape of a Vault 1.10+ service token.
      id: `hvs.${randomBytes(18).toString('base64url')}`,
      accessor: randomBytes(12).toString('base64url'),
      namespace: trimSlashes(options.namespace ?? ''),
      read: options.read ?? [],
      root: options.root ?? false,
      ttlSec,
      issuedAt: now,
      expiresAt: ttlSec > 0 ? now + ttlSec * 1000 : Infinity,
      maxExpiresAt: maxTtlSec > 0 ? now + maxTtlSec * 1000 : Infinity,
      renewable: options.renewable ?? ttlSec > 0,
      path: options.path,
    };
    this.#tokens.set(entry.id, entry);
    return entry;
  }

  #valid(entry: TokenEntry, namespace: string): boolean {
    if (this.#now() >= entry.expiresAt) return false;
    // A token works in its own namespace and the ones below it.
    return entry.namespace === '' || namespace === entry.namespace || namespace.startsWith(`${entry.namespace}/`);
  }

  #mountFor(fullPath: string, namespace: string, mustExist: boolean): { mount: MountEntry; key: string } | undefined {
    const candidates = this.#mounts
      .filter((m) => m.namespace === namespace && `${fullPath}/`.startsWith(m.path))
      .sort((a, b) => b.path.length - a.path.length);
    const mount = candidates[0];
    if (!mount) {
      if (mustExist) throw new Error(`fake vault: no KV mount for ${fullPath} in namespace "${namespace}"`);
      return undefined;
    }
    return { mount, key: fullPath.slice(mount.path.length) };
  }

  #version(fullPath: string, version: number, namespace: string): KvVersion {
    const { mount, key } = this.#mountFor(trimSlashes(fullPath), trimSlashes(namespace), true)!;
    const v = (this.#secrets.get(storeKey(mount, key)) as KvVersion[] | undefined)?.[version - 1];
    if (mount.version !== 2 || !v) throw new Error(`fake vault: no KV v2 version ${version} at ${fullPath}`);
    return v;
  }
}

function envelope(fields: Record<string, unknown>): Record<string, unknown> {
  return {
    request_id: randomUUID(),
    lease_id: '',
    renewable: false,
    lease_duration: 0,
    data: null,
    wrap_info: null,
    warnings: null,
    auth: null,
    ...fields,
  };
}

function storeKey(mount: MountEntry, key: string): string {
  return `${mount.namespace}\0${mount.path}${key}`;
}

function canRead(entry: TokenEntry, p: string): boolean {
  return (
    entry.root ||
    entry.read.some((pattern) => (pattern.endsWith('*') ? p.startsWith(pattern.slice(0, -1)) : p === pattern))
  );
}

/** sys/internal/ui/mounts answers only when the token's policy grants something under the mount. */
function hasMountAccess(entry: TokenEntry, mountPath: string): boolean {
  if (entry.root) return true;
  return entry.read.some((pattern) => {
    const base = pattern.endsWith('*') ? pattern.slice(0, -1) : pattern;
    return base.startsWith(mountPath) || (pattern.endsWith('*') && mountPath.startsWith(base));
  });
}

/** KV v1's lease: the secret's `ttl` key (seconds or a Go-style duration), else the mount default. */
function kv1Lease(data: Record<string, unknown>, fallback: number): number {
  const ttl = data.ttl;
  if (typeof ttl === 'number') return ttl;
  if (typeof ttl === 'string') {
    const m = /^(\d+)(s|m|h)?$/.exec(ttl);
    if (m) return Number(m[1]) * (m[2] === 'h' ? 3600 : m[2] === 'm' ? 60 : 1);
  }
  return fallback;
}

function header(req: http.IncomingMessage, name: string): string | undefined {
  const v = req.headers[name];
  return Array.isArray(v) ? v[0] : v;
}

function trimSlashes(s: string): string {
  return s.replace(/^\/+|\/+$/g, '');
}

async function readJson(req: http.IncomingMessage): Promise<Record<string, unknown>> {
  const chunks: Buffer[] = [];
  let size = 0;
  for await (const chunk of req as AsyncIterable<Buffer>) {
    size += chunk.length;
    if (size > MAX_BODY_BYTES) break;
    chunks.push(chunk);
  }
  if (chunks.length === 0) return {};
  try {
    const parsed: unknown = JSON.parse(Buffer.concat(chunks).toString('utf8'));
    return parsed && typeof parsed === 'object' ? (parsed as Record<string, unknown>) : {};
  } catch {
    return {};
  }
}

// ---- test utilities that go with the fake (test/helpers/vault.ts starts one with them) ---------------

export interface TestCertificate {
  dir: string;
  keyFile: string;
  certFile: string;
  key: Buffer;
  cert: Buffer;
}

/**
 * A self-signed certificate for 127.0.0.1 and localhost, made at test time with openssl (the CLI
 * is the one portable way to mint an X.509 certificate without a library).
 */
export function makeTestCertificate(dir: string, name = 'vault'): TestCertificate {
  const keyFile = path.join(dir, `${name}-key.pem`);
  const certFile = path.join(dir, `${name}-cert.pem`);
  execFileSync(
    'openssl',
    [
      'req',
      '-x509',
      '-newkey',
      'rsa:2048',
      '-nodes',
      '-keyout',
      keyFile,
      '-out',
      certFile,
      '-days',
      '2',
      '-subj',
      '/CN=localhost',
      '-addext',
      'subjectAltName=IP:127.0.0.1,DNS:localhost',
    ],
    { stdio: 'ignore' },
  );
  return { dir, keyFile, certFile, key: fs.readFileSync(keyFile), cert: fs.readFileSync(certFile) };
}
