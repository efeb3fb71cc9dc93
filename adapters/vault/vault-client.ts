// The Vault HTTP client: node-vault (loaded with import() on first use) with keybroker's rules
// around it.
//
// Why node-vault: it is maintained, already a dependency, and does the Vault-specific parts we
// would otherwise rewrite: the /v1 URL scheme, X-Vault-Token and X-Vault-Namespace headers, the
// `errors` array turned into an error with the status code, and the AppRole login and token
// renew-self/lookup-self endpoints. What it does not do, and this file adds:
// - cancellation: it forwards no AbortSignal to axios, so each call gets its own http(s) agent,
//   destroyed when the signal aborts (the socket closes at once) or the call ends;
// - a response size cap: the same agents count the bytes each socket receives;
// - Retry-After: node-vault keeps only a response's status and body, so the same agents note the
//   Retry-After header of each response (a rate limit quota's 429 sends one);
// - the daemon's environment, not process.env: node-vault falls back to process.env for
//   VAULT_ADDR, VAULT_TOKEN, VAULT_NAMESPACE, VAULT_PREFIX and VAULT_SKIP_VERIFY; every one of
//   those is set explicitly here;
// - no token held by the client: node-vault stores the token from a login on the client and
//   sends it on every later request; here the token is passed per request, so a login never
//   carries a stale token;
// - no debug output: node-vault's `debug` would print request bodies (an AppRole secret_id)
//   when DEBUG=node-vault is set.
// Known limit: axios, under node-vault, reads HTTP(S)_PROXY / NO_PROXY from process.env.
import fs from 'node:fs/promises';
import http from 'node:http';
import https from 'node:https';
import path from 'node:path';
import type { Duplex } from 'node:stream';
import { abortable, parseRetryAfter, type Logger } from '../../src/adapter.js';
import { asBrokerError, BrokerError } from '../../src/errors.js';
import type { SecretValue } from '../../src/secret.js';
import { translateVaultError, type VaultErrorContext } from './vault-errors.js';
import type { ResolvedTls, ResolvedVaultSettings } from './vault-settings.js';

/** A KV secret is a few kilobytes; a response bigger than this is not one. */
export const MAX_RESPONSE_BYTES = 1024 * 1024;
/** A backstop for calls whose signal has no deadline of its own. */
const REQUEST_TIMEOUT_MS = 30_000;
const MAX_PEM_BYTES = 1024 * 1024;
const MAX_CA_FILES = 500;

/** The parts of node-vault's client this file uses (its bundled types omit some of them). */
interface NodeVaultClient {
  read(path: string, requestOptions?: Record<string, unknown>): Promise<unknown>;
  approleLogin(args: Record<string, unknown>): Promise<unknown>;
  tokenRenewSelf(args: Record<string, unknown>): Promise<unknown>;
  tokenLookupSelf(args: Record<string, unknown>): Promise<unknown>;
  namespace: string | undefined;
  pathPrefix: string;
}

export interface TlsMaterial {
  ca?: string[];
  cert?: Buffer;
  key?: Buffer;
  rejectUnauthorized: boolean;
  servername?: string;
}

const importNodeVault = () => import('node-vault');
let nodeVaultModule: ReturnType<typeof importNodeVault> | undefined;

export class VaultClient {
  readonly settings: ResolvedVaultSettings;
  readonly #log: Logger;
  #client: Promise<NodeVaultClient> | undefined;
  #tls: Promise<TlsMaterial> | undefined;
  readonly #closing = new AbortController();

  constructor(settings: ResolvedVaultSettings, log: Logger) {
    this.settings = settings;
    this.#log = log;
  }

  /** GET /v1/<path>; `path` is already percent-encoded and may carry a query. */
  read(apiPath: string, token: SecretValue, signal: AbortSignal, ctx: VaultErrorContext): Promise<unknown> {
    return this.#call(signal, ctx, token, (client, options) => client.read(apiPath, options));
  }

