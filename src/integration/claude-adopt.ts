// `keybroker setup claude --adopt`: the apiKeyHelper Claude Code runs now becomes a keybroker
// profile, and Claude Code's helper becomes keybroker-shim — only once keybroker has fetched the
// same value the old helper prints.
//
//   1. read the helper from the settings file that is to change;
//   2. translate it (helper-translation.ts): a native source where exact, else exec:COMMAND;
//   3. run the old command as keybroker would (exec:), and fetch the native source; compare the
//      two values (constant time, never printed). The old command failing, or the two differing,
//      stops here with nothing changed; only the native source failing (1Password's SDK not
//      enabled, no Vault token in this shell …) falls back to exec: of the command, and says so;
//   4. write the profile into the config (a backup first), have a running daemon reload it, and
//      switch the helper with setupClaude (its backup and undo line), replacing that helper only.
import { FileCheckError } from '../checked-file.js';
import { ConfigError, MAX_CONFIG_BYTES, readConfigFile, type LoadedConfig } from '../config/load.js';
import { configWithProfile, existingProfile, type ProfileEntry } from '../config/profile-edit.js';
import { BrokerError } from '../errors.js';
import type { SecretValue } from '../secret.js';
import { parseSettingsText, readSettingsText, settingsPath, type ClaudeContext } from './claude-settings.js';
import { setupClaude, type SetupClaudeResult } from './claude-setup.js';
import { reloadDaemon, type ReloadOutcome } from './daemon-reload.js';
import { replaceFile, type ReplaceFileResult } from './file-replace.js';
import { describeHelper, HELPER_SETTING, parseKeybrokerHelper } from './helper-command.js';
import { execTranslation, profileNameFor, translateHelper, type HelperTranslation } from './helper-translation.js';
import { fingerprintOf, ProfileChecker } from './profile-check.js';

export interface AdoptOptions extends ClaudeContext {
  /** The keybroker config to add the profile to (created from the starter if missing). */
  configFile: string;
  /** The profile's name; default: "default" if free, else one derived from the source. */
  profile: string | undefined;
  /** Adopt the helper in the project's .claude/settings.json instead of the user's. */
  project: boolean;
  /** Keep the command as it is (exec:), without trying a native source. */
  asExec: boolean;
  dryRun: boolean;
  now: Date;
  /** Absolute path of the shim the helper is to run. */
  shim: string;
  /** The running daemon's socket, to reload it. */
  socket: string;
  /** Says what is about to take time; returns the function that says it is done. */
  progress?: (what: string) => () => void;
}

export interface AdoptPlan {
  settingsFile: string;
  configFile: string;
  /** The old helper, printable (its program only: its arguments may be a key). */
  helper: string;
  profile: string;
  /** What the profile's source is: a native URI, or exec: (never printed whole). */
  source: string;
  translation: HelperTranslation;
  /** The native source failed; the profile keeps the command (exec:) instead. */
  fallback?: { from: string; error: BrokerError };
  /** The profile was in the config already, reading this source. */
  existed: boolean;
  fingerprint: { fingerprint: string; audit: boolean };
  /** Milliseconds each fetch took: the old command, then the native source (when tried). */
  timings: { old: number; native?: number };
}

export type AdoptResult =
  | { status: 'already'; settingsFile: string; profile: string | undefined }
  | {
      status: 'adopted' | 'dry-run';
      plan: AdoptPlan;
      /** The profile the new helper names; undefined: none (the directory picks, else "default"). */
      helperProfile: string | undefined;
      config: ReplaceFileResult | undefined;
      reload: ReloadOutcome | undefined;
      settings: SetupClaudeResult;
    };

