// Putting a key into a profile's source, for sources keybroker can write (keyring:): store it (or
// delete it), then tell a running daemon, which serves the new value at once without a fetch (or
// drops its cached one). `keybroker key set` / `key delete` use this; so can a guided setup that
// asks for a key: storeSourceValue() needs only a source URI, storeProfileKey() a profile of a
// config.
import { adapterFor } from '../../adapters/registry.js';
import { AdapterPool } from '../adapter-pool.js';
import { loadConfig, type LoadedConfig, type ResolvedProfile } from '../config/load.js';
import { resolveManagedConfigPath } from '../config/managed.js';
import { parseSourceUri } from '../config/source-uri.js';
import { BrokerError } from '../errors.js';
import { createLogger, type Logger } from '../log.js';
import { sendRequest } from '../client/client.js';
import { isErrorCode, type ForgetReply, type Reply, type SetReply } from '../protocol/messages.js';
import type { SecretValue } from '../secret.js';

/** How long a keychain write may take: an access or unlock prompt may be waiting for a person. */
export const KEY_WRITE_TIMEOUT_MS = 60_000;
const DAEMON_TIMEOUT_MS = 10_000;

type WritableAdapter = Awaited<ReturnType<AdapterPool['acquire']>>;

/** A profile's source, opened for writing. close() releases the adapter (and its keychain worker). */
export interface KeyTarget {
  profile: string;
  /** The source URI as the config writes it. */
  source: string;
  /** The source described for messages (never a value): "keyring:default". */
  description: string;
  store(value: SecretValue): Promise<void>;
  remove(): Promise<boolean>;
  close(): Promise<void>;
}

export interface OpenOptions {
  env?: NodeJS.ProcessEnv;
  log?: Logger;
  timeoutMs?: number;
}

/**
 * Open `source` (a keyring: URI) for writing as profile `profile`'s. Throws USAGE for a source
 * keybroker cannot write, CONFIG_INVALID for a URI that does not parse.
 */
export async function openSource(source: string, profile: string, options: OpenOptions = {}): Promise<KeyTarget> {
  const parsed = parseSourceUri(source);
  if (!parsed.ok) throw new BrokerError('CONFIG_INVALID', `profile "${profile}": source ${parsed.reason}`);
  const log = options.log ?? createLogger({ level: 'silent' });
  const pool = new AdapterPool({ find: adapterFor, env: options.env ?? process.env, log });
  try {
    const adapter = await pool.acquire(parsed.scheme, undefined);
    const ref = await adapter.parse(source, { overrides: undefined, profile });
    return writableTarget(adapter, ref, source, profile, pool, log, options.timeoutMs ?? KEY_WRITE_TIMEOUT_MS);
  } catch (err) {
    await pool.closeAll();
    throw err;
  }
}

function writableTarget(
  adapter: WritableAdapter,
  ref: unknown,
  source: string,
  profile: string,
  pool: AdapterPool,
  log: Logger,
  timeoutMs: number,
): KeyTarget {
  const description = adapter.describe(ref);
  const { store, remove } = adapter;
  if (!store || !remove) {
    throw new BrokerError(
      'USAGE',
      `profile "${profile}" reads ${description}, which keybroker cannot write: key set and key delete are for keyring: profiles (source: keyring:${profile})`,
    );
  }
  const context = () => ({ signal: AbortSignal.timeout(timeoutMs), profile, log });
  return {
    profile,
    source,
    description,
    store: (value) => store.call(adapter, ref, value, context()),
    remove: () => remove.call(adapter, ref, context()),
    close: () => pool.closeAll(),
  };
}

/** Open the source of `profile` in a loaded config (see openSource). */
export async function openProfile(
  config: LoadedConfig,
  profile: string,
  options: OpenOptions = {},
): Promise<KeyTarget> {
  const resolved: ResolvedProfile | undefined = config.profiles.get(profile);
  if (!resolved) {
    const known = [...config.profiles.keys()];
    throw new BrokerError(
      'UNKNOWN_PROFILE',
      `no profile "${profile}" in ${config.file}${known.length ? ` (profiles: ${known.join(', ')})` : ' (it has no profiles)'}`,
    );
  }
  return openSource(resolved.source, profile, options);
}

/** Load the config at `file` (with the managed config, as the daemon does) to find a profile's source. */
export async function loadConfigForKeys(file: string, env: NodeJS.ProcessEnv = process.env): Promise<LoadedConfig> {
  const pool = new AdapterPool({ find: adapterFor, env, log: createLogger({ level: 'silent' }) });
  try {
    return await loadConfig(file, pool.acquire, undefined, { managed: resolveManagedConfigPath({ env }) });
  } finally {
    await pool.closeAll();
  }
}

/** What the running daemon made of a key set or delete. */
export type DaemonOutcome =
  | { daemon: 'updated'; changed: boolean | null }
  | { daemon: 'forgotten' }
  | { daemon: 'not-running' }
  /** It answered with an error: the key is stored, but the daemon does not serve it. */
  | { daemon: 'refused'; error: BrokerError };

/** Store `value` at the target, then hand it to the daemon on `socketPath` if one runs. */
export async function storeProfileKey(
  target: KeyTarget,
  value: SecretValue,
  socketPath: string,
): Promise<DaemonOutcome> {
  await target.store(value);
  return handToDaemon(target, value, socketPath);
}

/**
 * Have the daemon on `socketPath`, if one runs, serve `value` for the target's profile from now on
 * (a key just stored there), without fetching it back.
 */
export async function handToDaemon(target: KeyTarget, value: SecretValue, socketPath: string): Promise<DaemonOutcome> {
  // The value goes to the daemon over its socket, as every value it serves comes back: the
  // client checked first that the socket is the user's own (sendRequest refuses one that is not).
  const reply = await sendRequest(
    socketPath,
    { v: 1, op: 'set', profile: target.profile, source: target.source, value: value.reveal() },
    { timeoutMs: DAEMON_TIMEOUT_MS },
  );
  if (reply.ok) return { daemon: 'updated', changed: (reply as SetReply).changed };
  return daemonRefusal(reply);
}

/** Delete the target's entry (false: there was none), then make a running daemon drop its value. */
export async function deleteProfileKey(
  target: KeyTarget,
  socketPath: string,
): Promise<{ deleted: boolean; outcome: DaemonOutcome }> {
  const deleted = await target.remove();
  const reply = await sendRequest(
    socketPath,
    { v: 1, op: 'forget', profile: target.profile },
    { timeoutMs: DAEMON_TIMEOUT_MS },
  );
  if (reply.ok && (reply as ForgetReply).forgotten) return { deleted, outcome: { daemon: 'forgotten' } };
  return { deleted, outcome: daemonRefusal(reply) };
}

function daemonRefusal(reply: Reply): DaemonOutcome {
  if (reply.ok) return { daemon: 'not-running' };
  if (reply.error.code === 'DAEMON_UNREACHABLE') return { daemon: 'not-running' };
  const code = isErrorCode(reply.error.code) ? reply.error.code : 'INTERNAL';
  return { daemon: 'refused', error: new BrokerError(code, reply.error.message) };
}
