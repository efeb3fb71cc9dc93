// The contract every adapter passes (teller's shared provider suite, in vitest). Each adapter's
// test file calls describeAdapterContract with a fixture that can write to its backend — a real
// environment, file or command for the built-in sources; a fake server speaking the backend's
// wire protocol for Vault, AWS Secrets Manager and 1Password.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import path from 'node:path';
import { inspect } from 'node:util';
import { ENV_VAR_NAME, type Adapter, type FetchContext, type FetchReason } from '../../src/adapter.js';
import { BrokerError } from '../../src/errors.js';
import { createLogger } from '../../src/log.js';

export interface ContractFixture {
  adapter: Adapter;
  /** A source URI for the secret called `name` (created by put). */
  uriFor(name: string): string;
  /** Create or rotate the secret called `name` at the backend. */
  put(name: string, value: string): Promise<void>;
  /** A well-formed URI for a secret that does not exist. */
  missingUri: string;
  /** URIs the adapter must refuse at parse time with CONFIG_INVALID. */
  invalidUris: string[];
  /** Profile override block passed to parse, if the adapter needs one. */
  overrides?: Record<string, unknown>;
  cleanup?(): Promise<void>;
}

export function fetchContext(overrides: Partial<FetchContext> = {}, reason: FetchReason = 'miss'): FetchContext {
  return {
    signal: new AbortController().signal,
    profile: 'contract',
    reason,
    log: createLogger({ level: 'silent' }),
    ...overrides,
  };
}

export function describeAdapterContract(kind: string, setup: () => Promise<ContractFixture>): void {
  describe(`adapter contract: ${kind}`, () => {
    let fx: ContractFixture;
    const secretA = `kb-contract-${kind}-A-7f3a9c`;
    const secretB = `kb-contract-${kind}-B-21d4e8`;

    beforeAll(async () => {
      fx = await setup();
      await fx.put('alpha', secretA);
    });
    afterAll(async () => {
      await fx.adapter.close();
      await fx.cleanup?.();
    });

    const parse = async (uri: string) => fx.adapter.parse(uri, { overrides: fx.overrides, profile: 'contract' });

    it('reports its kind', () => {
      expect(fx.adapter.kind).toBe(kind);
    });

    it('fetches the value a URI names', async () => {
      const ref = await parse(fx.uriFor('alpha'));
      const result = await fx.adapter.fetch(ref, fetchContext());
      expect(result.value.reveal()).toBe(secretA);
    });

    it('picks up a rotated value on the next fetch', async () => {
      const ref = await parse(fx.uriFor('alpha'));
      await fx.put('alpha', secretB);
      try {
        expect((await fx.adapter.fetch(ref, fetchContext())).value.reveal()).toBe(secretB);
      } finally {
        await fx.put('alpha', secretA);
      }
    });

    it('describes a reference without the value', async () => {
      const ref = await parse(fx.uriFor('alpha'));
      const description = fx.adapter.describe(ref);
      expect(description.length).toBeGreaterThan(0);
      expect(description).not.toContain(secretA);
    });

    it('names where its secrets sit, if it can, as absolute paths and variable names, never a value', async () => {
      const ref = await parse(fx.uriFor('alpha'));
      const where = fx.adapter.secretLocations?.(ref);
      if (where === undefined) return;
      for (const f of where.files) expect(path.isAbsolute(f)).toBe(true);
      for (const e of where.env) expect(e).toMatch(ENV_VAR_NAME);
      expect(JSON.stringify(where)).not.toContain(secretA);
    });

    it('keeps the value out of JSON, inspect and string conversion', async () => {
      const ref = await parse(fx.uriFor('alpha'));
      const result = await fx.adapter.fetch(ref, fetchContext());
      expect(JSON.stringify(result)).not.toContain(secretA);
      expect(inspect(result, { depth: 10 })).not.toContain(secretA);
      expect(`${result.value}`).not.toContain(secretA);
    });

    it('fails a missing secret with NOT_FOUND and no value in the message', async () => {
      const ref = await parse(fx.missingUri);
      const err = await fx.adapter.fetch(ref, fetchContext()).then(
        () => undefined,
        (e: unknown) => e,
      );
      expect(err).toBeInstanceOf(BrokerError);
      expect((err as BrokerError).code).toBe('NOT_FOUND');
      expect((err as BrokerError).message).not.toContain(secretA);
    });

    it('refuses malformed URIs at parse time with CONFIG_INVALID', async () => {
      expect(fx.invalidUris.length).toBeGreaterThan(0);
      for (const uri of fx.invalidUris) {
        const err = await parse(uri).then(
          () => undefined,
          (e: unknown) => e,
        );
        expect(err, uri).toBeInstanceOf(BrokerError);
        expect((err as BrokerError).code, uri).toBe('CONFIG_INVALID');
      }
    });

    it('gives up at once on an aborted signal', async () => {
      const ref = await parse(fx.uriFor('alpha'));
      const controller = new AbortController();
      controller.abort(new BrokerError('TIMEOUT', 'contract: aborted'));
      const started = Date.now();
      const outcome = await fx.adapter.fetch(ref, fetchContext({ signal: controller.signal })).then(
        () => 'resolved',
        (e: unknown) => e,
      );
      // Resolving is allowed for sources that answer synchronously; hanging is not.
      expect(Date.now() - started).toBeLessThan(2000);
      if (outcome !== 'resolved') expect(outcome).toBeInstanceOf(BrokerError);
    });
  });
}
