// A fake 1Password SDK client: the `client.secrets.resolve` / `resolveAll` surface of
// @1password/sdk 0.5.0 over an in-memory account. The real SDK talks only to 1Password's service,
// which cannot be reached from test machines, so this stands in for the service *behind* the SDK's
// surface, answering the way SDK 0.5.0 does:
//
// - resolveAll returns { individualResponses: { [reference]: { content: { secret, itemId, vaultId } }
//   | { error: { type: "vaultNotFound" | "itemNotFound" | … } } } } (dist/types.d.ts);
// - resolve throws a plain Error with the core's message for a reference it cannot resolve;
// - call-wide failures are thrown through the SDK's own `throwError`, which turns the core's
//   {"name","message"} payload into RateLimitExceededError, DesktopSessionExpiredError,
//   AuthExpiredError or a plain Error (dist/errors.js) — the real classes, not look-alikes.
//
// Vaults, items and fields match by name or ID, as 1Password does; sections likewise.
import { randomBytes } from 'node:crypto';
import {
  Secrets,
  throwError,
  type ResolveAllResponse,
  type ResolveReferenceError,
  type ResolvedReference,
  type Response,
} from '@1password/sdk';

export type FakeFailure =
  | 'rate-limit'
  | 'auth-expired'
  | 'desktop-session-expired'
  | 'bad-token'
  | 'not-authenticated'
  | 'forbidden'
  | 'network'
  | 'no-desktop-app'
  | 'strange';

interface FakeField {
  id: string;
  label: string;
  section?: { id: string; label: string };
  value: string;
  kind: 'concealed' | 'otp';
}

interface FakeItem {
  id: string;
  title: string;
  fields: FakeField[];
}

interface FakeVault {
  id: string;
  name: string;
  items: FakeItem[];
}

/** The core's messages for reference failures (strings of @1password/sdk-core 0.5.0). */
const CORE_MESSAGES: Record<string, string> = {
  vaultNotFound: 'no vault matched the secret reference query',
  tooManyVaults: 'more than one vault matched the secret reference query',
  itemNotFound: 'no item matched the secret reference query',
  tooManyItems: 'more than one item matched the secret reference query',
  noMatchingSections: 'no section matched the secret reference',
  fieldNotFound: 'the specified field cannot be found within the item',
  tooManyMatchingFields: 'more than one field matched the secret reference',
  incompatibleTOTPQueryParameterField: 'TOTP attribute can only be applied to TOTP-type fields',
};

export class FakeOnePasswordClient {
  readonly calls = { resolve: 0, resolveAll: 0, references: 0 };
  /** Every resolveAll's argument, in order. */
  readonly batches: string[][] = [];
  /** Delay before every answer, to let callers time out or pile up. */
  delayMs = 0;
  readonly #vaults: FakeVault[] = [];
  readonly #failures: FakeFailure[] = [];
  #failAlways: FakeFailure | undefined;
  #gate: Promise<void> | undefined;
  /** Text a failure may quote, as the real core quotes a rejected token. */
  readonly #credentialText: string;

  readonly secrets = {
    resolve: async (secretReference: string): Promise<string> => {
      this.calls.resolve++;
      this.calls.references++;
      await this.#answerDelay();
      this.#maybeFail();
      const r = this.#resolveOne(secretReference);
      if (r.error)
        throwError(
          JSON.stringify({ name: 'ResolvingSecretReference', message: CORE_MESSAGES[r.error.type] ?? r.error.type }),
        );
      return r.content!.secret;
    },
    resolveAll: async (secretReferences: string[]): Promise<ResolveAllResponse> => {
      this.calls.resolveAll++;
      this.calls.references += secretReferences.length;
      this.batches.push([...secretReferences]);
      await this.#answerDelay();
      this.#maybeFail();
      const individualResponses: Record<string, Response<ResolvedReference, ResolveReferenceError>> = {};
      for (const ref of secretReferences) individualResponses[ref] = this.#resolveOne(ref);
      return { individualResponses };
    },
  };

  /** `credentialText` is what a failure message may quote (a real core quotes the bad token). */
  constructor(options: { credentialText?: string } = {}) {
    this.#credentialText = options.credentialText ?? 'ops_fake';
  }

  /** Create or rotate a field (creating its vault and item as needed). */
  setField(
    vault: string,
    item: string,
    field: string,
    value: string,
    options: { section?: string; kind?: FakeField['kind'] } = {},
  ): void {
    const v =
      this.#vaults.find((x) => x.name === vault) ?? this.#push(this.#vaults, { id: fakeId(), name: vault, items: [] });
    const i = v.items.find((x) => x.title === item) ?? this.#push(v.items, { id: fakeId(), title: item, fields: [] });
    const f = i.fields.find((x) => x.label === field && x.section?.label === options.section);
    if (f) {
      f.value = value;
      return;
    }
    const entry: FakeField = { id: fakeId(), label: field, value, kind: options.kind ?? 'concealed' };
    if (options.section) entry.section = { id: fakeId(), label: options.section };
    i.fields.push(entry);
  }

