// Claude Code's settings files: where they are, reading them without ever echoing their contents
// (they may hold keys in `env`), and rewriting one safely: a timestamped backup beside it first,
// then a temporary file renamed over it, with the original file's mode.
//
// Scopes, lowest to highest precedence (Claude Code's settings documentation):
//   user     ~/.claude/settings.json ($CLAUDE_CONFIG_DIR/settings.json when that is set)
//   project  <project>/.claude/settings.json        (shared, usually committed)
//   local    <project>/.claude/settings.local.json  (yours, git-ignored)
//   managed  the first of these that exists (Claude Code does not merge them):
//            1. server-managed settings, cached in ~/.claude/remote-managed-settings.json
//            2. on macOS, MDM preferences: /Library/Managed Preferences/<user>/com.anthropic.claudecode.plist,
//               then /Library/Managed Preferences/com.anthropic.claudecode.plist
//            3. /etc/claude-code/managed-settings.json on Linux,
//               /Library/Application Support/ClaudeCode/managed-settings.json on macOS,
//               plus managed-settings.d/*.json beside it, merged in name order
import fs from 'node:fs/promises';
import path from 'node:path';
import { FileCheckError, readCheckedFile } from '../checked-file.js';
import { replaceFile, type ReplaceFileResult } from './file-replace.js';

export type SettingsScope = 'user' | 'project' | 'local' | 'managed';

export interface ClaudeContext {
  env: NodeJS.ProcessEnv;
  home: string;
  /** The project directory (where claude is started). */
  cwd: string;
  platform: NodeJS.Platform;
  /** Where managed settings live; defaults by platform (tests point it elsewhere). */
  managedDir?: string | undefined;
  /** macOS MDM preferences directory (tests); default /Library/Managed Preferences. Not used elsewhere. */
  managedPreferencesDir?: string | undefined;
}

export function claudeConfigDir(ctx: Pick<ClaudeContext, 'env' | 'home'>): string {
  const dir = ctx.env.CLAUDE_CONFIG_DIR;
  return dir && path.isAbsolute(dir) ? dir : path.join(ctx.home, '.claude');
}

/** Names another managed-settings directory, for tests and unusual layouts (setup claude --managed, doctor). */
export const CLAUDE_MANAGED_DIR_ENV = 'KEYBROKER_CLAUDE_MANAGED_DIR';

export function managedSettingsDir(ctx: Pick<ClaudeContext, 'platform' | 'managedDir'>): string | undefined {
  if (ctx.managedDir !== undefined) return ctx.managedDir;
  if (ctx.platform === 'darwin') return '/Library/Application Support/ClaudeCode';
  if (ctx.platform === 'linux') return '/etc/claude-code';
  return undefined;
}

export function settingsPath(ctx: ClaudeContext, scope: Exclude<SettingsScope, 'managed'>): string {
  if (scope === 'user') return path.join(claudeConfigDir(ctx), 'settings.json');
  return path.join(ctx.cwd, '.claude', scope === 'project' ? 'settings.json' : 'settings.local.json');
}

export interface SettingsFile {
  scope: SettingsScope;
  path: string;
  exists: boolean;
  /** The parsed object, when the file exists and is a JSON object. */
  data?: Record<string, unknown>;
  /** Why it could not be read or parsed: never quotes its contents. */
  error?: string;
  /** A higher managed source Claude Code uses instead of this file (which it then ignores). */
  shadowedBy?: string;
}

export const MAX_SETTINGS_BYTES = 4 * 1024 * 1024;

export async function readSettingsFile(scope: SettingsScope, file: string): Promise<SettingsFile> {
  let text: string;
  try {
    text = await readSettingsText(file);
  } catch (err) {
    if (err instanceof FileCheckError) return { scope, path: file, exists: true, error: err.problem };
    const code = (err as NodeJS.ErrnoException).code;
    if (code === 'ENOENT' || code === 'ENOTDIR') return { scope, path: file, exists: false };
    return { scope, path: file, exists: true, error: `cannot read it (${code ?? 'error'})` };
  }
  const parsed = parseSettingsText(text);
  return 'error' in parsed
    ? { scope, path: file, exists: true, error: parsed.error }
    : { scope, path: file, exists: true, data: parsed.data };
}

/**
 * A settings file's text. Claude Code reads these as they are, so no ownership rule; but a FIFO in
 * its place must not hang doctor or setup. Throws FileCheckError, or the open error as it is.
 */
