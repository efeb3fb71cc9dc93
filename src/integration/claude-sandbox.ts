// Claude Code's sandbox settings: what `setup claude --sandbox` adds to a settings file, and what
// the settings files together say (for doctor). Key names and merge rules are those of Claude
// Code 2.1.332's settings schema (read from the CLI itself; measured where it matters):
//   sandbox.enabled                       run the agent's Bash commands in the sandbox
//   sandbox.failIfUnavailable             refuse to start where the sandbox cannot (else run unconfined)
//   sandbox.allowUnsandboxedCommands      let the model ask to run a command outside it (default true)
//   sandbox.excludedCommands[]            commands that run outside it (merged across files)
//   sandbox.network.allowAllUnixSockets   every Unix socket reachable (the daemon's too)
//   sandbox.network.allowUnixSockets[]    macOS only: these sockets reachable (merged; ignored on Linux)
//   sandbox.filesystem.denyRead[]         unreadable inside (merged across files)
//   sandbox.filesystem.allowRead[]        readable again inside a denied path (merged)
//   sandbox.filesystem.disabled           no filesystem isolation at all (not from project files)
//   sandbox.credentials.files[]/envVars[] {path|name, mode: deny|mask}: a file unreadable, a variable unset
//   sandbox.enableWeakerNestedSandbox     Linux: the host's /proc stays readable inside
// A path is absolute, `~/…`, `//…` (absolute), or relative to the settings file's root (the
// project for project files, ~/.claude for the user's). When managed settings set
// allowUnsandboxedCommands: false ("strict"), project files cannot loosen excludedCommands,
// allowUnixSockets, allowAllUnixSockets or a true `enabled`; a false allowUnsandboxedCommands in
// user or managed settings holds whatever project files say.
import path from 'node:path';
import { BrokerError } from '../errors.js';
import {
  claudeConfigDir,
  managedSettingsDir,
  readAllSettings,
  type ClaudeContext,
  type SettingsFile,
} from './claude-settings.js';
import type { SetupChange } from './setup-result.js';

/** What `setup claude --sandbox` wants in the file, besides the switches. */
export interface SandboxWanted {
  /** Paths as the file should spell them (`~/…` under the home directory). */
  denyRead: string[];
  /** Variables sandboxed commands must not see. */
  denyEnv: string[];
}

/** Not in a list yet: how a change line shows the "before" of an entry it adds. */
export const NOT_LISTED = '(not in the list)';

/**
 * The permission rule that keeps Claude Code's own file tools (Read, Grep, Glob) out of a path:
 * the sandbox confines Bash commands only, and a Read the user allows goes through it (measured
 * on 2.1.332). `//` starts an absolute path in a rule; a rule on a directory covers what is in it.
 */
export function readDenyRule(p: string): string {
  return `Read(${p.startsWith('~/') ? p : `/${p}`})`;
}

/**
 * The sandbox block `data` should have: on, no way out, failing closed where it cannot start,
 * and every path and variable in `wanted` denied. Everything already there is kept (entries
 * added at the end of their lists); idempotent. Throws CONFIG_INVALID for a block of the wrong
 * shape, which it will not rewrite.
 */
