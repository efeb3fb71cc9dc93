// The suite's own plumbing: NODE_EXTRA_CA_CERTS is kept out of what the tests spawn, and given back
// to what reaches the npm registry (test/helpers/extra-ca-certs.ts).
import { expect, it } from 'vitest';
import { keepExtraCaCertsAside, registryEnv } from '../helpers/extra-ca-certs.js';

it('moves the variable aside once, and gives it back only to whoever asks for the registry', () => {
  const env: NodeJS.ProcessEnv = { NODE_EXTRA_CA_CERTS: '/etc/ssl/certs/bundle.crt', PATH: '/bin' };
  keepExtraCaCertsAside(env);
  keepExtraCaCertsAside(env); // each test file's setup runs it again in the same worker
  expect(env.NODE_EXTRA_CA_CERTS).toBeUndefined();
  expect(registryEnv(env)).toEqual({ NODE_EXTRA_CA_CERTS: '/etc/ssl/certs/bundle.crt' });
  expect(registryEnv({ PATH: '/bin' })).toEqual({});
});
