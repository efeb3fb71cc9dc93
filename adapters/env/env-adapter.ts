// env: — a variable from the daemon's own environment.
//
//   profiles:
//     ci:
//       source: env:ANTHROPIC_API_KEY
//
// Options: none. The daemon reads its environment at each fetch; a service started by systemd or
// launchd sees only the variables its unit sets (Environment= / EnvironmentVariables).
import { ENV_VAR_NAME, type Adapter, type AdapterInit, type FetchResult } from '../../src/adapter.js';
import { BrokerError } from '../../src/errors.js';
import { SecretValue } from '../../src/secret.js';

interface EnvRef {
  name: string;
}

export function createAdapter(init: AdapterInit): Adapter<EnvRef> {
  return {
    kind: 'env',
    parse(uri) {
      const name = uri.slice('env:'.length);
      if (!ENV_VAR_NAME.test(name)) {
        throw new BrokerError(
          'CONFIG_INVALID',
          'not a valid env source: write env:NAME, where NAME is a variable name such as ANTHROPIC_API_KEY',
        );
      }
      return { name };
    },
    describe: (ref) => `env:${ref.name}`,
    secretLocations: (ref) => ({ files: [], env: [ref.name] }),
    async fetch(ref): Promise<FetchResult> {
      const value = init.env[ref.name];
      if (value === undefined || value === '') {
        throw new BrokerError(
          'NOT_FOUND',
          `environment variable ${ref.name} is not set in the daemon's environment (a service sees only the variables its unit sets)`,
        );
      }
      return { value: SecretValue.fromString(value) };
    },
    async close() {},
  };
}
