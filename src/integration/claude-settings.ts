// Claude Code's settings files: where they are, reading them without ever echoing their contents
// (they may hold keys in `env`), and rewriting one safely: a timestamped backup beside it first,
// then a temporary file renamed over it, with the original file's mode.
//
// Scopes, lowest to highest precedence (Claude Code's settings documentation):
//   user     ~/.claude/settings.json ($CLAUDE_CONFIG_DIR/settings.json when that is set)
//   project  <project>/.claude/settings.json        (shared, usually committed)
//   local    <project>/.claude/settings.local.json  (yours, git-ignored)
//   managed  /etc/claude-code/managed-settings.json on Linux,
//            /Library/Application Support/ClaudeCode/managed-settings.json on macOS,
//            plus managed-settings.d/*.json beside it, merged in name order
import fs from 'node:fs/promises';
import path from 'node:path';
import { BrokerError } from '../errors.js';

export type SettingsScope = 'user' | 'project' | 'local' | 'managed';

export interface ClaudeContext {
  env: NodeJS.ProcessEnv;
  home: string;
  /** The project directory (where claude is started). */
  cwd: string;
  platform: NodeJS.Platform;
  /** Where managed settings live; defaults by platform (tests point it elsewhere). */
  managedDir?: string | undefined;
}

export function claudeConfigDir(ctx: Pick<ClaudeContext, 'env' | 'home'>): string {
  const dir = ctx.env.CLAUDE_CONFIG_DIR;
  return dir && path.isAbsolute(dir) ? dir : path.join(ctx.home, '.claude');
}

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
}

export const MAX_SETTINGS_BYTES = 4 * 1024 * 1024;

export async function readSettingsFile(scope: SettingsScope, file: string): Promise<SettingsFile> {
  let text: string;
  try {
    const st = await fs.stat(file);
    if (!st.isFile()) return { scope, path: file, exists: true, error: 'not a regular file' };
    if (st.size > MAX_SETTINGS_BYTES) return { scope, path: file, exists: true, error: `${st.size} bytes is too large for a settings file` };
    text = await fs.readFile(file, 'utf8');
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    if (code === 'ENOENT' || code === 'ENOTDIR') return { scope, path: file, exists: false };
    return { scope, path: file, exists: true, error: `cannot read it (${code ?? 'error'})` };
  }
  const parsed = parseSettingsText(text);
  return 'error' in parsed ? { scope, path: file, exists: true, error: parsed.error } : { scope, path: file, exists: true, data: parsed.data };
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
    files.push(await readSettingsFile('managed', path.join(managed, 'managed-settings.json')));
    const dropIns = await fs.readdir(path.join(managed, 'managed-settings.d')).catch(() => [] as string[]);
    for (const name of dropIns.filter((n) => n.endsWith('.json') && !n.startsWith('.')).sort()) {
      files.push(await readSettingsFile('managed', path.join(managed, 'managed-settings.d', name)));
    }
  }
  return files;
}

export interface WriteSettingsOptions {
  /** For the backup's name. */
  now: Date;
  /** Mode for a file that does not exist yet. */
  newFileMode?: number;
}

export interface WriteSettingsResult {
  /** The file written (the target of a symlink, when the settings path is one). */
  file: string;
  backup: string | undefined;
  created: boolean;
  mode: number;
}

/**
 * Replace a settings file with `data`: back it up beside itself (same mode), write a temporary
 * file with the original's mode, fsync, rename over it. A symlinked settings file (dotfile
 * managers do this) is followed, so the link survives and its target is what changes.
 */
export async function writeSettingsFile(file: string, data: Record<string, unknown>, original: string | undefined, options: WriteSettingsOptions): Promise<WriteSettingsResult> {
  let target = file;
  try {
    target = await fs.realpath(file);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== 'ENOENT') throw err;
  }
  const dir = path.dirname(target);
  let mode = options.newFileMode ?? 0o600;
  let created = true;
  let backup: string | undefined;
  if (original !== undefined) {
    const st = await fs.stat(target);
    mode = st.mode & 0o7777;
    created = false;
    backup = await backupFile(target, mode, options.now);
  } else {
    await fs.mkdir(dir, { recursive: true, mode: 0o700 });
  }
  const text = `${JSON.stringify(data, null, indentOf(original))}\n`;
  const tmp = path.join(dir, `.${path.basename(target)}.keybroker-${process.pid}-${Date.now()}.tmp`);
  try {
    const handle = await fs.open(tmp, 'wx', mode);
    try {
      await handle.writeFile(text, 'utf8');
      // open()'s mode is filtered by the umask; the file must end up exactly as the original.
      await handle.chmod(mode);
      await handle.sync();
    } finally {
      await handle.close();
    }
    await fs.rename(tmp, target);
  } catch (err) {
    await fs.rm(tmp, { force: true });
    throw err;
  }
  return { file: target, backup, created, mode };
}

/** `settings.json.keybroker-backup-20250101T120000Z`, never overwriting an earlier backup. */
async function backupFile(file: string, mode: number, now: Date): Promise<string> {
  const stamp = now.toISOString().replace(/[-:]/g, '').replace(/\.\d+Z$/, 'Z');
  for (let n = 0; n < 100; n++) {
    const candidate = `${file}.keybroker-backup-${stamp}${n === 0 ? '' : `-${n}`}`;
    try {
      await fs.copyFile(file, candidate, fs.constants.COPYFILE_EXCL);
      await fs.chmod(candidate, mode);
      return candidate;
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'EEXIST') throw err;
    }
  }
  throw new BrokerError('INTERNAL', `too many backups of ${file} in one second`);
}

/** Keep the file's own indentation (two spaces when it has none to copy). */
function indentOf(text: string | undefined): string | number {
  const m = text === undefined ? null : /\n([ \t]+)"/.exec(text);
  return m ? m[1]! : 2;
}
