// A fake Vault for a test or a file (test/fakes/fake-vault.ts): started with its KV mounts, its
// secrets, a token and, if asked, its TLS material; closed, and its directory removed, when the
// test (or file) that started it is done (cleanup.ts). A test needs one line for a Vault:
// `const vault = await startFakeVault({ secrets: { 'secret/app': { api_key: KEY } } })`.
import type { FakeVaultOptions, TestCertificate, TokenOptions } from '../fakes/fake-vault.js';
import { FakeVault, makeTestCertificate } from '../fakes/fake-vault.js';
import { cleanUp } from './cleanup.js';
import { privateTempDir } from './cleanup.js';

/**
 * Every variable through which a Vault client's own setup reaches a daemon: set empty, so that
 * nothing from the developer's Vault leaks into a test (a daemon inherits the test's environment).
 */
const VAULT_CLIENT_ENV = [
  'VAULT_NAMESPACE',
  'VAULT_CACERT',
  'VAULT_CAPATH',
  'VAULT_SKIP_VERIFY',
  'VAULT_CLIENT_CERT',
  'VAULT_CLIENT_KEY',
  'VAULT_TLS_SERVER_NAME',
] as const;

export interface FakeVaultFixtureOptions {
  /** HTTPS with a fresh self-signed certificate; `'mutual'` also requires a client certificate. */
  tls?: boolean | 'mutual';
  /** The fake's clock for token expiry (share a ManualClock with the adapter under test). */
  now?: FakeVaultOptions['now'];
  /** KV engines to mount, path to version (default: `secret` at version 2). */
  kv?: Record<string, 1 | 2>;
  /** Secrets to write, as FakeVault.put: full path to data. */
  secrets?: Record<string, Record<string, unknown>>;
  /** The token `token` and `env` hold (default: read under secret/data/*); false for none. */
  token?: TokenOptions | false;
}

export interface FakeVaultFixture {
  fake: FakeVault;
  /** Its address, VAULT_ADDR: http://127.0.0.1:PORT, or https:// with `tls`. */
  url: string;
  /** The token made at the start ('' with `token: false`). */
  token: string;
  /**
   * For a daemon's environment: VAULT_ADDR, VAULT_TOKEN (empty with `token: false`) and, with
   * `tls`, VAULT_CACERT; every other Vault client variable empty.
   */
  env: NodeJS.ProcessEnv;
  /** A private directory: the certificates, and whatever else a test puts beside them. */
  dir: string;
  /** The server's certificate, with `tls`. */
  cert: TestCertificate | undefined;
  /** The certificate the server requires of clients, with `tls: 'mutual'`. */
  client: TestCertificate | undefined;
}

export async function startFakeVault(options: FakeVaultFixtureOptions = {}): Promise<FakeVaultFixture> {
  const dir = privateTempDir('kb-vault-');
  const cert = options.tls ? makeTestCertificate(dir) : undefined;
  const client = options.tls === 'mutual' ? makeTestCertificate(dir, 'vault-client') : undefined;
  const fake = await FakeVault.start({
    ...(cert && { tls: { key: cert.key, cert: cert.cert, ...(client && { clientCa: client.cert }) } }),
    ...(options.now && { now: options.now }),
  });
  cleanUp(() => fake.close());
  const kv: Record<string, 1 | 2> = options.kv ?? { secret: 2 };
  for (const [mount, version] of Object.entries(kv)) fake.enableKv(mount, version);
  for (const [at, data] of Object.entries(options.secrets ?? {})) fake.put(at, data);
  const token = options.token === false ? '' : fake.createToken(options.token ?? { read: ['secret/data/*'] });
  const env: NodeJS.ProcessEnv = Object.fromEntries(VAULT_CLIENT_ENV.map((name) => [name, '']));
  env.VAULT_ADDR = fake.url;
  env.VAULT_TOKEN = token;
  if (cert) env.VAULT_CACERT = cert.certFile;
  return { fake, url: fake.url, token, env, dir, cert, client };
}
