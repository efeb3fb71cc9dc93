// What `setup claude` and `doctor` need from the keybroker config: each profile's source kind and
// TTL. Read offline from the YAML alone (no adapter is loaded), so a source kind that is broken or
// mid-upgrade does not stop `setup claude` from reading the TTL of the profile it is wiring up.
import { ConfigError, parseConfigText, readConfigFile } from '../config/load.js';
import { DEFAULTS } from '../config/schema.js';
import { parseSourceUri } from '../config/source-uri.js';
import { BrokerError } from '../errors.js';

export interface ProfileSummary {
  name: string;
  /** The source URI as written. Only printed through its scheme: exec: commands may hold anything. */
  source: string;
  scheme: string | undefined;
  ttlMs: number;
}

export type ConfigSummary =
  | { ok: true; file: string; profiles: ProfileSummary[] }
  | { ok: false; file: string; missing: boolean; error: string };

export async function summarizeConfig(file: string): Promise<ConfigSummary> {
  let text: string;
  try {
    text = await readConfigFile(file);
  } catch (err) {
    const missing = err instanceof ConfigError && err.missing;
    return { ok: false, file, missing, error: err instanceof BrokerError ? err.message : 'cannot read the config file' };
  }
  try {
    const raw = parseConfigText(text, file);
    const defaultTtl = raw.defaults?.ttl ?? DEFAULTS.ttlMs;
    const profiles = Object.entries(raw.profiles).map(([name, p]): ProfileSummary => {
      const parsed = parseSourceUri(p.source);
      return { name, source: p.source, scheme: parsed.ok ? parsed.scheme : undefined, ttlMs: p.ttl ?? defaultTtl };
    });
    return { ok: true, file, profiles };
  } catch (err) {
    return { ok: false, file, missing: false, error: err instanceof BrokerError ? err.message : 'cannot parse the config file' };
  }
}