export async function adoptHelper(options: AdoptOptions): Promise<AdoptResult> {
  const settingsFile = settingsPath(options, options.project ? 'project' : 'user');
  const helper = await readHelper(settingsFile);
  const ours = parseKeybrokerHelper(helper);
  if (ours) return { status: 'already', settingsFile, profile: ours.profile };

  const checker = new ProfileChecker({ env: options.env, home: options.home });
  try {
    const existing = await readExistingConfig(options.configFile);
    const current = await checker.load(options.configFile, existing ?? 'profiles: {}\n');
    const plan = await planAdoption(options, { helper, settingsFile, existing, current, checker });
    const text = configWithProfile(existing, plan.profile, entryOf(plan), {
      replace: false,
      comment: "adopted from Claude Code's apiKeyHelper (keybroker setup claude --adopt)",
    });
    const loaded = await checker.load(options.configFile, text);
    const unpinned = options.profile === undefined && plan.profile === 'default';
    const helperProfile = unpinned ? undefined : plan.profile;
    const settingsOptions = {
      ...options,
      profile: helperProfile,
      helper: 'api-key' as const,
      managed: false,
      force: false,
      replacing: helper,
      profileTtlMs: helperProfileTtl(loaded, unpinned, plan.profile),
    };
    if (options.dryRun) {
      const settings = await setupClaude({ ...settingsOptions, dryRun: true });
      return { status: 'dry-run', plan, helperProfile, config: undefined, reload: undefined, settings };
    }
    const config =
      text === existing
        ? undefined
        : await replaceFile(options.configFile, text, {
            now: options.now,
            original: existing,
            maxBytes: MAX_CONFIG_BYTES,
          });
    // The daemon learns the profile before Claude Code's helper asks it for it.
    const reload = await reloadDaemon(options.socket);
    const settings = await setupClaude({ ...settingsOptions, dryRun: false });
    return { status: 'adopted', plan, helperProfile, config, reload, settings };
  } finally {
    await checker.close();
  }
}

function entryOf(plan: AdoptPlan): ProfileEntry {
  return plan.fallback || plan.translation.kind === 'exec'
    ? { source: plan.source }
    : { source: plan.source, block: plan.translation.block };
}

async function readHelper(file: string): Promise<string> {
  let text: string;
  try {
    text = await readSettingsText(file);
  } catch (err) {
    if (err instanceof FileCheckError)
      throw new BrokerError('CONFIG_INVALID', err.message, { fix: 'fix it by hand first' });
    const code = (err as NodeJS.ErrnoException).code;
    if (code === 'ENOENT' || code === 'ENOTDIR')
      throw new BrokerError('USAGE', `there is no ${file}, so no apiKeyHelper to adopt`, {
        fix: 'set keybroker up without one: keybroker init',
      });
    throw new BrokerError('CONFIG_INVALID', `cannot read ${file} (${code ?? 'error'})`);
  }
  const parsed = parseSettingsText(text);
  if ('error' in parsed)
    throw new BrokerError('CONFIG_INVALID', `${file} ${parsed.error}`, { fix: 'fix it by hand first' });
  const helper = parsed.data[HELPER_SETTING['api-key']];
  if (helper === undefined || helper === '')
    throw new BrokerError('USAGE', `${file} sets no apiKeyHelper to adopt`, {
      fix: 'set keybroker up without one: keybroker init',
    });
  if (typeof helper !== 'string')
    throw new BrokerError('CONFIG_INVALID', `apiKeyHelper in ${file} is a ${typeof helper}, not a command`, {
      fix: 'fix it by hand first',
    });
  return helper;
}

/** The config's text, or undefined when there is none yet (a new one is then written). */
async function readExistingConfig(file: string): Promise<string | undefined> {
  try {
    return await readConfigFile(file);
  } catch (err) {
    if (err instanceof ConfigError && err.missing) return undefined;
    throw err;
  }
}

interface PlanInput {
  helper: string;
  settingsFile: string;
  existing: string | undefined;
  current: LoadedConfig;
  checker: ProfileChecker;
}