export async function readSettingsText(file: string): Promise<string> {
  return (
    await readCheckedFile(file, { label: file, maxBytes: MAX_SETTINGS_BYTES, invalid: 'CONFIG_INVALID', trust: 'any' })
  ).toString('utf8');
}

/** Parse settings JSON; an error says where, never what (the text may hold a key). */
export function parseSettingsText(text: string): { data: Record<string, unknown> } | { error: string } {
  if (text.trim() === '') return { data: {} };
  let value: unknown;
  try {
    value = JSON.parse(text);
  } catch (err) {
    const position = /position (\d+)/.exec(err instanceof Error ? err.message : '')?.[1];
    const line = position === undefined ? undefined : text.slice(0, Number(position)).split('\n').length;
    return { error: `is not valid JSON${line !== undefined ? ` (near line ${line})` : ''}` };
  }
  if (typeof value !== 'object' || value === null || Array.isArray(value)) return { error: 'is not a JSON object' };
  return { data: value as Record<string, unknown> };
}

/** Every settings file Claude Code would read here, lowest precedence first. */
export async function readAllSettings(ctx: ClaudeContext): Promise<SettingsFile[]> {
  const files: SettingsFile[] = [];
  for (const scope of ['user', 'project', 'local'] as const) {
    const file = settingsPath(ctx, scope);
    // Started in the home directory, the project's .claude/settings.json is the user's file.
    if (files.some((f) => f.path === file)) continue;
    files.push(await readSettingsFile(scope, file));
  }
  const managed = managedSettingsDir(ctx);
  if (managed !== undefined) {
    const fileBased = [await readSettingsFile('managed', path.join(managed, 'managed-settings.json'))];
    const dropIns = await fs.readdir(path.join(managed, 'managed-settings.d')).catch(() => [] as string[]);
    for (const name of dropIns.filter((n) => n.endsWith('.json') && !n.startsWith('.')).sort()) {
      fileBased.push(await readSettingsFile('managed', path.join(managed, 'managed-settings.d', name)));
    }
    // Claude Code takes the first managed source present and ignores the rest; doctor cannot read
    // the server's settings or an MDM plist, so it reports the file-based ones as shadowed.
    const higher = await higherManagedSource(ctx);
    files.push(
      ...fileBased.map((f) =>
        higher && f.exists ? { scope: f.scope, path: f.path, exists: true, shadowedBy: higher } : f,
      ),
    );
  }
  return files;
}

/** A managed source Claude Code prefers to managed-settings.json, if one is present. */
export async function higherManagedSource(ctx: ClaudeContext): Promise<string | undefined> {
  const candidates = [path.join(claudeConfigDir(ctx), 'remote-managed-settings.json')];
  const prefs = ctx.platform === 'darwin' ? (ctx.managedPreferencesDir ?? '/Library/Managed Preferences') : undefined;
  if (prefs !== undefined) {
    const user = ctx.env.USER ?? ctx.env.LOGNAME;
    if (user) candidates.push(path.join(prefs, user, 'com.anthropic.claudecode.plist'));
    candidates.push(path.join(prefs, 'com.anthropic.claudecode.plist'));
  }
  for (const c of candidates) {
    if (
      await fs.access(c).then(
        () => true,
        () => false,
      )
    )
      return c;
  }
  return undefined;
}

export interface WriteSettingsOptions {
  /** For the backup's name. */
  now: Date;
  /** Mode for a file that does not exist yet. */
  newFileMode?: number;
  /** Mode for directories created for it. */
  newDirMode?: number;
}

/**
 * Replace a settings file with `data` (see replaceFile: a 0600 backup beside it first, then an
 * atomic rename with the original's mode), in the file's own indentation. `original` is the text
 * read before: a file that changed since is left alone.
 */
export async function writeSettingsFile(
  file: string,
  data: Record<string, unknown>,
  original: string | undefined,
  options: WriteSettingsOptions,
): Promise<ReplaceFileResult> {
  const text = `${JSON.stringify(data, null, indentOf(original))}\n`;
  return replaceFile(file, text, { ...options, original, maxBytes: MAX_SETTINGS_BYTES });
}

/** Keep the file's own indentation (two spaces when it has none to copy). */
function indentOf(text: string | undefined): string | number {
  const m = text === undefined ? null : /\n([ \t]+)"/.exec(text);
  return m ? m[1]! : 2;
}
