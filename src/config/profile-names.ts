// Profile names for shell completion: read from the config file alone, fast and offline (no
// daemon, no adapter, no validation), so a config with a mistake in it still completes.
import { isMap, isScalar, parseDocument } from 'yaml';
import { readConfigFile, resolveConfigPath } from './load.js';
import { PROFILE_NAME } from './schema.js';

/** The profile names in the config (`--config`, else $KEYBROKER_CONFIG, else the default); none when it cannot be read. */
export async function completeProfiles(flag: string | undefined): Promise<string[]> {
  let text: string;
  try {
    // The same checks as every read of the config (owned by you, not writable by others).
    text = await readConfigFile(resolveConfigPath({ flag }).path);
  } catch {
    return [];
  }
  const profiles = parseDocument(text).get('profiles');
  if (!isMap(profiles)) return [];
  return (
    profiles.items
      .map((item) => (isScalar(item.key) ? String(item.key.value) : undefined))
      // Only valid names: the scripts hand these words to the shell (bash's compgen -W expands them).
      .filter((name): name is string => name !== undefined && PROFILE_NAME.test(name))
  );
}