export function sandboxEdit(
  data: Record<string, unknown>,
  wanted: SandboxWanted,
  file: string,
  home: string,
): { changes: SetupChange[]; sandbox: Record<string, unknown>; permissions: Record<string, unknown> | undefined } {
  const changes: SetupChange[] = [];
  const sandbox = objectAt(data.sandbox, 'sandbox', file);
  const next: Record<string, unknown> = { ...sandbox };
  const set = (key: string, value: boolean): void => {
    if (sandbox[key] === value) return;
    changes.push({ key: `sandbox.${key}`, before: shown(sandbox[key]), after: String(value) });
    next[key] = value;
  };
  set('enabled', true);
  set('failIfUnavailable', true);
  set('allowUnsandboxedCommands', false);

  const filesystem = objectAt(sandbox.filesystem, 'sandbox.filesystem', file);
  const denyRead = stringsAt(filesystem.denyRead, 'sandbox.filesystem.denyRead', file);
  const have = new Set(denyRead.map((p) => expand(p, home)));
  const addRead = wanted.denyRead.filter((p) => !have.has(expand(p, home)));
  for (const p of addRead) changes.push({ key: 'sandbox.filesystem.denyRead', before: NOT_LISTED, after: p });
  if (addRead.length > 0) next.filesystem = { ...filesystem, denyRead: [...denyRead, ...addRead] };

  const credentials = objectAt(sandbox.credentials, 'sandbox.credentials', file);
  const envVars = arrayAt(credentials.envVars, 'sandbox.credentials.envVars', file);
  const named = new Set(envVars.map((e) => (typeof e === 'object' && e !== null ? (e as { name?: unknown }).name : e)));
  const addEnv = wanted.denyEnv.filter((n) => !named.has(n));
  for (const n of addEnv)
    changes.push({ key: 'sandbox.credentials.envVars', before: NOT_LISTED, after: `${n} (mode: deny)` });
  if (addEnv.length > 0)
    next.credentials = { ...credentials, envVars: [...envVars, ...addEnv.map((name) => ({ name, mode: 'deny' }))] };

  const permissions = objectAt(data.permissions, 'permissions', file);
  const deny = stringsAt(permissions.deny, 'permissions.deny', file);
  const rules = new Set(deny);
  const addRules = wanted.denyRead.map(readDenyRule).filter((r) => !rules.has(r));
  for (const r of addRules) changes.push({ key: 'permissions.deny', before: NOT_LISTED, after: r });
  return {
    changes,
    sandbox: next,
    permissions: addRules.length > 0 ? { ...permissions, deny: [...deny, ...addRules] } : undefined,
  };
}

function shown(value: unknown): string | undefined {
  return value === undefined ? undefined : typeof value === 'string' ? value : JSON.stringify(value);
}

function objectAt(value: unknown, key: string, file: string): Record<string, unknown> {
  if (value === undefined) return {};
  if (typeof value === 'object' && value !== null && !Array.isArray(value)) return value as Record<string, unknown>;
  throw new BrokerError('CONFIG_INVALID', `${file}: "${key}" is not an object`, { fix: 'fix it by hand first' });
}

function arrayAt(value: unknown, key: string, file: string): unknown[] {
  if (value === undefined) return [];
  if (Array.isArray(value)) return value;
  throw new BrokerError('CONFIG_INVALID', `${file}: "${key}" is not a list`, { fix: 'fix it by hand first' });
}

function stringsAt(value: unknown, key: string, file: string): string[] {
  const list = arrayAt(value, key, file);
  if (list.every((v) => typeof v === 'string')) return list as string[];
  throw new BrokerError('CONFIG_INVALID', `${file}: "${key}" holds something other than strings`, {
    fix: 'fix it by hand first',
  });
}

/** `~/x` as the absolute path it names (for comparing spellings). */
function expand(p: string, home: string): string {
  if (p === '~') return home;
  if (p.startsWith('~/')) return path.join(home, p.slice(2));
  if (p.startsWith('//')) return p.slice(1);
  return p;
}

/** `/home/ada/x` as `~/x`: how the paths are written, so one file reads the same for every user. */
export function tildePath(p: string, home: string): string {
  return home && home !== '/' && p.startsWith(`${home}/`) ? `~/${p.slice(home.length + 1)}` : p;
}

// ---- what the files say together ----

/** A path entry of one file, resolved; `glob` when it holds wildcards doctor does not match. */
export interface SandboxPath {
  raw: string;
  path: string;
  glob: boolean;
  file: string;
}

export interface SandboxView {
  enabled: boolean;
  /** The file that decides `enabled` (none: the default, off). */
  enabledBy: string | undefined;
  failIfUnavailable: boolean;
  unsandboxedAllowed: boolean;
  allowAllUnixSockets: { value: boolean; file?: string };
  allowUnixSockets: SandboxPath[];
  excludedCommands: Array<{ pattern: string; file: string }>;
  /**
   * denyRead entries, credentials.files entries (deny or mask: either way the file is not read)
   * and Read(…) deny rules, which Claude Code merges into the sandbox's denyRead.
   */
  denyRead: SandboxPath[];
  /** Read(…) deny rules (permissions.deny, merged across files): what Claude Code's file tools may not read. */
  readRules: SandboxPath[];
  allowRead: SandboxPath[];
  filesystemDisabled: { value: boolean; file?: string };
  /** Variables unset (deny) or replaced (mask) for sandboxed commands. */
  envHidden: Set<string>;
  weakerNestedSandbox: { value: boolean; file?: string };
  /** Set by managed settings; /etc and MDM bwrapPath and socatPath. */
  bwrapPath: string | undefined;
  socatPath: string | undefined;
}

