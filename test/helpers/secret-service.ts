// The keychain tests' Secret Service: bench/secret-service.ts starts it (the bench uses it too);
// here, whether the tests can run, said once per test file that asks, and a start that stops it
// again when the test (or file) that started it is done.
import { secretServiceMissing, startSecretService as startService } from '../../bench/secret-service.js';
import type { SecretService } from '../../bench/secret-service.js';
import { cleanUp, privateTempDir } from './cleanup.js';

export { KEYRING_PASSWORD, startBus, type SecretService } from '../../bench/secret-service.js';

/** Why the Secret Service tests skip here, or undefined when they run. */
export const SECRET_SERVICE_SKIP: string | undefined = secretServiceMissing();
if (SECRET_SERVICE_SKIP) console.log(`skipping the Secret Service tests: ${SECRET_SERVICE_SKIP}`);

/** A Secret Service (its own session bus and unlocked keyring) in `dir`, by default a private one. */
export async function startSecretService(dir = privateTempDir('kb-ss-')): Promise<SecretService> {
  const service = await startService(dir);
  cleanUp(() => service.stop());
  return service;
}
