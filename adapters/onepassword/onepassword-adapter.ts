// op:// — 1Password secret references, through the @1password/sdk client. One client per
// credential, authorised once and reused: one desktop-app approval serves every later read.
//
//   onepassword:
//     account: my-team          # desktop app (or OP_ACCOUNT); or:
//     tokenFile: ~/.config/keybroker/op-token   # service account token file (or OP_SERVICE_ACCOUNT_TOKEN)
//     auth: auto                # auto | desktop | service-account
//     readsPerHour: 1000        # the token's hourly read limit (Business: 10000)
//     backgroundReadsPerHour: 500   # refreshes nobody waits for stop here
//     batchWindow: 10ms         # fetches due within this window share one resolveAll
//     maxBatch: 50
//   profiles:
//     work:
//       source: op://Work/Anthropic/credential
//     personal:
//       source: op://Private/Anthropic/credential
//       onepassword: { account: my.1password.com }   # account, tokenFile, auth per profile
//
// Env fallbacks: OP_SERVICE_ACCOUNT_TOKEN (a service account token), OP_ACCOUNT (the desktop app
// account). In `auth: auto` a configured tokenFile wins, then account, then the token variable,
// then OP_ACCOUNT. References are validated offline with the SDK's validateSecretReference when
// the config loads; the SDK (its WASM core) is imported then, never at construction.
import {
  abortable,
  deadline,
  formatDuration,
  systemClock,
  type Adapter,
  type Clock,
  type AdapterInit,
  type FetchContext,
  type FetchResult,
  type Logger,
  type SecretLocations,
} from '../../src/adapter.js';
import { BrokerError } from '../../src/errors.js';
import { SecretValue } from '../../src/secret.js';
import {
  loadSdk,
  sdkClientFactory,
  type ClientFactory,
  type OnePasswordAuth,
  type OnePasswordClient,
  type Sdk,
} from './client-factory.js';
import {
  noCredentialError,
  readServiceAccountToken,
  resolveCredential,
  TOKEN_ENV,
  type CredentialSpec,
} from './credentials.js';
import { errorName, translateReferenceError, translateSdkError, type CredentialContext } from './error-translator.js';
import { ReadBudget } from './read-budget.js';
import { abortError, ResolveBatcher } from './resolve-batcher.js';
import { validateReference, type ReferenceParts } from './secret-reference.js';
import { credentialsForProfile, parseSettings, type OnePasswordSettings } from './settings.js';

export {
  INTEGRATION_NAME,
  INTEGRATION_VERSION,
  type ClientFactory,
  type OnePasswordAuth,
  type OnePasswordClient,
} from './client-factory.js';

export interface OpRef {
  /** The op:// reference, exactly as sent to 1Password. */
  reference: string;
  parts: ReferenceParts;
  credential: CredentialSpec;
}

export interface OnePasswordAdapterOptions {
  /** How clients are made; the default creates real SDK clients. Tests pass a fake client. */
  clientFactory?: ClientFactory;
  /** Times the batch window, the read budget's hour and the client/request deadlines. */
  clock?: Clock;
  random?: () => number;
  /** Client creation, a desktop-app approval prompt included, fails after this long. */
  clientTimeoutMs?: number;
  /** One resolveAll call fails after this long (callers stop waiting at their own timeout). */
  requestTimeoutMs?: number;
}

/** A key far larger than this is not a key. */
export const MAX_SECRET_BYTES = 64 * 1024;
const CLIENT_TIMEOUT_MS = 60_000;
const REQUEST_TIMEOUT_MS = 60_000;
const BACKGROUND = new Set(['refresh-ahead', 'retry']);

type Outcome =
  | { kind: 'value'; value: SecretValue }
  | { kind: 'error'; error: { type: string } }
  | { kind: 'too-large'; bytes: number }
  | { kind: 'missing' };

interface ClientSlot {
  auth: OnePasswordAuth;
  cred: CredentialContext;
  client: Promise<OnePasswordClient> | undefined;
  batcher: ResolveBatcher<Outcome>;
  budget: ReadBudget;
  needsSignIn: boolean;
}

export function createAdapter(init: AdapterInit): Adapter<OpRef> {
  return createOnePasswordAdapter(init);
}

export function createOnePasswordAdapter(init: AdapterInit, options: OnePasswordAdapterOptions = {}): Adapter<OpRef> {
  return new OnePasswordAdapter(init, options);
}