  login(
    mount: string,
    roleId: string,
    secretId: SecretValue,
    signal: AbortSignal,
    ctx: VaultErrorContext,
  ): Promise<unknown> {
    return this.#call(signal, ctx, undefined, (client, options) =>
      client.approleLogin({
        mount_point: mount,
        role_id: roleId,
        secret_id: secretId.reveal(),
        requestOptions: options,
      }),
    );
  }

  renewSelf(token: SecretValue, signal: AbortSignal, ctx: VaultErrorContext): Promise<unknown> {
    return this.#call(signal, ctx, token, (client, options) => client.tokenRenewSelf({ requestOptions: options }));
  }

  lookupSelf(token: SecretValue, signal: AbortSignal, ctx: VaultErrorContext): Promise<unknown> {
    return this.#call(signal, ctx, token, (client, options) => client.tokenLookupSelf({ requestOptions: options }));
  }

  /** Abort every call in flight. */
  close(): void {
    this.#closing.abort(new BrokerError('SHUTTING_DOWN', 'the vault source was closed'));
  }

  async #call<T>(
    outer: AbortSignal,
    ctx: VaultErrorContext,
    token: SecretValue | undefined,
    run: (client: NodeVaultClient, options: Record<string, unknown>) => Promise<T>,
  ): Promise<T> {
    const signal = AbortSignal.any([outer, this.#closing.signal]);
    throwIfAborted(signal, ctx);
    const [client, tls] = await abortable(Promise.all([this.#nodeVault(), this.#tlsMaterial()]), signal, (s) =>
      abortError(s, ctx),
    );
    const session = new RequestSession(tls, MAX_RESPONSE_BYTES);
    const onAbort = (): void => session.close();
    signal.addEventListener('abort', onAbort, { once: true });
    try {
      // The CLI sends X-Vault-Request on every call; a Vault Proxy with require_request_header
      // refuses requests without it.
      const headers: Record<string, string> = { 'X-Vault-Request': 'true' };
      if (token) headers['X-Vault-Token'] = token.reveal();
      const options = {
        headers,
        httpAgent: session.httpAgent,
        httpsAgent: session.httpsAgent,
        timeout: REQUEST_TIMEOUT_MS,
      };
      return await abortable(run(client, options), signal, (s) => abortError(s, ctx));
    } catch (err) {
      if (signal.aborted) throw abortError(signal, ctx);
      if (session.overflowed) {
        throw new BrokerError(
          'SOURCE_ERROR',
          `Vault at ${this.settings.address} sent more than ${MAX_RESPONSE_BYTES} bytes for ${ctx.target}: that is not a KV secret`,
        );
      }
      const retryAfterMs = parseRetryAfter(session.retryAfter, Date.now());
      throw translateVaultError(err, retryAfterMs === undefined ? ctx : { ...ctx, retryAfterMs });
    } finally {
      signal.removeEventListener('abort', onAbort);
      session.close();
    }
  }

  #nodeVault(): Promise<NodeVaultClient> {
    this.#client ??= (async () => {
      nodeVaultModule ??= importNodeVault();
      let factory: Awaited<ReturnType<typeof importNodeVault>>['default'];
      try {
        factory = (await nodeVaultModule).default;
      } catch (err) {
        nodeVaultModule = undefined;
        this.#log.error({ errName: err instanceof Error ? err.name : typeof err }, 'vault: could not load node-vault');
        throw new BrokerError(
          'CONFIG_INVALID',
          'the vault: source could not load its client library (node-vault): is the install complete? try: npm ci',
        );
      }
      const client = factory({
        endpoint: this.settings.address,
        apiVersion: 'v1',
        debug: () => {},
        noCustomHTTPVerbs: true,
      }) as unknown as NodeVaultClient;
      // node-vault read these from process.env at construction and reads them per request, so
      // overwriting them here is what makes the daemon's own settings the only ones.
      client.namespace = this.settings.namespace;
      client.pathPrefix = '';
      Object.defineProperty(client, 'token', { get: () => undefined, set: () => {}, configurable: false });
      return client;
    })();
    this.#client.catch(() => (this.#client = undefined));
    return this.#client;
  }

  #tlsMaterial(): Promise<TlsMaterial> {
    this.#tls ??= loadTlsMaterial(this.settings.tls);
    // A CA file that is missing now may be there on the next fetch.
    this.#tls.catch(() => (this.#tls = undefined));
    return this.#tls;
  }
}

/**
 * The http(s) agents for one call. Destroying them closes their sockets, which is how a call is
 * cancelled; counting what those sockets receive is how a response is capped.
 */
class RequestSession {
  readonly httpAgent: http.Agent;
  readonly httpsAgent: https.Agent;
  overflowed = false;
  /** The Retry-After header of the latest response, if it had one. */
  retryAfter: string | undefined;
  #bytes = 0;

  constructor(tls: TlsMaterial, maxBytes: number) {
    const watch = (socket: Duplex | null | undefined): void => {
      socket?.on('data', (chunk: Buffer) => {
        this.#bytes += chunk.length;
        if (this.#bytes > maxBytes && !this.overflowed) {
          this.overflowed = true;
          socket.destroy();
        }
      });
    };
    const noteResponse = (req: http.ClientRequest): void => {
      req.once('response', (res: http.IncomingMessage) => {
        this.retryAfter = res.headers['retry-after'];
      });
    };
    class CountingHttpAgent extends http.Agent {
      addRequest(req: http.ClientRequest, options: unknown): void {
        noteResponse(req);
        addRequestOf(http.Agent).call(this, req, options);
      }
      override createConnection(
        ...args: Parameters<http.Agent['createConnection']>
      ): ReturnType<http.Agent['createConnection']> {
        const socket = super.createConnection(...args);
        watch(socket);
        return socket;
      }
    }
    class CountingHttpsAgent extends https.Agent {
      addRequest(req: http.ClientRequest, options: unknown): void {
        noteResponse(req);
        addRequestOf(https.Agent).call(this, req, options);
      }
      override createConnection(
        ...args: Parameters<https.Agent['createConnection']>
      ): ReturnType<https.Agent['createConnection']> {
        const socket = super.createConnection(...args);
        watch(socket);
        return socket;
      }
    }
    this.httpAgent = new CountingHttpAgent({ keepAlive: true });
    this.httpsAgent = new CountingHttpsAgent({ keepAlive: true, ...tls });
  }