/** Steps 2 and 3: translate, fetch both, compare. Changes nothing. */
async function planAdoption(options: AdoptOptions, input: PlanInput): Promise<AdoptPlan> {
  const { helper, existing, checker } = input;
  const shown = describeHelper(helper);
  const exec = execTranslation(helper, 'asked for with --as-exec');
  const translation = options.asExec ? exec : translateHelper(helper);
  const profile = pickProfileName(input.current, options.profile, translation, exec.source);
  const fetchAs = async (source: ProfileEntry, what: string): Promise<{ value: SecretValue; ms: number }> => {
    const text = configWithProfile(existing, profile, source, { replace: true });
    const done = options.progress?.(what);
    try {
      return await checker.fetch(await checker.load(options.configFile, text), profile);
    } finally {
      done?.();
    }
  };

  let old: { value: SecretValue; ms: number };
  try {
    old = await fetchAs({ source: exec.source }, `running the current apiKeyHelper (${shown}) as keybroker would`);
  } catch (err) {
    const known = err instanceof BrokerError ? err : new BrokerError('SOURCE_ERROR', 'it could not be run');
    throw new BrokerError(
      known.code,
      `the current apiKeyHelper (${shown}) failed, so nothing was changed: ${known.message}`,
      {
        fix:
          known.fix ??
          `make it work first (Claude Code runs it with: sh -c), or set keybroker up without it: keybroker init`,
      },
    );
  }
  const plan: AdoptPlan = {
    settingsFile: input.settingsFile,
    configFile: options.configFile,
    helper: shown,
    profile,
    source: translation.source,
    translation,
    existed: existingProfile(existing ?? '', profile) !== undefined,
    fingerprint: await fingerprintOf(old.value, options.env, options.home),
    timings: { old: old.ms },
  };
  if (translation.kind === 'exec') return plan;

  let native: { value: SecretValue; ms: number };
  try {
    native = await fetchAs(
      { source: translation.source, block: translation.block },
      `reading ${translation.source} ${waitingFor(translation.source)}`,
    );
  } catch (err) {
    const error = err instanceof BrokerError ? err : new BrokerError('SOURCE_ERROR', 'the source could not be read');
    return { ...plan, source: exec.source, fallback: { from: translation.source, error } };
  }
  plan.timings.native = native.ms;
  if (!native.value.equals(old.value))
    throw new BrokerError(
      'MISMATCH',
      `${translation.source} serves another value than the current apiKeyHelper (${shown}), so nothing was changed`,
      { fix: 'keep the command as it is with: keybroker setup claude --adopt --as-exec' },
    );
  return plan;
}

/** What a native source's fetch may wait for, said while it does. */
export function waitingFor(source: string): string {
  if (source.startsWith('op://'))
    return 'from 1Password (the desktop app may ask you to approve keybroker; the first read can take a few seconds)';
  if (source.startsWith('vault://')) return 'from Vault';
  if (source.startsWith('aws-sm://')) return 'from AWS Secrets Manager';
  if (source.startsWith('keyring:')) return 'from the keychain (it may ask you to unlock it)';
  return '';
}

/**
 * --profile, else "default" when free, else a name from the source (its item or path), numbered
 * when that is taken. A profile that already reads one of the candidate sources is reused; one
 * that reads anything else is never overwritten: a --profile naming it is refused.
 */
function pickProfileName(
  config: LoadedConfig,
  requested: string | undefined,
  translation: HelperTranslation,
  execSource: string,
): string {
  const fits = (name: string): boolean => {
    const p = config.profiles.get(name);
    return !p || (p.managedBy === undefined && (p.source === translation.source || p.source === execSource));
  };
  if (requested !== undefined) {
    if (fits(requested)) return requested;
    const p = config.profiles.get(requested)!;
    throw new BrokerError(
      'USAGE',
      p.managedBy !== undefined
        ? `profile "${requested}" is defined by the managed config ${p.managedBy}`
        : `profile "${requested}" is already in ${config.file} and reads another source; keybroker does not overwrite it`,
      { fix: 'pick another name with --profile' },
    );
  }
  if (fits('default')) return 'default';
  const base = profileNameFor(translation);
  for (let n = 1; n < 100; n++) {
    const name = n === 1 ? base : `${base}-${n}`;
    if (fits(name)) return name;
  }
  throw new BrokerError('USAGE', 'no free profile name found', { fix: 'name one with --profile' });
}

/** The TTL setupClaude sizes the helper's by: the profile's, or (unpinned) the shortest a project can get. */
function helperProfileTtl(config: LoadedConfig, unpinned: boolean, profile: string): number | undefined {
  if (!unpinned) return config.profiles.get(profile)?.ttlMs;
  const names = new Set(['default', ...config.directories.map((d) => d.profile)]);
  const ttls = [...config.profiles.values()].filter((p) => names.has(p.name)).map((p) => p.ttlMs);
  return ttls.length > 0 ? Math.min(...ttls) : undefined;
}