class OnePasswordAdapter implements Adapter<OpRef> {
  readonly kind = 'op';
  readonly #settings: OnePasswordSettings;
  readonly #env: NodeJS.ProcessEnv;
  readonly #log: Logger;
  readonly #factory: ClientFactory;
  readonly #clock: Clock;
  readonly #now: () => number;
  readonly #random: () => number;
  readonly #clientTimeoutMs: number;
  readonly #requestTimeoutMs: number;
  /** By credential: `desktop:<account>` or `sa:<salted hash of the token>`, so a rotated token gets a new client. */
  readonly #slots = new Map<string, ClientSlot>();
  /** Which slot each token source last led to, to retire a slot when its token file changes. */
  readonly #slotOfSource = new Map<string, string>();
  /**
   * Profiles parsed without a credential, for status. Held weakly: a profile removed by a reload
   * drops out once its cache (the only holder of its ref) is gone.
   */
  readonly #withoutCredentials = new Map<string, WeakRef<OpRef>>();
  #closed: BrokerError | undefined;

  constructor(init: AdapterInit, options: OnePasswordAdapterOptions) {
    this.#settings = parseSettings(init.settings, init.env);
    this.#env = init.env;
    this.#log = init.log;
    this.#factory = options.clientFactory ?? sdkClientFactory;
    this.#clock = options.clock ?? systemClock;
    this.#now = () => this.#clock.now();
    this.#random = options.random ?? Math.random;
    this.#clientTimeoutMs = options.clientTimeoutMs ?? CLIENT_TIMEOUT_MS;
    this.#requestTimeoutMs = options.requestTimeoutMs ?? REQUEST_TIMEOUT_MS;
  }