  close(): void {
    this.httpAgent.destroy();
    this.httpsAgent.destroy();
  }
}

type AddRequest = (this: http.Agent, req: http.ClientRequest, options: unknown) => void;
/**
 * http.Agent's addRequest: every request an agent serves passes through it. Node has had it since
 * 0.x and agent libraries (agent-base) override it, but @types/node does not declare it.
 */
function addRequestOf(agent: typeof http.Agent | typeof https.Agent): AddRequest {
  return (agent.prototype as unknown as { addRequest: AddRequest }).addRequest;
}

/**
 * TLS options in Vault's terms: VAULT_CACERT wins over VAULT_CAPATH (as in Vault's own client),
 * and either replaces Node's built-in roots, as it replaces the system's for the Vault CLI.
 */
export async function loadTlsMaterial(tls: ResolvedTls): Promise<TlsMaterial> {
  const material: TlsMaterial = { rejectUnauthorized: !tls.skipVerify };
  if (tls.serverName) material.servername = tls.serverName;
  if (tls.caCert) {
    material.ca = [await readPem(tls.caCert, 'the CA file (caCert / VAULT_CACERT)')];
  } else if (tls.caPath) {
    material.ca = await readCaDirectory(tls.caPath);
  }
  if (tls.clientCert && tls.clientKey) {
    material.cert = Buffer.from(
      await readPem(tls.clientCert, 'the client certificate (clientCert / VAULT_CLIENT_CERT)'),
    );
    material.key = Buffer.from(await readPem(tls.clientKey, 'the client key (clientKey / VAULT_CLIENT_KEY)'));
  }
  return material;
}

async function readPem(file: string, what: string): Promise<string> {
  let text: string;
  try {
    const st = await fs.stat(file);
    if (!st.isFile()) throw new BrokerError('CONFIG_INVALID', `${what} ${file} is not a file`);
    if (st.size > MAX_PEM_BYTES)
      throw new BrokerError('CONFIG_INVALID', `${what} ${file} is larger than ${MAX_PEM_BYTES} bytes: not a PEM file`);
    text = await fs.readFile(file, 'utf8');
  } catch (err) {
    if (err instanceof BrokerError) throw err;
    const code = (err as NodeJS.ErrnoException).code ?? 'error';
    throw new BrokerError('CONFIG_INVALID', `cannot read ${what} ${file} (${code})`);
  }
  if (!text.includes('-----BEGIN '))
    throw new BrokerError('CONFIG_INVALID', `${what} ${file} is not PEM (no -----BEGIN line)`);
  return text;
}

async function readCaDirectory(dir: string): Promise<string[]> {
  let names: string[];
  try {
    names = (await fs.readdir(dir)).sort();
  } catch (err) {
    throw new BrokerError(
      'CONFIG_INVALID',
      `cannot read the CA directory (caPath / VAULT_CAPATH) ${dir} (${(err as NodeJS.ErrnoException).code ?? 'error'})`,
    );
  }
  const pems: string[] = [];
  for (const name of names.slice(0, MAX_CA_FILES)) {
    const file = path.join(dir, name);
    try {
      const st = await fs.stat(file);
      if (!st.isFile() || st.size > MAX_PEM_BYTES) continue;
      const text = await fs.readFile(file, 'utf8');
      // c_rehash directories hold hash-named links next to the certificates; anything that is
      // not a PEM certificate is skipped, as Vault's own loader does.
      if (text.includes('-----BEGIN CERTIFICATE-----')) pems.push(text);
    } catch {
      continue;
    }
  }
  if (pems.length === 0)
    throw new BrokerError(
      'CONFIG_INVALID',
      `the CA directory (caPath / VAULT_CAPATH) ${dir} holds no PEM certificates`,
    );
  return pems;
}

/** The abort's own reason (a profile timeout, a shutdown), or a TIMEOUT naming the request. */
export function abortError(signal: AbortSignal, ctx: VaultErrorContext): BrokerError {
  return asBrokerError(signal.reason, 'TIMEOUT', `Vault request for ${ctx.target} was stopped before it finished`);
}

function throwIfAborted(signal: AbortSignal, ctx: VaultErrorContext): void {
  if (signal.aborted) throw abortError(signal, ctx);
}
