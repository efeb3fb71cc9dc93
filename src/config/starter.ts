// The commented config `keybroker daemon` writes when there is none at the default path. Its
// `default` profile reads the key from the OS keychain where a real one answers (the macOS login
// keychain, or a Secret Service on the session bus — never the kernel keyutils store, which
// forgets at reboot), else from a file only you can read.
import fs from 'node:fs/promises';
import path from 'node:path';
import { adapterFor } from '../../adapters/registry.js';

/** Where the starter's default profile reads the key; `what`/`why` say which keychain, or why none. */
export type StarterSource = { kind: 'keyring'; what: string } | { kind: 'file'; why?: string };

/** The probe for a keychain is bounded: a D-Bus that hangs must not hold up a first start. */
export const KEYCHAIN_PROBE_TIMEOUT_MS = 3_000;

const FILE_DEFAULT = `  default:
    # A file only you can read. Create it with:
    #   (umask 077; printf '%s\\n' 'sk-ant-…' > ~/.config/keybroker/anthropic-key)
    source: file:~/.config/keybroker/anthropic-key
`;

const KEYRING_DEFAULT = `  default:
    # Your OS keychain (the macOS login keychain, or your desktop's Secret Service: GNOME
    # Keyring, KWallet, KeePassXC). Store the key there with (it asks, and shows nothing):
    #   keybroker key set default
    source: keyring:default

  # Or a file only you can read:
  # default:
  #   source: file:~/.config/keybroker/anthropic-key
`;

export function starterConfig(source: StarterSource): string {
  return STARTER_TEMPLATE.replace('@DEFAULT@', source.kind === 'keyring' ? KEYRING_DEFAULT : FILE_DEFAULT);
}

const STARTER_TEMPLATE = `# keybroker configuration (reference: docs/configuration.md in the keybroker package)
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
@DEFAULT@
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
 * The starter with `profileYaml` (a profile's lines, indented under `profiles:`) as its first
 * profile: the config `keybroker init` writes where there is none.
 */
export function starterWithProfile(profileYaml: string): string {
  // A function, so that a $ in the profile (an exec: command's) is not read as a replacement pattern.
  return STARTER_TEMPLATE.replace('@DEFAULT@', () => `${profileYaml}\n`);
}

/** The starter with a file source: what the first run writes where no keychain answers. */
export const STARTER_CONFIG = starterConfig({ kind: 'file' });

/** The keychain where a real one answers here, else a key file (and why not the keychain). */
export async function chooseStarterSource(env: NodeJS.ProcessEnv): Promise<StarterSource> {
  const keyring = adapterFor('keyring');
  try {
    const probe = (await keyring?.load())?.probe;
    if (!probe) return { kind: 'file', why: 'no keychain source in this build' };
    const answer = await probe({ env, timeoutMs: KEYCHAIN_PROBE_TIMEOUT_MS });
    return answer.ok ? { kind: 'keyring', what: answer.what } : { kind: 'file', why: answer.why };
  } catch {
    return { kind: 'file', why: 'the keychain probe failed' };
  }
}

/**
 * Write the starter config if nothing is at `file`, with the source `choose` picks (probed only
 * when there is no file). Returns that source, or undefined when a file was already there.
 * Never overwrites: 'wx' fails if a file appeared in the meantime.
 */
export async function writeStarterConfig(
  file: string,
  options: { env?: NodeJS.ProcessEnv; choose?: (env: NodeJS.ProcessEnv) => Promise<StarterSource> } = {},
): Promise<StarterSource | undefined> {
  await fs.mkdir(path.dirname(file), { recursive: true, mode: 0o700 });
  if (
    await fs.lstat(file).then(
      () => true,
      () => false,
    )
  )
    return undefined;
  const source = await (options.choose ?? chooseStarterSource)(options.env ?? process.env);
  try {
    await fs.writeFile(file, starterConfig(source), { flag: 'wx', mode: 0o600 });
    return source;
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'EEXIST') return undefined;
    throw err;
  }
}