  async parse(
    uri: string,
    options: { overrides: Record<string, unknown> | undefined; profile: string },
  ): Promise<OpRef> {
    const sdk = await loadSdk();
    const parts = validateReference(sdk, uri);
    const credentials = credentialsForProfile(
      this.#settings.credentials,
      options.overrides,
      this.#env,
      options.profile,
    );
    const credential = resolveCredential(credentials, this.#env);
    const ref: OpRef = { reference: uri, parts, credential };
    if (credential.kind === 'none') this.#withoutCredentials.set(options.profile, new WeakRef(ref));
    else this.#withoutCredentials.delete(options.profile);
    return ref;
  }

  describe(ref: OpRef): string {
    return ref.reference;
  }

  /** The token file a profile names; the token variable wherever it may be set. */
  secretLocations(ref: OpRef): SecretLocations {
    const file =
      ref.credential.kind === 'service-account' && ref.credential.from === 'file' ? ref.credential.path : undefined;
    return { files: file === undefined ? [] : [file], env: [TOKEN_ENV] };
  }

  async fetch(ref: OpRef, ctx: FetchContext): Promise<FetchResult> {
    if (this.#closed) throw this.#closed;
    if (ctx.signal.aborted) throw abortError(ctx.signal);
    const spec = ref.credential;
    if (spec.kind === 'none') {
      const { message, fix } = noCredentialError(spec);
      throw new BrokerError('AUTH_REQUIRED', `${ref.reference}: ${message}`, { fix });
    }
    const sdk = await loadSdk();
    let outcome: Outcome;
    let slot: ClientSlot;
    try {
      slot = await this.#slotFor(spec, sdk);
      if (BACKGROUND.has(ctx.reason) && !slot.batcher.has(ref.reference)) {
        const refusal = slot.budget.refuseBackground(slot.batcher.queued);
        if (refusal) {
          ctx.log.info(
            { reason: ctx.reason, credential: slot.cred.label, why: refusal.why },
            '1Password background read held back',
          );
          throw new BrokerError(
            'RATE_LIMITED',
            refusal.why === 'budget'
              ? `background refresh held back: the ${slot.cred.label} made ${refusal.reads} reads in the last hour and background refreshes stop at ${refusal.limit} (onepassword.backgroundReadsPerHour); the next read someone waits for still goes out`
              : `background refresh held back for ${formatDuration(refusal.retryInMs)}: 1Password rate-limited the ${slot.cred.label}; the next read someone waits for still goes out`,
            {
              transient: true,
              status: refusal.why,
              ...(refusal.why === 'rate-limited' && { retryAfterMs: refusal.retryInMs }),
            },
          );
        }
      }
      const started = this.#now();
      outcome = await slot.batcher.resolve(ref.reference, ctx.signal);
      ctx.log.debug({ ms: this.#now() - started, credential: slot.cred.label }, '1Password resolved the reference');
    } catch (err) {
      // The caller's own reason (its profile timeout, a shutdown) already names the source.
      if (ctx.signal.aborted) throw abortError(ctx.signal);
      throw named(ref, err);
    }
    switch (outcome.kind) {
      case 'value':
        return { value: outcome.value };
      case 'too-large':
        throw new BrokerError(
          'INVALID_VALUE',
          `${ref.reference} holds ${outcome.bytes} bytes; a key is expected (at most ${MAX_SECRET_BYTES})`,
        );
      case 'missing':
        throw new BrokerError('SOURCE_ERROR', `${ref.reference}: 1Password's answer did not include this reference`);
      default:
        throw translateReferenceError(outcome.error, ref.parts, ref.reference, slot.cred);
    }
  }

  status(): string[] {
    const notes: string[] = [];
    for (const slot of this.#slots.values()) {
      const b = slot.budget;
      let note = `${slot.cred.label}: ${b.readsLastHour()} reads in the last hour (limit ${b.readsPerHour}; background refreshes stop at ${b.backgroundReadsPerHour})`;
      const refused = b.refusedLastHour();
      if (refused > 0) note += `; ${refused} background refresh${refused === 1 ? '' : 'es'} held back`;
      const paused = b.pausedForMs();
      if (paused > 0) note += `; rate-limited by 1Password, background refreshes resume in ${formatDuration(paused)}`;
      if (slot.needsSignIn) note += '; needs sign-in';
      notes.push(note);
    }
    const names = [...this.#withoutCredentials]
      .filter(([, ref]) => ref.deref() !== undefined)
      .map(([name]) => name)
      .sort();
    if (names.length > 0) {
      notes.push(
        `no credentials for ${names.length === 1 ? 'profile' : 'profiles'} ${names.join(', ')}: set OP_SERVICE_ACCOUNT_TOKEN, or OP_ACCOUNT with the desktop app's SDK integration on`,
      );
    }
    return notes;
  }

  async close(): Promise<void> {
    this.#closed = new BrokerError(
      'SHUTTING_DOWN',
      'the 1Password source was closed (config reload or daemon stopping)',
    );
    for (const slot of this.#slots.values()) {
      slot.batcher.close(this.#closed);
      // The SDK frees a client's core memory when the client object is garbage-collected.
      slot.client = undefined;
    }
    this.#slots.clear();
    this.#slotOfSource.clear();
  }

  async #slotFor(spec: Exclude<CredentialSpec, { kind: 'none' }>, sdk: Sdk): Promise<ClientSlot> {
    if (spec.kind === 'desktop') {
      const key = `desktop:${spec.account}`;
      return (
        this.#slots.get(key) ??
        this.#newSlot(
          key,
          { kind: 'desktop', account: spec.account, label: spec.label },
          { kind: 'desktop', label: spec.label, account: spec.account },
          sdk,
        )
      );
    }
    // Read on every fetch (a small private file): a rotated token file takes effect at once.
    const token = await readServiceAccountToken(spec, this.#env);
    const key = `sa:${token.tag()}`;
    const source = spec.from === 'file' ? `file:${spec.path}` : 'env';
    const previous = this.#slotOfSource.get(source);
    this.#slotOfSource.set(source, key);
    if (previous !== undefined && previous !== key && ![...this.#slotOfSource.values()].includes(previous)) {
      this.#log.info({ credential: spec.label }, 'the service account token changed: using a new 1Password client');
      this.#slots.delete(previous);
    }
    const where = spec.from === 'file' ? `token file ${spec.written}` : 'OP_SERVICE_ACCOUNT_TOKEN';
    return (
      this.#slots.get(key) ??
      this.#newSlot(
        key,
        { kind: 'service-account', token, label: spec.label },
        { kind: 'service-account', label: spec.label, where },
        sdk,
      )
    );
  }

  #newSlot(key: string, auth: OnePasswordAuth, cred: CredentialContext, sdk: Sdk): ClientSlot {
    // A fetch that began before close() must not leave a client behind it.
    if (this.#closed) throw this.#closed;
    const slot: ClientSlot = {
      auth,
      cred,
      client: undefined,
      budget: new ReadBudget({
        readsPerHour: this.#settings.readsPerHour,
        backgroundReadsPerHour: this.#settings.backgroundReadsPerHour,
        now: this.#now,
        random: this.#random,
      }),
      batcher: undefined as unknown as ResolveBatcher<Outcome>,
      needsSignIn: false,
    };
    slot.batcher = new ResolveBatcher<Outcome>({
      windowMs: this.#settings.batchWindowMs,
      maxBatch: this.#settings.maxBatch,
      clock: this.#clock,
      send: (references) => this.#send(slot, references, sdk),
    });
    this.#slots.set(key, slot);
    return slot;
  }

  async #send(slot: ClientSlot, references: string[], sdk: Sdk): Promise<Map<string, Outcome>> {
    const client = await this.#clientFor(slot, sdk);
    slot.budget.record(references.length);
    const started = this.#now();
    let response: unknown;
    try {
      const due = deadline(
        this.#clock,
        this.#requestTimeoutMs,
        () =>
          new BrokerError('UNAVAILABLE', `1Password did not answer within ${formatDuration(this.#requestTimeoutMs)}`, {
            status: 'timeout',
          }),
      );
      response = await abortable(client.secrets.resolveAll(references), due.signal).finally(due.cancel);
    } catch (err) {
      throw this.#failed(slot, err, sdk, 'resolveAll');
    }
    slot.budget.noteSuccess();
    slot.needsSignIn = false;
    this.#log.debug(
      { credential: slot.cred.label, references: references.length, ms: this.#now() - started },
      '1Password resolveAll',
    );
    return outcomesOf(response, references);
  }

  #clientFor(slot: ClientSlot, sdk: Sdk): Promise<OnePasswordClient> {
    if (!slot.client) {
      const creating = (async () => {
        try {
          const due = deadline(this.#clock, this.#clientTimeoutMs, () =>
            slot.cred.kind === 'desktop'
              ? new BrokerError(
                  'AUTH_REQUIRED',
                  `the 1Password app did not authorise keybroker for ${slot.cred.label} within ${formatDuration(this.#clientTimeoutMs)}`,
                  {
                    status: 'timeout',
                    fix: 'unlock 1Password and approve the request, then run: keybroker refresh --all',
                  },
                )
              : new BrokerError(
                  'UNAVAILABLE',
                  `signing in to 1Password with the ${slot.cred.label} took longer than ${formatDuration(this.#clientTimeoutMs)}`,
                  { status: 'timeout' },
                ),
          );
          return await abortable(
            Promise.resolve().then(() => this.#factory(slot.auth)),
            due.signal,
          ).finally(due.cancel);
        } catch (err) {
          throw this.#failed(slot, err, sdk, 'createClient');
        }
      })();
      slot.client = creating;
      // A failed client is forgotten, so the next fetch tries again (re-reading the token).
      creating.catch(() => {
        if (slot.client === creating) slot.client = undefined;
      });
    }
    return slot.client;
  }

  /** Translate, log by kind only, and remember what status and the next fetch need to know. */
  #failed(slot: ClientSlot, err: unknown, sdk: Sdk, during: string): BrokerError {
    let error = translateSdkError(err, sdk, slot.cred);
    const fields: Record<string, unknown> = {
      credential: slot.cred.label,
      during,
      code: error.code,
      errName: errorName(err),
    };
    if (error.code === 'AUTH_REQUIRED') {
      // The client's authorisation is gone: the next fetch makes a new one (a fresh desktop
      // approval, or the token re-read from its file).
      slot.client = undefined;
      slot.needsSignIn = true;
    } else if (error.code === 'RATE_LIMITED') {
      // The SDK's RateLimitExceeded carries no Retry-After (its message is only "rate limit
      // exceeded"), so the pause this adapter chose stands in for it: the cache's own retry of
      // the profile waits at least that long too.
      const pauseMs = slot.budget.noteRateLimited();
      fields.pauseMs = pauseMs;
      error = error.with({ retryAfterMs: pauseMs });
    }
    this.#log.warn(fields, '1Password call failed');
    return error;
  }
}

/** Every reference's outcome; the secrets leave their plain strings here, at once. */
function outcomesOf(response: unknown, references: string[]): Map<string, Outcome> {
  const out = new Map<string, Outcome>();
  const individual =
    response &&
    typeof response === 'object' &&
    'individualResponses' in response &&
    typeof response.individualResponses === 'object' &&
    response.individualResponses
      ? (response.individualResponses as Record<string, unknown>)
      : {};
  for (const reference of references) {
    const r = Object.prototype.hasOwnProperty.call(individual, reference) ? individual[reference] : undefined;
    const content = r && typeof r === 'object' ? (r as { content?: unknown }).content : undefined;
    const error = r && typeof r === 'object' ? (r as { error?: unknown }).error : undefined;
    const secret = content && typeof content === 'object' ? (content as { secret?: unknown }).secret : undefined;
    if (typeof secret === 'string') {
      const bytes = Buffer.byteLength(secret, 'utf8');
      out.set(
        reference,
        bytes > MAX_SECRET_BYTES
          ? { kind: 'too-large', bytes }
          : { kind: 'value', value: SecretValue.fromString(secret) },
      );
    } else if (error && typeof error === 'object' && typeof (error as { type?: unknown }).type === 'string') {
      out.set(reference, { kind: 'error', error: { type: (error as { type: string }).type } });
    } else {
      out.set(reference, { kind: 'missing' });
    }
  }
  return out;
}

/** Errors shared by a whole batch name the credential; each caller's copy also names its reference. */
function named(ref: OpRef, err: unknown): BrokerError {
  if (!(err instanceof BrokerError))
    return new BrokerError('SOURCE_ERROR', `${ref.reference}: 1Password failed unexpectedly (${errorName(err)})`);
  if (err.code === 'SHUTTING_DOWN' || err.message.startsWith(ref.reference)) return err;
  return err.with({ message: `${ref.reference}: ${err.message}` });
}