const PROJECT_SCOPES = new Set(['project', 'local']);

/** The sandbox settings in force, from every file Claude Code reads (lowest precedence first). */
export function sandboxView(files: readonly SettingsFile[], ctx: ClaudeContext): SandboxView {
  const used = files.filter((f) => f.data && !f.shadowedBy);
  const block = (f: SettingsFile, ...keys: string[]): unknown => {
    let v: unknown = f.data!.sandbox;
    for (const k of keys)
      v = typeof v === 'object' && v !== null && !Array.isArray(v) ? (v as Record<string, unknown>)[k] : undefined;
    return v;
  };
  const managed = used.filter((f) => f.scope === 'managed');
  const strict =
    managed.some((f) => block(f, 'allowUnsandboxedCommands') === false) ||
    managed.some((f) => block(f, 'network', 'allowManagedDomainsOnly') === true);
  /** The highest file that sets a boolean, after `ignore` drops what it may not decide. */
  const flag = (
    keys: string[],
    ignore: (f: SettingsFile, v: boolean) => boolean = () => false,
  ): { value: boolean; file?: string } | undefined => {
    for (const f of [...used].reverse()) {
      const v = block(f, ...keys);
      if (typeof v === 'boolean' && !ignore(f, v)) return { value: v, file: f.path };
    }
    return undefined;
  };
  const fromProject = (f: SettingsFile): boolean => PROJECT_SCOPES.has(f.scope);
  const trustedSaysTrue = (keys: string[]): boolean => used.some((f) => !fromProject(f) && block(f, ...keys) === true);
  const list = (
    keys: string[],
    include: (f: SettingsFile) => boolean = () => true,
  ): Array<{ value: unknown; file: SettingsFile }> =>
    used.filter(include).flatMap((f) => {
      const v = block(f, ...keys);
      return Array.isArray(v) ? v.map((value) => ({ value, file: f })) : [];
    });
  const paths = (entries: Array<{ value: unknown; file: SettingsFile }>): SandboxPath[] =>
    entries.flatMap(({ value, file }) => (typeof value === 'string' ? [resolveEntry(value, file, ctx)] : []));
  const notProjectWhenStrict = (f: SettingsFile): boolean => !(strict && fromProject(f));

  const enabled = flag(['enabled'], (f, v) => strict && fromProject(f) && !v && trustedSaysTrue(['enabled']));
  const heldClosed = used.some((f) => !fromProject(f) && block(f, 'allowUnsandboxedCommands') === false);
  const unsandboxed = heldClosed ? false : (flag(['allowUnsandboxedCommands'])?.value ?? true);
  const managedFilesystem = managed.some((f) => block(f, 'filesystem') !== undefined);
  const managedReadOnly = managed.some((f) => block(f, 'filesystem', 'allowManagedReadPathsOnly') === true);
  const credentialFiles = list(['credentials', 'files']).flatMap(({ value, file }) => {
    const p = typeof value === 'object' && value !== null ? (value as { path?: unknown }).path : undefined;
    return typeof p === 'string' ? [{ value: p, file }] : [];
  });
  const envHidden = new Set(
    list(['credentials', 'envVars']).flatMap(({ value }) => {
      const name = typeof value === 'object' && value !== null ? (value as { name?: unknown }).name : undefined;
      return typeof name === 'string' ? [name] : [];
    }),
  );
  const readRules = used.flatMap((f) => {
    const deny = (f.data!.permissions as { deny?: unknown } | undefined)?.deny;
    return Array.isArray(deny) ? deny.flatMap((r) => (typeof r === 'string' ? readRuleEntry(r, f, ctx) : [])) : [];
  });
  const onlyManaged = (key: string): string | undefined => {
    const v = managed.map((f) => block(f, key)).find((x) => typeof x === 'string' && path.isAbsolute(x));
    return v as string | undefined;
  };
  return {
    enabled: enabled?.value ?? false,
    enabledBy: enabled?.file,
    failIfUnavailable: flag(['failIfUnavailable'])?.value ?? false,
    unsandboxedAllowed: unsandboxed,
    allowAllUnixSockets: flag(['network', 'allowAllUnixSockets'], (f, v) => strict && fromProject(f) && v) ?? {
      value: false,
    },
    allowUnixSockets: paths(list(['network', 'allowUnixSockets'], notProjectWhenStrict)),
    excludedCommands: list(['excludedCommands'], notProjectWhenStrict).flatMap(({ value, file }) =>
      typeof value === 'string' ? [{ pattern: value, file: file.path }] : [],
    ),
    denyRead: [...paths([...list(['filesystem', 'denyRead']), ...credentialFiles]), ...readRules],
    readRules,
    allowRead: paths(list(['filesystem', 'allowRead'], (f) => !managedReadOnly || f.scope === 'managed')),
    filesystemDisabled: flag(
      ['filesystem', 'disabled'],
      (f) => fromProject(f) || (managedFilesystem && f.scope !== 'managed'),
    ) ?? {
      value: false,
    },
    envHidden,
    weakerNestedSandbox: flag(['enableWeakerNestedSandbox'], (f, v) => strict && fromProject(f) && v) ?? {
      value: false,
    },
    bwrapPath: onlyManaged('bwrapPath'),
    socatPath: onlyManaged('socatPath'),
  };
}

