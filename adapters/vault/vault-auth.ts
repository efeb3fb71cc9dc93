// Where the Vault token comes from, and keeping it valid.
//
// - StaticTokenAuth: VAULT_TOKEN, or a token file (~/.vault-token, what `vault login` writes). The
//   file is re-read whenever it changes, so a new `vault login` is picked up without a restart.
//   keybroker does not renew a token it did not create.
// - AppRoleAuth: logs in with role_id and secret_id (from files or environment variables), keeps
//   the client token, renews it with auth/token/renew-self at about 2/3 of its TTL while Vault
//   says it is renewable, and logs in again when renewal fails or stops extending it, or when the
//   token has expired. Failed logins back off (capped, jittered); while backing off, callers get
//   the last login error at once rather than a new login attempt each. A token no fetch has used
//   since its last renewal is not renewed again (as the cache stops refreshing unread profiles).
//
// Time comes from an injected Clock so renewal and re-login can be driven by a test.
import fs from 'node:fs/promises';
import {
  abortable,
  backoffDelay,
  formatDuration,
  readCheckedFile,
  readPrivateFile,
  type BackoffOptions,
  type Clock,
  type ClockTimer,
  type Logger,
} from '../../src/adapter.js';
import { asBrokerError, BrokerError } from '../../src/errors.js';
import { SecretValue } from '../../src/secret.js';
import { abortError, type VaultClient } from './vault-client.js';
import type { VaultErrorContext } from './vault-errors.js';
import type { CredentialSource, ResolvedAuth, TokenSource } from './vault-settings.js';

export const LOGIN_BACKOFF: BackoffOptions = { baseMs: 1_000, capMs: 2 * 60_000, jitter: 0.2 };

/** Renew at this fraction of the token's TTL, ± RENEW_JITTER, so many daemons do not renew in step. */
export const RENEW_AT = 2 / 3;
export const RENEW_JITTER = 1 / 30;
/** A lease shorter than this is not worth renewing: the token is used until it runs out. */
const MIN_RENEWABLE_LEASE_MS = 3_000;
/** Stop using a token this long before Vault says it expires (at most 10% of its lease). */
const EXPIRY_MARGIN_MS = 10_000;
/** Background calls (login, renewal) get this long; fetches keep their own deadline. */
const BACKGROUND_TIMEOUT_MS = 10_000;
const MAX_CREDENTIAL_BYTES = 16 * 1024;

export interface TokenProvider {
  /** A token to use now (logging in first if needed). */
  token(signal: AbortSignal): Promise<SecretValue>;
  /**
   * A request with `token` was refused (403). Returns true when a retry with a new token is worth
   * it: the token file changed, or an AppRole token was dropped so the next token() logs in.
   */
  rejected(token: SecretValue, signal: AbortSignal): Promise<boolean>;
  /** Where the token comes from, for messages: "VAULT_TOKEN", "~/.vault-token", "AppRole login". */
  readonly sourceLabel: string;
  status(): string;
  close(): void;
}

export interface AuthDeps {
  client: VaultClient;
  env: NodeJS.ProcessEnv;
  log: Logger;
  clock: Clock;
  random: () => number;
}

export function createTokenProvider(auth: ResolvedAuth, deps: AuthDeps): TokenProvider {
  return auth.method === 'token' ? new StaticTokenAuth(auth.source, deps.env) : new AppRoleAuth(auth, deps);
}

export class StaticTokenAuth implements TokenProvider {
  readonly sourceLabel: string;
  readonly #source: TokenSource;
  readonly #env: NodeJS.ProcessEnv;
  #cached: { token: SecretValue; stamp: string } | undefined;

  constructor(source: TokenSource, env: NodeJS.ProcessEnv) {
    this.#source = source;
    this.#env = env;
    this.sourceLabel = source.kind === 'env' ? source.name : source.label;
  }

  async token(): Promise<SecretValue> {
    if (this.#source.kind === 'env') {
      const value = this.#env[this.#source.name]?.trim();
      if (!value)
        throw new BrokerError('AUTH_REQUIRED', `${this.#source.name} is empty in the daemon's environment`, {
          fix: 'set it, or run vault login (which writes ~/.vault-token)',
        });
      return SecretValue.fromString(value);
    }
    return this.#readFile(false);
  }

