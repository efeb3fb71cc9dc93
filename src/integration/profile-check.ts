// The one deliberate fetch `keybroker init` and `setup claude --adopt` make before they change
// anything: load the config as it would be written, and fetch one profile through its adapter,
// here in this process.
//
// In-process rather than through the daemon: at a first run there is usually no daemon yet (and
// starting one for a config not yet written would serve it before it is checked); the value
// goes nowhere but a comparison and a keyed fingerprint, so it never enters a daemon's cache,
// audit trail or forced-fetch budget (issue 19: "the checks that init and --adopt make are
// deliberate and do not spend the budget" — the budget is the daemon's, and this never asks it).
// The environment is this shell's, which is what a daemon the shim autostarts from Claude Code
// inherits; a service's daemon sees its unit's, which doctor checks afterwards.
import { adapterFor } from '../../adapters/registry.js';
import { AdapterPool } from '../adapter-pool.js';
import { auditDir } from '../audit/audit-record.js';
import { loadAuditSalt } from '../audit/audit-log.js';
import { loadConfig, type LoadedConfig, type ResolvedProfile } from '../config/load.js';
import { resolveManagedConfigPath } from '../config/managed.js';
import { BrokerError } from '../errors.js';
import { createLogger, type Logger } from '../log.js';
import { SecretValue } from '../secret.js';
import { randomBytes } from 'node:crypto';
import { performance } from 'node:perf_hooks';

/**
 * A check may wait for a person (a 1Password approval, a keychain unlock prompt): it gets at least
 * this long, whatever the profile's own timeout.
 */
export const CHECK_MIN_TIMEOUT_MS = 60_000;

export interface CheckedValue {
  value: SecretValue;
  ms: number;
  /** The source as the adapter describes it (never a value). */
  description: string;
}

/** Adapters for one run of checks: load() a config's text, fetch() its profiles, then close(). */
export class ProfileChecker {
  readonly #pool: AdapterPool;
  readonly #env: NodeJS.ProcessEnv;
  readonly #home: string | undefined;
  readonly #log: Logger;

  constructor(options: { env: NodeJS.ProcessEnv; home?: string; log?: Logger }) {
    this.#env = options.env;
    this.#home = options.home;
    this.#log = options.log ?? createLogger({ level: 'silent' });
    this.#pool = new AdapterPool({ find: adapterFor, env: options.env, log: this.#log });
  }

  /** The config at `file` as if it held `text` (with the managed config, as the daemon loads it). */
  load(file: string, text: string): Promise<LoadedConfig> {
    return loadConfig(file, this.#pool.acquire, this.#home, {
      managed: resolveManagedConfigPath({ env: this.#env }),
      text,
    });
  }

  /** Fetch profile `name` of `config` once, as the daemon would, and check it is a usable key. */
  async fetch(config: LoadedConfig, name: string): Promise<CheckedValue> {
    const profile = config.profiles.get(name);
    if (!profile) throw new BrokerError('UNKNOWN_PROFILE', `no profile "${name}" in ${config.file}`);
    if (profile.managedBy !== undefined)
      throw new BrokerError(
        'USAGE',
        `profile "${name}" is defined by the managed config ${profile.managedBy}, which wins over yours`,
        { fix: 'pick another name with --profile' },
      );
    const adapter = await this.#pool.acquire(profile.scheme, profile.settings);
    const ref = await adapter.parse(profile.source, parseOptions(profile));
    const description = adapter.describe(ref);
    const started = performance.now();
    const result = await adapter.fetch(ref, {
      signal: AbortSignal.timeout(Math.max(profile.timeoutMs, CHECK_MIN_TIMEOUT_MS)),
      profile: name,
      reason: 'check',
      log: this.#log,
    });
    const ms = Math.round(performance.now() - started);
    checkUsable(result.value, description, profile.multiline ?? false);
    return { value: result.value, ms, description };
  }

  close(): Promise<void> {
    return this.#pool.closeAll();
  }
}

function parseOptions(profile: ResolvedProfile) {
  return {
    overrides: profile.overrides,
    profile: profile.name,
    output: profile.output,
    ...(profile.locked && { locked: profile.locked }),
    ...(profile.secretEnv && { secretEnv: profile.secretEnv }),
  };
}

/** What the daemon's cache would refuse to serve (see ProfileCache): said now, not at the first call. */
function checkUsable(value: SecretValue, description: string, multiline: boolean): void {
  if (value.byteLength === 0) throw new BrokerError('INVALID_VALUE', `${description} returned an empty value`);
  if (!value.isText()) throw new BrokerError('INVALID_VALUE', `${description} returned bytes that are not UTF-8 text`);
  if (value.lineCount() > 1 && !multiline)
    throw new BrokerError(
      'INVALID_VALUE',
      `${description} returned ${value.lineCount()} lines, and a key is one line`,
      {
        fix: 'make the source print only the key',
      },
    );
}

/**
 * The value's fingerprint as the audit trail records it (HMAC under the trail's salt, 12 hex
 * digits), so `keybroker audit` later shows the same one; `audit` false when the salt could not be
 * had and the fingerprint is keyed for this run only.
 */
export async function fingerprintOf(
  value: SecretValue,
  env: NodeJS.ProcessEnv,
  home: string,
): Promise<{ fingerprint: string; audit: boolean }> {
  try {
    const salt = await loadAuditSalt(auditDir(env, process.platform, home));
    return { fingerprint: value.keyedFingerprint(salt), audit: true };
  } catch {
    return { fingerprint: value.keyedFingerprint(randomBytes(32)), audit: false };
  }
}
