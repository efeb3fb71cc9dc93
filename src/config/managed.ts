// The managed (organisation) config: a file an administrator installs for every user of the
// machine, read before the user's own. Its profiles replace users' profiles of the same name, its
// defaults and settings blocks are every user's starting point, and its `locked:` keys are ones a
// user's config cannot change.
//
// It is a policy for honest users, not a sandbox: each user runs their own daemon and can run
// another program, or another config, whenever they like. What it guarantees is that a user who
// runs keybroker as installed gets the organisation's profiles and limits, and that nobody but
// root can change them: the file is trusted only when root owns it (and every directory above
// it) and no one else can write to any of them. Otherwise it is ignored, with an error in the
// daemon's log, `keybroker status` and `keybroker doctor`.
import fs from 'node:fs';
import fsp from 'node:fs/promises';
import path from 'node:path';
import { BrokerError } from '../errors.js';
import { formatMode } from '../client/file-mode.js';
import { buildConfigSchema, DEFAULT_KEYS, type RawConfig, type RawManagedConfig } from './schema.js';

export const MANAGED_CONFIG_ENV = 'KEYBROKER_MANAGED_CONFIG';
const MAX_MANAGED_BYTES = 1024 * 1024;

export function platformManagedConfigPath(platform: NodeJS.Platform = process.platform): string | undefined {
  if (platform === 'linux') return '/etc/keybroker/managed.yaml';
  if (platform === 'darwin') return '/Library/Application Support/keybroker/managed.yaml';
  return undefined;
}

export interface ManagedLocation {
  path: string;
  from: 'platform' | typeof MANAGED_CONFIG_ENV;
}

export interface ManagedPathInput {
  env?: NodeJS.ProcessEnv;
  platform?: NodeJS.Platform;
  /** The platform path to use (tests); default by platform. */
  platformPath?: string | undefined;
}

/**
 * Where the managed config is, if anywhere. KEYBROKER_MANAGED_CONFIG counts only when there is
 * nothing at the platform's path, so a variable cannot switch an installed policy off.
 */
export function resolveManagedConfigPath(input: ManagedPathInput = {}): ManagedLocation | undefined {
  const env = input.env ?? process.env;
  const platformPath = input.platformPath ?? platformManagedConfigPath(input.platform);
  if (platformPath !== undefined) {
    try {
      fs.lstatSync(platformPath);
      return { path: platformPath, from: 'platform' };
    } catch {
      // nothing installed there
    }
  }
  const fromEnv = env[MANAGED_CONFIG_ENV];
  return fromEnv ? { path: path.resolve(fromEnv), from: MANAGED_CONFIG_ENV } : undefined;
}

/**
 * Read the managed config if it can be trusted: a regular file (not a symlink, whose target's
 * directories would need checking too), owned by root, writable by no one else, in directories
 * that root owns and no one else can write to (a sticky directory such as /tmp is fine: others
 * cannot rename root's entries in it). Throws BrokerError('UNSAFE_PATH') saying what to fix;
 * resolves undefined when the file is gone.
 */
export async function readManagedConfigFile(file: string): Promise<string | undefined> {
  let handle: fsp.FileHandle;
  try {
    handle = await fsp.open(file, fs.constants.O_RDONLY | fs.constants.O_NOFOLLOW | fs.constants.O_NONBLOCK);
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    if (code === 'ENOENT') return undefined;
    if (code === 'ELOOP') throw untrusted(file, 'is a symbolic link', `install the file itself at ${file}`);
    if (code === 'EACCES') throw untrusted(file, 'cannot be read (permission denied)', `sudo chmod 644 ${quote(file)}`);
    throw untrusted(file, `cannot be read (${code ?? 'error'})`, `check ${file}`);
  }
  try {
    const st = await handle.stat();
    if (!st.isFile()) throw untrusted(file, 'is not a regular file', `install a regular file at ${file}`);
    const fix = `sudo chown root ${quote(file)} && sudo chmod 644 ${quote(file)}`;
    if (st.uid !== 0) throw untrusted(file, `is owned by uid ${st.uid}, not root`, fix);
    if ((st.mode & 0o022) !== 0)
      throw untrusted(file, `is writable by group or others (mode ${formatMode(st.mode)})`, fix);
    if (st.size > MAX_MANAGED_BYTES)
      throw untrusted(file, `is ${st.size} bytes (at most ${MAX_MANAGED_BYTES})`, 'shorten it');
    await checkDirectories(file);
    return await handle.readFile('utf8');
  } finally {
    await handle.close();
  }
}

