// Everything on this machine that leads to one of keybroker's keys, for what an agent's sandbox
// must keep from its commands (`setup claude --sandbox` writes it, doctor checks it):
//   - keybroker's config directory (the config names every source; it may hold key files too),
//   - each source's own secret locations, asked of its adapter (a file: key, Vault's token or
//     AppRole files, 1Password's token file, AWS's shared credentials and caches) and the
//     variables that hold a credential (env: sources' own, VAULT_TOKEN, OP_SERVICE_ACCOUNT_TOKEN …),
//   - the state directory (the audit trail and its salt).
// Keychain sources (keyring:) name no path: their key sits behind the Secret Service on the D-Bus
// session bus (Linux) or the login keychain (macOS). They are listed by profile, for doctor to say
// whether the sandbox keeps its commands from that service.
// Not the socket's directory: the sandbox refuses the connect already, and a directory the sandbox
// hides shows up inside it as an empty one, which a client would report as an unsafe socket
// directory. Where the state directory is the socket's too (no XDG_RUNTIME_DIR; macOS), its files
// are named one by one instead.
//
// Each path comes with its real path too when a symbolic link leads there: hiding a link leaves
// what it points at readable.
import fs from 'node:fs';
import path from 'node:path';
import { adapterFor } from '../../adapters/registry.js';
import { AdapterPool } from '../adapter-pool.js';
import { AUDIT_FILE, AUDIT_PREVIOUS_FILE, AUDIT_SALT_FILE, auditDir } from '../audit/audit-record.js';
import { resolveSocketPath } from '../client/socket-path.js';
import { ConfigError, loadConfig, resolveConfigPath, type LoadedConfig } from '../config/load.js';
import { resolveManagedConfigPath } from '../config/managed.js';
import { BrokerError } from '../errors.js';
import { createLogger } from '../log.js';

export type KeyPathKind = 'config' | 'key' | 'state';

export interface KeyPath {
  /** Absolute, as written in the config or worked out (see also `real`). */
  path: string;
  /** Where a symbolic link along `path` leads, when it leads elsewhere. */
  real?: string;
  kind: KeyPathKind;
  /** For messages: "the keybroker config", "profile "work"'s key". */
  what: string;
}

export interface KeyLocations {
  paths: KeyPath[];
  /** Variables that hold a key or a credential, and the profiles that read them. */
  env: Array<{ name: string; profiles: string[] }>;
  /** The daemon's socket, as clients find it here. */
  socket: string;
  /**
   * Paths left out because hiding them would hide the socket too (the socket kept in the config
   * directory, say): the sandbox cannot keep these from its commands without cutting off clients.
   */
  holdingSocket: KeyPath[];
  /** Profiles whose source (a command) keeps its own credentials where keybroker cannot see. */
  opaque: string[];
  /** Profiles whose key sits in the OS keychain, behind a service rather than in a file. */
  keychain: string[];
  /** The config's sources could not be read: the key paths above are incomplete. */
  configProblem?: string;
}

export interface KeyLocationOptions {
  env: NodeJS.ProcessEnv;
  home: string;
  platform: NodeJS.Platform;
  /** --config */
  configFlag?: string | undefined;
  /**
   * For every user of the machine (managed settings): the managed config's profiles only, and the
   * default directories rather than this user's XDG variables, which others do not share.
   */
  everyUser?: boolean;
  /** A config already loaded in full (doctor's), so it is not read again. */
  loaded?: LoadedConfig | undefined;
  /** The socket clients use (doctor's, chosen as Claude Code's environment chooses it). */
  socket?: string | undefined;
}

const AUDIT_FILES = [AUDIT_FILE, AUDIT_PREVIOUS_FILE, AUDIT_SALT_FILE];
const OPAQUE_SCHEMES = new Set(['exec']);

export async function keyLocations(options: KeyLocationOptions): Promise<KeyLocations> {
  const { home, platform } = options;
  // Everyone's directories are the defaults: nothing of this user's environment but HOME.
  const env = options.everyUser ? { HOME: home } : options.env;
  const socket = options.socket ?? resolveSocketPath({ env, platform, home }).path;
  const paths: KeyPath[] = [];
  const add = (p: string, kind: KeyPathKind, what: string): void => {
    const real = realPath(p);
    paths.push({ path: p, kind, what, ...(real !== undefined && real !== p && { real }) });
  };

  const configFile = resolveConfigPath({ flag: options.configFlag, env, home }).path;
  const configDir = path.dirname(configFile);
  // Its own directory, as the default is; a config kept elsewhere (~/dotfiles/keybroker.yaml) alone.
  if (path.basename(configDir) === 'keybroker') add(configDir, 'config', 'the keybroker config directory');
  else add(configFile, 'config', 'the keybroker config');

  const state = auditDir(env, platform, home);
  if (options.everyUser || state === path.dirname(socket)) {
    for (const f of AUDIT_FILES) add(path.join(state, f), 'state', `the audit trail's ${f}`);
  } else {
    add(state, 'state', 'the state directory (audit trail and salt)');
  }

  const sources = await sourceLocations(configFile, options);
  for (const k of sources.keys) add(k.path, 'key', k.what);
  return {
    ...sortOut(paths, socket),
    env: sources.env,
    socket,
    opaque: sources.opaque,
    keychain: sources.keychain,
    ...(sources.problem !== undefined && { configProblem: sources.problem }),
  };
}

