// Placeholder until the aws-credentials adapter lands: profiles using aws-credentials: fail with a clear error.
import type { Adapter, AdapterInit } from '../../src/adapter.js';
import { BrokerError } from '../../src/errors.js';

export function createAdapter(_init: AdapterInit): Adapter<string> {
  const missing = (): BrokerError => new BrokerError('CONFIG_INVALID', 'the aws-credentials: source is not available in this build of keybroker yet');
  return {
    kind: 'aws-credentials',
    parse() {
      throw missing();
    },
    describe: (ref) => ref,
    async fetch() {
      throw missing();
    },
    async close() {},
  };
}