async function checkDirectories(file: string): Promise<void> {
  let dir = await fsp.realpath(path.dirname(file));
  for (;;) {
    const st = await fsp.lstat(dir);
    const fix = `sudo chown root ${quote(dir)} && sudo chmod go-w ${quote(dir)}`;
    if (st.uid !== 0) throw untrusted(file, `is in ${dir}, owned by uid ${st.uid}, not root`, fix);
    if ((st.mode & 0o022) !== 0 && (st.mode & 0o1000) === 0)
      throw untrusted(file, `is in ${dir}, writable by group or others (mode ${formatMode(st.mode)})`, fix);
    const parent = path.dirname(dir);
    if (parent === dir) return;
    dir = parent;
  }
}

function untrusted(file: string, what: string, fix: string): BrokerError {
  return new BrokerError('UNSAFE_PATH', `managed config ${file} ${what}, so it is ignored`, { fix: `run: ${fix}` });
}

function quote(p: string): string {
  return /^[\w@%+=:,./-]+$/.test(p) ? p : `'${p.replace(/'/g, `'\\''`)}'`;
}

// ---- merging ----

export interface ConfigWarning {
  file: string;
  /** Dotted YAML path in `file`. */
  path: string;
  line?: number | undefined;
  message: string;
  /** 'slow-timeout': a timeout long enough for Claude Code's notice; none: a part that does not apply. */
  kind?: 'slow-timeout';
}

/**
 * The keys of settings block `block` (e.g. `aws`) that `locked:` covers: a sub-key for
 * `aws.region`, '*' for the whole block.
 */
export function lockedKeysOf(locked: readonly string[], block: string): string[] {
  if (locked.includes(block)) return ['*'];
  return locked.filter((k) => k.startsWith(`${block}.`)).map((k) => k.slice(block.length + 1));
}

export interface LockProblem {
  path: string;
  message: string;
}

/** Keys `locked:` may name: defaults or defaults.<key>, and any top-level block or block.<key>. */
export function checkLockedKeys(locked: readonly string[]): LockProblem[] {
  const topLevel = Object.keys(buildConfigSchema().shape).filter((k) => k !== 'profiles' && k !== 'defaults');
  const problems: LockProblem[] = [];
  locked.forEach((key, i) => {
    const [head, sub, ...rest] = key.split('.');
    const ok =
      rest.length === 0 &&
      ((head === 'defaults' && (sub === undefined || (DEFAULT_KEYS as readonly string[]).includes(sub))) ||
        (head !== undefined && topLevel.includes(head) && sub !== ''));
    if (!ok) {
      problems.push({
        path: `locked.${i}`,
        message:
          head === 'profiles'
            ? "profiles cannot be locked one key at a time: every profile of the managed config already replaces a user's profile of that name"
            : `"${key}" is not a key that can be locked: use defaults.${DEFAULT_KEYS.join(', defaults.')}, or a settings block such as ${topLevel[0] ?? 'vault'} or ${topLevel[0] ?? 'vault'}.<key>`,
      });
    }
  });
  return problems;
}

export interface MergeInput {
  managed: RawManagedConfig;
  managedFile: string;
  user: RawConfig | undefined;
  userFile: string;
  userLineOf?: ((yamlPath: string[]) => number | undefined) | undefined;
}

export interface MergeResult {
  /** The managed profiles, with the managed file's own defaults and settings. */
  managed: RawConfig;
  /** The user's profiles that stand, with the defaults and settings that apply to them. */
  user: RawConfig;
  warnings: ConfigWarning[];
}

const isPlainObject = (v: unknown): v is Record<string, unknown> =>
  typeof v === 'object' && v !== null && !Array.isArray(v);

/**
 * Managed profiles are resolved with the managed file's defaults and settings only, so nothing a
 * user writes changes how an organisation profile fetches. Users' profiles get the managed
 * defaults and settings blocks as their base, overridden by the user's own except where locked.
 * A locked key's user value is ignored whether it would loosen or tighten: "looser" has no single
 * meaning across keys, and an ignored value with a warning is predictable. A locked
 * defaults.<key> or settings key also applies inside the user's profiles, or a per-profile value
 * would undo it.
 */
export function mergeManagedConfig(input: MergeInput): MergeResult {
  const { managed, user, managedFile, userFile } = input;
  const locked = new Set(managed.locked ?? []);
  const warnings: ConfigWarning[] = [];
  const warn = (yamlPath: string[], message: string): void => {
    warnings.push({ file: userFile, path: yamlPath.join('.'), line: input.userLineOf?.(yamlPath), message });
  };
  const isLocked = (head: string, sub?: string): boolean =>
    locked.has(head) || (sub !== undefined && locked.has(`${head}.${sub}`));

  const { locked: _locked, ...managedRest } = managed;
  const managedRaw = managedRest as RawConfig;

  const profiles: RawConfig['profiles'] = {};
  for (const [name, p] of Object.entries(user?.profiles ?? {})) {
    if (Object.prototype.hasOwnProperty.call(managed.profiles, name)) {
      warn(['profiles', name], `profile ${name} is managed by ${managedFile}; your definition is ignored`);
      continue;
    }
    const kept: Record<string, unknown> = { ...p };
    for (const key of DEFAULT_KEYS) {
      if (kept[key] !== undefined && isLocked('defaults', key)) {
        warn(['profiles', name, key], `defaults.${key} is locked by ${managedFile}; this profile's ${key} is ignored`);
        delete kept[key];
      }
    }
    // A profile's own settings block overrides the top-level one, so a lock covers it too.
    for (const [key, block] of Object.entries(kept)) {
      if (!isPlainObject(block)) continue;
      if (locked.has(key)) {
        warn(['profiles', name, key], `${key} is locked by ${managedFile}; this profile's ${key}: block is ignored`);
        delete kept[key];
        continue;
      }
      const rest = { ...block };
      for (const sub of Object.keys(block)) {
        if (locked.has(`${key}.${sub}`)) {
          warn(
            ['profiles', name, key, sub],
            `${key}.${sub} is locked by ${managedFile}; this profile's value is ignored`,
          );
          delete rest[sub];
        }
      }
      kept[key] = rest;
    }
    profiles[name] = kept as RawConfig['profiles'][string];
  }

  const defaults: Record<string, unknown> = { ...managed.defaults };
  for (const [key, value] of Object.entries(user?.defaults ?? {})) {
    if (value === undefined) continue;
    if (isLocked('defaults', key))
      warn(['defaults', key], `defaults.${key} is locked by ${managedFile}; your value is ignored`);
    else defaults[key] = value;
  }

  const merged: Record<string, unknown> = { defaults, profiles };
  const blocks = new Set(
    [...Object.keys(managedRest), ...Object.keys(user ?? {})].filter((k) => k !== 'profiles' && k !== 'defaults'),
  );
  for (const key of blocks) {
    const m = (managedRest as Record<string, unknown>)[key];
    const u = (user as Record<string, unknown> | undefined)?.[key];
    if (u === undefined) {
      if (m !== undefined) merged[key] = m;
    } else if (locked.has(key)) {
      warn([key], `${key} is locked by ${managedFile}; your ${key}: block is ignored`);
      if (m !== undefined) merged[key] = m;
    } else if (isPlainObject(u) && (m === undefined || isPlainObject(m))) {
      const block: Record<string, unknown> = { ...(m as Record<string, unknown> | undefined) };
      for (const [sub, v] of Object.entries(u)) {
        if (locked.has(`${key}.${sub}`))
          warn([key, sub], `${key}.${sub} is locked by ${managedFile}; your value is ignored`);
        else block[sub] = v;
      }
      merged[key] = block;
    } else {
      merged[key] = u;
    }
  }
  return { managed: managedRaw, user: merged as RawConfig, warnings };
}