  /** Add a second item with the same title (1Password allows it; references become ambiguous). */
  duplicateItem(vault: string, item: string): void {
    const v = this.#vaults.find((x) => x.name === vault);
    const i = v?.items.find((x) => x.title === item);
    if (!v || !i) throw new Error(`no item ${vault}/${item} to duplicate`);
    v.items.push({ id: fakeId(), title: i.title, fields: i.fields.map((f) => ({ ...f, id: fakeId() })) });
  }

  idsOf(vault: string, item: string): { vaultId: string; itemId: string } {
    const v = this.#vaults.find((x) => x.name === vault);
    const i = v?.items.find((x) => x.title === item);
    if (!v || !i) throw new Error(`no item ${vault}/${item}`);
    return { vaultId: v.id, itemId: i.id };
  }

  /** Fail the next `times` calls (resolve or resolveAll) as the SDK would. */
  failNext(failure: FakeFailure, times = 1): void {
    for (let n = 0; n < times; n++) this.#failures.push(failure);
  }

  /** Fail every call from now on (undefined: stop). */
  failAlways(failure: FakeFailure | undefined): void {
    this.#failAlways = failure;
  }

  /** Hold every call until the returned function is called. */
  hold(): () => void {
    let release!: () => void;
    this.#gate = new Promise<void>((r) => (release = r));
    return () => {
      this.#gate = undefined;
      release();
    };
  }

  async #answerDelay(): Promise<void> {
    if (this.#gate) await this.#gate;
    if (this.delayMs > 0) await new Promise((r) => setTimeout(r, this.delayMs));
  }

  #maybeFail(): void {
    const failure = this.#failures.shift() ?? this.#failAlways;
    if (failure === undefined) return;
    const core = (name: string, message: string): never => throwError(JSON.stringify({ name, message }));
    switch (failure) {
      case 'rate-limit':
        core('RateLimitExceeded', 'rate limit exceeded');
        break;
      case 'auth-expired':
        core('AuthExpired', 'authentication expired');
        break;
      case 'desktop-session-expired':
        core('DesktopSessionExpired', 'session expired');
        break;
      case 'bad-token':
        core('Auth', `bad service account token, please rotate it: ${this.#credentialText}`);
        break;
      case 'not-authenticated':
        core('Auth', 'you are not authenticated');
        break;
      case 'forbidden':
        core('ItemApi', "you don't have the right permissions to access this resource");
        break;
      case 'network':
        core('Internal', 'error sending request for url (https://my.1password.com/api/v2/vault): connection refused');
        break;
      case 'no-desktop-app':
        throw new Error('Native library is not available.');
      case 'strange':
        core('Internal', `unexpected server reply echoing ${this.#credentialText}`);
        break;
    }
  }

  #resolveOne(reference: string): Response<ResolvedReference, ResolveReferenceError> {
    try {
      Secrets.validateSecretReference(reference);
    } catch (err) {
      return { error: { type: 'parsing', message: String(err) } };
    }
    const [pathPart, query] = reference.slice('op://'.length).split('?', 2) as [string, string | undefined];
    const segs = pathPart.split('/');
    const [vaultQ, itemQ] = segs as [string, string];
    const sectionQ = segs.length === 4 ? segs[2] : undefined;
    const fieldQ = segs[segs.length - 1]!;
    const vaults = this.#vaults.filter((v) => v.name === vaultQ || v.id === vaultQ);
    if (vaults.length === 0) return { error: { type: 'vaultNotFound' } };
    if (vaults.length > 1) return { error: { type: 'tooManyVaults' } };
    const vault = vaults[0]!;
    const items = vault.items.filter((i) => i.title === itemQ || i.id === itemQ);
    if (items.length === 0) return { error: { type: 'itemNotFound' } };
    if (items.length > 1) return { error: { type: 'tooManyItems' } };
    const item = items[0]!;
    let fields = item.fields;
    if (sectionQ !== undefined) {
      fields = fields.filter((f) => f.section && (f.section.label === sectionQ || f.section.id === sectionQ));
      if (fields.length === 0) return { error: { type: 'noMatchingSections' } };
    }
    const matching = fields.filter((f) => f.label === fieldQ || f.id === fieldQ);
    if (matching.length === 0) return { error: { type: 'fieldNotFound' } };
    if (matching.length > 1) return { error: { type: 'tooManyMatchingFields' } };
    const field = matching[0]!;
    const wantsOtp = query === 'attribute=otp' || query === 'attribute=totp';
    if (wantsOtp && field.kind !== 'otp') return { error: { type: 'incompatibleTOTPQueryParameterField' } };
    return { content: { secret: field.value, itemId: item.id, vaultId: vault.id } };
  }

  #push<T>(list: T[], value: T): T {
    list.push(value);
    return value;
  }
}

function fakeId(): string {
  // 1Password IDs are 26 lowercase base-32 characters.
  const alphabet = 'abcdefghijklmnopqrstuvwxyz234567';
  return [...randomBytes(26)].map((b) => alphabet[b % 32]).join('');
}
