// Source kinds by URI scheme. Each adapter module is loaded with import() only when a profile
// uses its scheme, so an unused SDK never costs start-up time or memory.
import type { AdapterModule } from '../src/adapter.js';

export interface AdapterEntry {
  scheme: string;
  /** The config block (top level and per profile) holding this adapter's settings. */
  configKey?: string;
  summary: string;
  /** Honours a profile's `output: json` (the source prints {"value", "expiresAt"}). */
  jsonOutput?: boolean;
  /** Runs other programs: gets the variables env: profiles read (ParseOptions.secretEnv), to withhold. */
  childEnv?: boolean;
  load(): Promise<AdapterModule>;
}

export const ADAPTERS: Readonly<Record<string, AdapterEntry>> = {
  env: {
    scheme: 'env',
    summary: 'env:NAME — an environment variable of the daemon',
    load: () => import('./env/env-adapter.js'),
  },
  file: {
    scheme: 'file',
    summary: 'file:PATH — a file only you can read, re-read on refresh',
    load: () => import('./file/file-adapter.js'),
  },
  keyring: {
    scheme: 'keyring',
    summary:
      'keyring:NAME — the OS keychain (macOS Keychain, a Linux Secret Service); keyring://SERVICE/ACCOUNT for an entry another tool wrote',
    load: () => import('./keyring/keyring-adapter.js'),
  },
  exec: {
    scheme: 'exec',
    configKey: 'exec',
    summary: 'exec:COMMAND — any command that prints the key (op read, aws, vault, pass, …)',
    jsonOutput: true,
    childEnv: true,
    load: () => import('./exec/exec-adapter.js'),
  },
  vault: {
    scheme: 'vault',
    configKey: 'vault',
    summary: 'vault://MOUNT/PATH#FIELD — HashiCorp Vault KV v1/v2 (token or AppRole auth)',
    load: () => import('./vault/vault-adapter.js'),
  },
  'aws-sm': {
    scheme: 'aws-sm',
    configKey: 'aws',
    summary: 'aws-sm://SECRET-ID#JSON-KEY — AWS Secrets Manager (the SDK credential chain)',
    load: () => import('./aws-secrets-manager/aws-secrets-manager-adapter.js'),
  },
  op: {
    scheme: 'op',
    configKey: 'onepassword',
    summary: 'op://VAULT/ITEM/FIELD — 1Password (desktop app or service account)',
    load: () => import('./onepassword/onepassword-adapter.js'),
  },
  'aws-credentials': {
    scheme: 'aws-credentials',
    configKey: 'aws',
    summary: 'aws-credentials://PROFILE — AWS credentials for awsCredentialExport',
    load: () => import('./aws-credentials/aws-credentials-adapter.js'),
  },
};

export function adapterFor(scheme: string): AdapterEntry | undefined {
  return Object.prototype.hasOwnProperty.call(ADAPTERS, scheme) ? ADAPTERS[scheme] : undefined;
}

/** Config keys that hold adapter settings (`vault:`, `aws:`, …). */
export function adapterConfigKeys(): string[] {
  return [...new Set(Object.values(ADAPTERS).flatMap((a) => (a.configKey ? [a.configKey] : [])))];
}
