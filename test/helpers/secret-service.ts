// The keychain tests' Secret Service: bench/secret-service.ts starts it (the bench uses it too);
// here, only whether the tests can run, said once per test file that asks.
import { secretServiceMissing } from '../../bench/secret-service.js';

export { KEYRING_PASSWORD, startBus, startSecretService, type SecretService } from '../../bench/secret-service.js';

/** Why the Secret Service tests skip here, or undefined when they run. */
export const SECRET_SERVICE_SKIP: string | undefined = secretServiceMissing();
if (SECRET_SERVICE_SKIP) console.log(`skipping the Secret Service tests: ${SECRET_SERVICE_SKIP}`);