interface SourceLocations {
  keys: Array<{ path: string; what: string }>;
  env: Array<{ name: string; profiles: string[] }>;
  opaque: string[];
  keychain: string[];
  problem?: string;
}

/** Ask each profile's adapter where its secrets sit (offline: parse, never fetch). */
async function sourceLocations(configFile: string, options: KeyLocationOptions): Promise<SourceLocations> {
  const pool = new AdapterPool({ find: adapterFor, env: options.env, log: createLogger({ level: 'silent' }) });
  const out: SourceLocations = { keys: [], env: [], opaque: [], keychain: [] };
  try {
    const loaded = options.loaded ?? (await load(configFile, pool, options));
    const envProfiles = new Map<string, string[]>();
    for (const p of loaded.profiles.values()) {
      // For every user, the organisation's profiles: whoever runs this (root) has no say in theirs.
      if (options.everyUser && !p.managedBy) continue;
      if (OPAQUE_SCHEMES.has(p.scheme)) out.opaque.push(p.name);
      const adapter = await pool.acquire(p.scheme, p.settings);
      if (!adapter.secretLocations) continue;
      const ref = await adapter.parse(p.source, {
        overrides: p.overrides,
        profile: p.name,
        output: p.output,
        ...(p.locked && { locked: p.locked }),
        ...(p.secretEnv && { secretEnv: p.secretEnv }),
      });
      const found = adapter.secretLocations(ref);
      for (const f of found.files)
        out.keys.push({ path: f, what: `profile "${p.name}"'s ${describeKeyFile(p.scheme)}` });
      for (const name of found.env) envProfiles.set(name, [...(envProfiles.get(name) ?? []), p.name]);
      if (found.keychain) out.keychain.push(p.name);
    }
    out.env = [...envProfiles].map(([name, profiles]) => ({ name, profiles }));
  } catch (err) {
    out.problem =
      err instanceof ConfigError
        ? err.missing
          ? `no config at ${configFile} yet`
          : `${configFile} does not load (keybroker config check says why)`
        : err instanceof BrokerError
          ? err.message
          : `cannot read the sources of ${configFile}`;
  } finally {
    await pool.closeAll();
  }
  return out;
}

function load(configFile: string, pool: AdapterPool, options: KeyLocationOptions): Promise<LoadedConfig> {
  const managed = resolveManagedConfigPath({ env: options.env, platform: options.platform });
  return loadConfig(configFile, pool.acquire, options.home, { managed });
}

function describeKeyFile(scheme: string): string {
  return scheme === 'file' ? 'key file' : `${scheme}: credentials`;
}

function realPath(p: string): string | undefined {
  try {
    return fs.realpathSync(p);
  } catch {
    // Not there yet: the directory above may still be a link.
    try {
      return path.join(fs.realpathSync(path.dirname(p)), path.basename(p));
    } catch {
      return undefined;
    }
  }
}

function isWithin(p: string, dir: string): boolean {
  return p === dir || p.startsWith(dir.endsWith('/') ? dir : `${dir}/`);
}

/**
 * Drop a path that another one listed already hides (itself and where it leads), and keep apart
 * one that would hide the socket: the socket's directory or one above it.
 */
function sortOut(paths: KeyPath[], socket: string): { paths: KeyPath[]; holdingSocket: KeyPath[] } {
  const socketDir = path.dirname(socket);
  const holds = (p: KeyPath): boolean =>
    isWithin(socketDir, p.path) || (p.real !== undefined && isWithin(socketDir, p.real));
  const usable = paths.filter((p) => !holds(p));
  const hiddenBy = (p: KeyPath, q: KeyPath): boolean =>
    q.path !== p.path && isWithin(p.path, q.path) && (p.real === undefined || isWithin(p.real, q.real ?? q.path));
  const kept: KeyPath[] = [];
  for (const p of usable) {
    if (kept.some((k) => k.path === p.path) || usable.some((q) => hiddenBy(p, q))) continue;
    kept.push(p);
  }
  return { paths: kept, holdingSocket: paths.filter(holds) };
}

/** The paths a sandbox must hide, as a deny list would name them (each path, and where it leads). */
export function denyTargets(locations: KeyLocations): string[] {
  return [...new Set(locations.paths.flatMap((p) => (p.real === undefined ? [p.path] : [p.path, p.real])))];
}
