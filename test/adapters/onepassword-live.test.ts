// Opt-in: the op: adapter against real 1Password, through the real SDK. Runs only when both are set:
//   OP_SERVICE_ACCOUNT_TOKEN   a service account token that can read the reference below
//   KEYBROKER_TEST_OP_REF      an op:// reference to a non-empty test field, e.g. op://CI/keybroker-test/credential
// It reads that field (two reads: one value, one deliberately missing field of the same item).
import { describe, expect, it } from 'vitest';
import { createAdapter } from '../../adapters/onepassword/onepassword-adapter.js';
import { BrokerError } from '../../src/errors.js';
import { fetchContext } from '../contract/adapter-contract.js';
import { capturedLog } from '../helpers/captured-log.js';

const token = process.env.OP_SERVICE_ACCOUNT_TOKEN ?? '';
const reference = process.env.KEYBROKER_TEST_OP_REF ?? '';

describe('op: against real 1Password (opt-in)', () => {
  it.skipIf(token === '' || reference === '')(
    'resolves KEYBROKER_TEST_OP_REF and reports a missing field as NOT_FOUND, leaking nothing',
    async () => {
      const captured = capturedLog('debug');
      const adapter = createAdapter({
        settings: undefined,
        env: { OP_SERVICE_ACCOUNT_TOKEN: token },
        log: captured.log,
      });
      try {
        const ref = await adapter.parse(reference, { overrides: undefined, profile: 'live' });
        const signal = AbortSignal.timeout(30_000);
        const result = await adapter.fetch(ref, fetchContext({ signal, profile: 'live' }));
        const value = result.value.reveal();
        expect(value.length).toBeGreaterThan(0);

        const base = reference.split('?')[0]!;
        const missing = `${base.slice(0, base.lastIndexOf('/'))}/keybroker-no-such-field-5c2a`;
        const missingRef = await adapter.parse(missing, { overrides: undefined, profile: 'live' });
        const err = await adapter.fetch(missingRef, fetchContext({ signal, profile: 'live' })).then(
          () => undefined,
          (e: unknown) => e,
        );
        expect(err).toBeInstanceOf(BrokerError);
        expect((err as BrokerError).code).toBe('NOT_FOUND');

        const status = adapter.status!().join('\n');
        expect(status).toContain('2 reads in the last hour');
        for (const text of [captured.text(), status, (err as BrokerError).message]) {
          expect(text).not.toContain(token);
          expect(text).not.toContain(value);
        }
      } finally {
        await adapter.close();
      }
    },
  );
});
