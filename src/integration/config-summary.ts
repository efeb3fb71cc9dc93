// What `setup claude` and `doctor` need from the keybroker config: each profile's source kind and
// TTL. Read offline from the YAML alone (no adapter is loaded), so a source kind that is broken or
// mid-upgrade does not stop `setup claude` from reading the TTL of the profile it is wiring up.
import {
  ConfigError,
  parseConfigText,
  parseManagedConfigText,
  readConfigFile,
  type LoadedConfig,
} from '../config/load.js';
import { readManagedConfigFile, type ManagedLocation } from '../config/managed.js';
import { DEFAULTS, type RawConfig } from '../config/schema.js';
import { parseSourceUri } from '../config/source-uri.js';
import { BrokerError } from '../errors.js';
import { renderError } from '../protocol/messages.js';

export interface ProfileSummary {
  name: string;
  /** The source URI as written. Only printed through its scheme: exec: commands may hold anything. */
  source: string;
  scheme: string | undefined;
  ttlMs: number;
  /** How long the daemon waits for the source (the profile's `timeout`). */
  timeoutMs: number;
}

export type ConfigSummary =
  | { ok: true; file: string; profiles: ProfileSummary[]; directories: Record<string, string> }
  | { ok: false; file: string; missing: boolean; error: string };

/** The summary of a config already loaded in full: nothing read or parsed again. */
export function summaryOf(loaded: LoadedConfig): ConfigSummary {
  const profiles = [...loaded.profiles.values()].map((p): ProfileSummary => ({
    name: p.name,
    source: p.source,
    scheme: p.scheme,
    ttlMs: p.ttlMs,
    timeoutMs: p.timeoutMs,
  }));
  return {
    ok: true,
    file: loaded.file,
    profiles,
    directories: Object.fromEntries(loaded.directories.map((r) => [r.dir, r.profile])),
  };
}

export async function summarizeConfig(file: string): Promise<ConfigSummary> {
  let text: string;
  try {
    text = await readConfigFile(file);
  } catch (err) {
    const missing = err instanceof ConfigError && err.missing;
    return {
      ok: false,
      file,
      missing,
      error: err instanceof BrokerError ? renderError(err) : 'cannot read the config file',
    };
  }
  try {
    const raw = parseConfigText(text, file);
    return { ok: true, file, profiles: summarizeProfiles(raw), directories: raw.directories ?? {} };
  } catch (err) {
    return {
      ok: false,
      file,
      missing: false,
      error: err instanceof BrokerError ? renderError(err) : 'cannot parse the config file',
    };
  }
}

/** The same for the managed config (trusted only as the daemon trusts it); undefined: there is none. */
export async function summarizeManagedConfig(
  location: ManagedLocation | undefined,
): Promise<ConfigSummary | undefined> {
  if (!location) return undefined;
  const file = location.path;
  try {
    const text = await readManagedConfigFile(file);
    if (text === undefined) return undefined;
    const raw = parseManagedConfigText(text, file);
    return { ok: true, file, profiles: summarizeProfiles(raw), directories: raw.directories ?? {} };
  } catch (err) {
    return {
      ok: false,
      file,
      missing: false,
      error: err instanceof BrokerError ? renderError(err) : 'cannot read the managed config',
    };
  }
}

function summarizeProfiles(raw: RawConfig): ProfileSummary[] {
  const defaultTtl = raw.defaults?.ttl ?? DEFAULTS.ttlMs;
  const defaultTimeout = raw.defaults?.timeout ?? DEFAULTS.timeoutMs;
  return Object.entries(raw.profiles).map(([name, p]): ProfileSummary => {
    const parsed = parseSourceUri(p.source);
    return {
      name,
      source: p.source,
      scheme: parsed.ok ? parsed.scheme : undefined,
      ttlMs: p.ttl ?? defaultTtl,
      timeoutMs: p.timeout ?? defaultTimeout,
    };
  });
}

/**
 * The profiles a helper may be served: `profile`, or, without one, "default" and every profile
 * the directories: map names (the daemon picks by the working directory). `problem`: why that
 * set is not usable as it is (no such profile; no "default" and no map), for the caller to refuse
 * or warn about; `warning`: usable, but outside the map the helper fails.
 */
export function servedProfiles(
  summary: Extract<ConfigSummary, { ok: true }>,
  profile: string | undefined,
): { profiles: ProfileSummary[]; problem?: string; warning?: string } {
  const known = summary.profiles.map((p) => p.name).join(', ') || 'none';
  if (profile !== undefined) {
    const found = summary.profiles.filter((p) => p.name === profile);
    return found.length > 0
      ? { profiles: found }
      : { profiles: [], problem: `no profile "${profile}" in ${summary.file} (profiles: ${known})` };
  }
  const names = new Set(['default', ...Object.values(summary.directories)]);
  const profiles = summary.profiles.filter((p) => names.has(p.name));
  if (summary.profiles.some((p) => p.name === 'default')) return { profiles };
  if (Object.keys(summary.directories).length === 0)
    return {
      profiles,
      problem: `no profile "default" and no directories: map in ${summary.file} (profiles: ${known})`,
    };
  return {
    profiles,
    warning: `no profile "default" in ${summary.file}: outside the directories: map the helper fails`,
  };
}
