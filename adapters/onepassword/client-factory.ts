// The one place that loads @1password/sdk. Importing it instantiates the SDK's WASM core (about a
// second and tens of MB), so it happens with import() on first use: when an op:// reference is
// validated or a client is created — never when the adapter is merely constructed.
//
// The adapter talks to 1Password through the small OnePasswordClient surface below, created by a
// ClientFactory. The real factory wraps createClient; tests pass a factory that returns a fake
// client speaking the same surface (the SDK only talks to 1Password's own service).
import type { ResolveAllResponse } from '@1password/sdk';
import { BrokerError } from '../../src/errors.js';
import type { SecretValue } from '../../src/secret.js';

export type Sdk = typeof import('@1password/sdk');

/** What the adapter uses of an SDK client: `client.secrets.resolve` / `resolveAll`. */
export interface OnePasswordClient {
  secrets: {
    resolve(secretReference: string): Promise<string>;
    resolveAll(secretReferences: string[]): Promise<ResolveAllResponse>;
  };
}

export type OnePasswordAuth =
  { kind: 'service-account'; token: SecretValue; label: string } | { kind: 'desktop'; account: string; label: string };

export type ClientFactory = (auth: OnePasswordAuth) => OnePasswordClient | Promise<OnePasswordClient>;

/** Shown by 1Password in its authorisation prompt and activity log. Kept equal to package.json. */
export const INTEGRATION_NAME = 'keybroker';
export const INTEGRATION_VERSION = '0.1.0';

let sdk: Promise<Sdk> | undefined;

export function loadSdk(): Promise<Sdk> {
  sdk ??= import('@1password/sdk').catch((err: unknown) => {
    sdk = undefined;
    const name = err instanceof Error ? err.name : typeof err;
    throw new BrokerError(
      'CONFIG_INVALID',
      `the 1Password SDK (@1password/sdk) could not be loaded (${name}): is the install complete? try: npm ci`,
    );
  });
  return sdk;
}

/** The real factory: one SDK client per credential, authorised once and reused. */
export const sdkClientFactory: ClientFactory = async (auth) => {
  const { createClient, DesktopAuth } = await loadSdk();
  return createClient({
    // The token leaves its SecretValue only here, straight into the SDK.
    auth: auth.kind === 'desktop' ? new DesktopAuth(auth.account) : auth.token.reveal(),
    integrationName: INTEGRATION_NAME,
    integrationVersion: INTEGRATION_VERSION,
  });
};