/** One path entry as Claude Code resolves it for this settings file. */
export function resolveEntry(raw: string, file: SettingsFile, ctx: ClaudeContext): SandboxPath {
  let p = raw.trim();
  if (p.startsWith('//')) p = p.slice(1);
  else if (p === '~') p = ctx.home;
  else if (p.startsWith('~/')) p = path.join(ctx.home, p.slice(2));
  else if (!path.isAbsolute(p)) p = path.join(settingsRoot(file, ctx), p);
  // A trailing /** or /* names the directory's contents: the directory, for what can be read.
  p = path.normalize(p).replace(/\/\*\*?$/, '') || '/';
  return { raw, path: p, glob: /[*?[\]{}]/.test(p), file: file.path };
}

/**
 * A `Read(…)` permission rule's path, as Claude Code resolves it: `//x` absolute, `~/x` in the
 * home directory, `/x` from the settings file's root; anything else (a bare pattern, which
 * matches at any depth) is kept as a glob doctor does not match.
 */
function readRuleEntry(rule: string, file: SettingsFile, ctx: ClaudeContext): SandboxPath[] {
  const m = /^Read\((.*)\)$/.exec(rule.trim());
  if (!m) return [];
  const content = m[1]!;
  const resolved = resolveEntry(
    content.startsWith('/') && !content.startsWith('//') ? `.${content}` : content,
    file,
    ctx,
  );
  const anchored = content.startsWith('/') || content === '~' || content.startsWith('~/');
  return [{ ...resolved, raw: rule, glob: resolved.glob || !anchored }];
}

function settingsRoot(file: SettingsFile, ctx: ClaudeContext): string {
  if (file.scope === 'user') return claudeConfigDir(ctx);
  if (file.scope === 'managed') return managedSettingsDir(ctx) ?? path.dirname(file.path);
  return ctx.cwd;
}

/**
 * Whether Claude Code runs its agent's commands in its sandbox for this user outside any project
 * (what telemetry reports): the settings files as doctor reads them, from the home directory. A
 * project's own settings may say otherwise there. undefined: a file Claude Code reads could not be.
 */
export async function claudeSandboxEnabled(ctx: Omit<ClaudeContext, 'cwd'>): Promise<boolean | undefined> {
  const here = { ...ctx, cwd: ctx.home };
  const files = await readAllSettings(here);
  if (files.some((f) => f.error !== undefined && !f.shadowedBy)) return undefined;
  return sandboxView(files, here).enabled;
}
