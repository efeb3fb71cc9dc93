// The commented config `keybroker daemon` writes when there is none at the default path.
import fs from 'node:fs/promises';
import path from 'node:path';

export const STARTER_CONFIG = `# keybroker configuration (reference: the Configuration section of keybroker's README)
# Edit this file, then check it with: keybroker config check
# and load it into the running daemon with: keybroker reload
#
# Durations: a number of seconds, or 30s, 5m, 1h, 1d.

defaults:
  ttl: 15m          # serve from memory this long, refreshing in the background at ~75%
  maxStale: 1h      # if the source fails, keep serving the last good value this much longer
  timeout: 8s       # give up on a source after this long (Claude Code warns at 10 s)

profiles:
  # \`keybroker-shim\` with no argument serves the profile named "default".
  default:
    # A file only you can read. Create it with:
    #   (umask 077; printf '%s\\n' 'sk-ant-…' > ~/.config/keybroker/anthropic-key)
    source: file:~/.config/keybroker/anthropic-key

  # Wrap any slow helper; keybroker runs it once per TTL instead of once per call:
  # work:
  #   source: exec:op read op://Work/Anthropic/credential
  #   ttl: 1h
  #
  # An environment variable of the daemon:
  # ci:
  #   source: env:ANTHROPIC_API_KEY
`;

/**
 * Write the starter config if nothing is at `file`. Returns true when it wrote one.
 * Never overwrites: 'wx' fails if a file appeared in the meantime.
 */
export async function writeStarterConfig(file: string): Promise<boolean> {
  await fs.mkdir(path.dirname(file), { recursive: true, mode: 0o700 });
  try {
    await fs.writeFile(file, STARTER_CONFIG, { flag: 'wx', mode: 0o600 });
    return true;
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'EEXIST') return false;
    throw err;
  }
}