  async rejected(token: SecretValue): Promise<boolean> {
    if (this.#source.kind === 'env') return false;
    try {
      return !(await this.#readFile(true)).equals(token);
    } catch {
      return false;
    }
  }

  status(): string {
    return `token from ${this.sourceLabel}`;
  }

  close(): void {
    this.#cached = undefined;
  }

  async #readFile(force: boolean): Promise<SecretValue> {
    const source = this.#source as Extract<TokenSource, { kind: 'file' }>;
    let stamp: string;
    try {
      const st = await fs.stat(source.path);
      if (!st.isFile()) throw new BrokerError('AUTH_REQUIRED', `${source.label} is not a file`);
      // ctime too: a chmod or chown changes nothing else, and must be checked again.
      stamp = `${st.ino}:${st.size}:${st.mtimeMs}:${st.ctimeMs}`;
      if (!force && this.#cached?.stamp === stamp) return this.#cached.token;
      if (st.size > MAX_CREDENTIAL_BYTES)
        throw new BrokerError('AUTH_REQUIRED', `${source.label} is larger than a Vault token can be`);
    } catch (err) {
      if (err instanceof BrokerError) throw err;
      throw fileError(
        err,
        source.label,
        "no Vault token: run vault login (it writes ~/.vault-token), or set VAULT_TOKEN in the daemon's environment",
      );
    }
    const token = await readCredentialFile(source.path, source.label, 'Vault token', true);
    this.#cached = { token, stamp };
    return token;
  }
}

interface HeldToken {
  value: SecretValue;
  /** When this login or renewal happened. */
  since: number;
  /** Stop using it after this instant (Vault's expiry minus a margin); Infinity when it never expires. */
  usableUntil: number;
  renewable: boolean;
}

export class AppRoleAuth implements TokenProvider {
  readonly sourceLabel: string;
  readonly #auth: Extract<ResolvedAuth, { method: 'approle' }>;
  readonly #deps: AuthDeps;
  readonly #closing = new AbortController();
  #held: HeldToken | undefined;
  #login: Promise<HeldToken> | undefined;
  #failures = 0;
  #nextLoginAt = -Infinity;
  #lastError: BrokerError | undefined;
  #timer: ClockTimer | undefined;
  #renewals = 0;
  #usedAt = -Infinity;
  #closed = false;

  constructor(auth: Extract<ResolvedAuth, { method: 'approle' }>, deps: AuthDeps) {
    this.#auth = auth;
    this.#deps = deps;
    this.sourceLabel = `AppRole login at auth/${auth.mount}`;
  }

  async token(signal: AbortSignal): Promise<SecretValue> {
    const ctx = this.#ctx('login');
    if (this.#closed) throw new BrokerError('SHUTTING_DOWN', 'the vault source was closed');
    const now = this.#deps.clock.now();
    if (this.#held && now < this.#held.usableUntil) {
      this.#usedAt = now;
      return this.#held.value;
    }
    if (this.#held) this.#dropToken();
    if (!this.#login) {
      if (now < this.#nextLoginAt && this.#lastError) throw this.#lastError;
      this.#startLogin();
    }
    const held = await abortable(this.#login!, signal, (s) => abortError(s, ctx));
    // Marked after the login, so the token this fetch got counts as used.
    this.#usedAt = this.#deps.clock.now();
    return held.value;
  }

  async rejected(token: SecretValue): Promise<boolean> {
    if (this.#held && this.#held.value.equals(token)) {
      // Vault no longer knows it (revoked, or expired early): a fresh login is what is left.
      this.#deps.log.info({ authMount: this.#auth.mount }, 'vault: the AppRole token was refused; logging in again');
      this.#dropToken();
      return true;
    }
    // Someone else already replaced it.
    return this.#held !== undefined || this.#login !== undefined;
  }

  status(): string {
    const now = this.#deps.clock.now();
    if (this.#held) {
      const left =
        this.#held.usableUntil === Infinity
          ? 'no expiry'
          : `valid ${formatDuration(Math.max(0, this.#held.usableUntil - now))}`;
      return `AppRole (auth/${this.#auth.mount}): logged in, token ${left}${this.#held.renewable ? ', renewable' : ''}, renewed ${this.#renewals}×`;
    }
    if (this.#lastError) {
      const retry = this.#nextLoginAt > now ? `, next try in ${formatDuration(this.#nextLoginAt - now)}` : '';
      return `AppRole (auth/${this.#auth.mount}): login failing (${this.#lastError.code})${retry}`;
    }
    return `AppRole (auth/${this.#auth.mount}): not logged in yet`;
  }

  close(): void {
    this.#closed = true;
    this.#timer?.cancel();
    this.#timer = undefined;
    this.#closing.abort(new BrokerError('SHUTTING_DOWN', 'the vault source was closed'));
    this.#held = undefined;
  }

  #startLogin(): void {
    const attempt = this.#doLogin();
    this.#login = attempt;
    attempt.then(
      () => {
        if (this.#login === attempt) this.#login = undefined;
      },
      () => {
        if (this.#login === attempt) this.#login = undefined;
      },
    );
  }

  async #doLogin(): Promise<HeldToken> {
    const { clock, log, client, env, random } = this.#deps;
    const ctx = this.#ctx('login');
    try {
      const roleId = (await readCredential(this.#auth.roleId, env, 'AppRole role_id')).reveal();
      const secretId = await readCredential(this.#auth.secretId, env, 'AppRole secret_id');
      const body = await client.login(this.#auth.mount, roleId, secretId, this.#backgroundSignal(), ctx);
      const held = this.#hold(body, 'login');
      this.#failures = 0;
      this.#lastError = undefined;
      this.#nextLoginAt = -Infinity;
      this.#renewals = 0;
      log.info(
        { authMount: this.#auth.mount, leaseS: leaseSeconds(body), renewable: held.renewable },
        'vault: logged in with AppRole',
      );
      return held;
    } catch (err) {
      const error = asBrokerError(err, 'SOURCE_ERROR', `AppRole login at auth/${this.#auth.mount} failed unexpectedly`);
      this.#failures++;
      const delay = backoffDelay(this.#failures, LOGIN_BACKOFF, random);
      this.#nextLoginAt = clock.now() + delay;
      this.#lastError = error;
      log.warn({ authMount: this.#auth.mount, err: error, retryInMs: delay }, 'vault: AppRole login failed');
      throw error;
    }
  }

  /** Take the token from a login or renewal answer and schedule its renewal. */
  #hold(body: unknown, from: 'login' | 'renew'): HeldToken {
    const auth = (
      body as { auth?: { client_token?: unknown; lease_duration?: unknown; renewable?: unknown } } | undefined
    )?.auth;
    const clientToken = auth?.client_token;
    if (from === 'login' && (typeof clientToken !== 'string' || clientToken.length === 0)) {
      throw new BrokerError(
        'SOURCE_ERROR',
        `AppRole login at auth/${this.#auth.mount} answered without a client token`,
      );
    }
    const value = from === 'login' ? SecretValue.fromString(clientToken as string) : this.#held?.value;
    if (!value) throw new BrokerError('SOURCE_ERROR', 'the token was dropped while it was being renewed');
    const leaseMs = leaseSeconds(body) * 1000;
    const renewable = auth?.renewable === true;
    const now = this.#deps.clock.now();
    const usableUntil = leaseMs > 0 ? now + leaseMs - Math.min(EXPIRY_MARGIN_MS, leaseMs / 10) : Infinity;
    const held: HeldToken = { value, since: now, usableUntil, renewable };
    this.#held = held;
    this.#schedule(held, leaseMs);
    return held;
  }

  #schedule(held: HeldToken, leaseMs: number): void {
    this.#timer?.cancel();
    this.#timer = undefined;
    if (this.#closed || leaseMs <= 0) return;
    const fraction = RENEW_AT + (this.#deps.random() * 2 - 1) * RENEW_JITTER;
    const delay = Math.max(0, Math.round(leaseMs * fraction));
    if (held.renewable && leaseMs >= MIN_RENEWABLE_LEASE_MS) {
      this.#timer = this.#deps.clock.setTimeout(() => void this.#renew(held), delay);
    } else {
      // Not renewable (or about to hit its max TTL): get a new token before this one runs out.
      this.#timer = this.#deps.clock.setTimeout(() => this.#backgroundLogin(held), delay);
    }
  }

  async #renew(held: HeldToken): Promise<void> {
    this.#timer = undefined;
    if (this.#closed || this.#held !== held || this.#idle(held)) return;
    const { client, log, clock, random } = this.#deps;
    try {
      const body = await client.renewSelf(held.value, this.#backgroundSignal(), this.#ctx('renew'));
      if (this.#held !== held) return;
      const before = held.usableUntil;
      const renewed = this.#hold(body, 'renew');
      this.#renewals++;
      this.#failures = 0;
      log.debug(
        { authMount: this.#auth.mount, leaseS: leaseSeconds(body), renewable: renewed.renewable },
        'vault: token renewed',
      );
      // Vault caps renewals at the token's max TTL: once a renewal no longer moves the expiry,
      // the next step is a new login, not another renewal.
      if (renewed.usableUntil <= before) {
        // #hold scheduled another renewal; replace it (the await above hides that from narrowing).
        (this.#timer as ClockTimer | undefined)?.cancel();
        this.#timer = clock.setTimeout(
          () => this.#backgroundLogin(renewed),
          Math.max(0, (renewed.usableUntil - clock.now()) * RENEW_AT),
        );
      }
    } catch (err) {
      if (this.#held !== held || this.#closed) return;
      const error = asBrokerError(err, 'SOURCE_ERROR', 'token renewal failed unexpectedly');
      if (error.transient) {
        // Vault is briefly away: the token is still good, so try renewing again before it runs out.
        const delay = backoffDelay(++this.#failures, LOGIN_BACKOFF, random);
        if (clock.now() + delay < held.usableUntil) {
          log.warn(
            { authMount: this.#auth.mount, err: error, retryInMs: delay },
            'vault: token renewal failed; retrying',
          );
          this.#timer = clock.setTimeout(() => void this.#renew(held), delay);
          return;
        }
      }
      log.warn({ authMount: this.#auth.mount, err: error }, 'vault: token renewal failed; logging in again');
      this.#dropToken();
      this.#backgroundLogin(undefined);
    }
  }

  /** Log in ahead of need; on failure retry with backoff while the old token still works. */
  #backgroundLogin(stillUsable: HeldToken | undefined): void {
    this.#timer = undefined;
    if (this.#closed || this.#login) return;
    if (stillUsable && (this.#held !== stillUsable || this.#idle(stillUsable))) return;
    this.#startLogin();
    this.#login!.catch(() => {
      if (this.#closed || this.#timer) return;
      const holding = this.#held;
      const delay = Math.max(0, this.#nextLoginAt - this.#deps.clock.now());
      if (holding && this.#deps.clock.now() + delay < holding.usableUntil) {
        this.#timer = this.#deps.clock.setTimeout(() => this.#backgroundLogin(holding), delay);
      }
      // Otherwise the next fetch logs in (after the backoff), so an unused profile costs nothing.
    });
  }

  /**
   * No fetch has used the token since its last login or renewal: keeping it alive would have an
   * unused connection (a profile nobody reads, settings a reload replaced) poll Vault for ever.
   * It is left to run out; the next fetch logs in.
   */
  #idle(held: HeldToken): boolean {
    if (this.#usedAt >= held.since) return false;
    this.#deps.log.debug(
      { authMount: this.#auth.mount },
      'vault: token unused since its last renewal; letting it expire',
    );
    return true;
  }

  #dropToken(): void {
    this.#held = undefined;
    this.#timer?.cancel();
    this.#timer = undefined;
  }

  #backgroundSignal(): AbortSignal {
    return AbortSignal.any([this.#closing.signal, AbortSignal.timeout(BACKGROUND_TIMEOUT_MS)]);
  }

  #ctx(operation: 'login' | 'renew'): VaultErrorContext {
    return {
      operation,
      target: `auth/${this.#auth.mount}`,
      address: this.#deps.client.settings.address,
      tokenSource: this.sourceLabel,
    };
  }
}

function leaseSeconds(body: unknown): number {
  const lease = (body as { auth?: { lease_duration?: unknown } } | undefined)?.auth?.lease_duration;
  return typeof lease === 'number' && Number.isFinite(lease) && lease > 0 ? lease : 0;
}

async function readCredential(source: CredentialSource, env: NodeJS.ProcessEnv, what: string): Promise<SecretValue> {
  if (source.kind === 'literal') return SecretValue.fromString(source.value);
  if (source.kind === 'env') {
    const value = env[source.name]?.trim();
    if (!value)
      throw new BrokerError(
        'AUTH_REQUIRED',
        `${what}: ${source.name} is not set in the daemon's environment (or set vault.auth to read it from a file)`,
      );
    return SecretValue.fromString(value);
  }
  // The role_id names a role and is not secret; the secret_id is, and gets the private-file check.
  return readCredentialFile(source.path, `${what}: ${source.label}`, what, what.includes('secret_id'));
}

/**
 * A token or secret_id file is read like a file: key: owned by you and readable by nobody else, or
 * owned by root and writable by nobody else (a Kubernetes secret mount, a Vault Agent sink).
 */
async function readCredentialFile(file: string, label: string, what: string, secret: boolean): Promise<SecretValue> {
  let bytes: Buffer;
  try {
    const options = { label, maxBytes: MAX_CREDENTIAL_BYTES, invalid: 'AUTH_REQUIRED' as const };
    bytes = secret ? await readPrivateFile(file, options) : await readCheckedFile(file, { ...options, trust: 'any' });
  } catch (err) {
    if (err instanceof BrokerError) throw err;
    throw fileError(err, label, `${label} does not exist`);
  }
  try {
    const trimmed = bytes.toString('utf8').trim();
    if (trimmed.length === 0) throw new BrokerError('AUTH_REQUIRED', `${label} is empty`);
    return SecretValue.fromString(trimmed);
  } finally {
    bytes.fill(0);
  }
}

function fileError(err: unknown, label: string, missing: string): BrokerError {
  const code = (err as NodeJS.ErrnoException).code;
  if (code === 'ENOENT') return new BrokerError('AUTH_REQUIRED', missing);
  if (code === 'EACCES') return new BrokerError('PERMISSION_DENIED', `cannot read ${label}: permission denied`);
  return new BrokerError('AUTH_REQUIRED', `cannot read ${label} (${code ?? 'error'})`);
}
