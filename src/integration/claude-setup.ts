// `keybroker setup claude`: point Claude Code's apiKeyHelper (or awsCredentialExport /
// otelHeadersHelper) at keybroker-shim in a settings file, keeping everything else in it, and set
// CLAUDE_CODE_API_KEY_HELPER_TTL_MS to fit the profile's TTL. Idempotent: a second run with the
// same answer changes nothing and writes no backup.
import fsSync from 'node:fs';
import { DEFAULTS } from '../config/schema.js';
import { FileCheckError } from '../checked-file.js';
import { BrokerError } from '../errors.js';
import { asWriteRefusal } from './file-replace.js';
import { formatMode } from '../client/file-mode.js';
import path from 'node:path';
import {
  managedSettingsDir,
  parseSettingsText,
  readSettingsText,
  settingsPath,
  writeSettingsFile,
  type ClaudeContext,
  type SettingsScope,
} from './claude-settings.js';
import { sandboxEdit, type SandboxWanted } from './claude-sandbox.js';
import {
  describeHelper,
  helperCommand,
  HELPER_FORMAT,
  HELPER_SETTING,
  parseKeybrokerHelper,
  type HelperKind,
} from './helper-command.js';
import { unwrittenResult, writtenResult, type SetupChange, type SetupFileResult } from './setup-result.js';

export const HELPER_TTL_ENV = 'CLAUDE_CODE_API_KEY_HELPER_TTL_MS';
/** Claude Code's own default helper TTL. */
export const CLAUDE_DEFAULT_HELPER_TTL_MS = 300_000;
const MIN_HELPER_TTL_MS = 10_000;

/**
 * How often Claude Code should re-run the helper for a profile with this TTL: half of it, so a
 * session reads the cache well before the daemon's refresh-ahead point (a read is what keeps a
 * profile warm) and picks up a rotated key within half a TTL; at most Claude Code's default (the
 * shim answers from memory, so more often costs nothing), and at least 10 s.
 */
export function helperTtlFor(profileTtlMs: number): number {
  return Math.max(MIN_HELPER_TTL_MS, Math.min(CLAUDE_DEFAULT_HELPER_TTL_MS, Math.round(profileTtlMs / 2)));
}

export interface SetupClaudeOptions extends ClaudeContext {
  /** Absolute path of keybroker-shim. */
  shim: string;
  /** Undefined: no profile argument, the daemon picks one by Claude Code's working directory. */
  profile: string | undefined;
  helper: HelperKind;
  /** Write the project's .claude/settings.json instead of the user's. */
  project: boolean;
  /** Write Claude Code's managed settings (every user of the machine) instead of the user's. */
  managed?: boolean;
  /** Replace a different helper that is already set. */
  force: boolean;
  /**
   * Replace this helper (the one `--adopt` took over), and no other: a file whose helper changed
   * since it was adopted is left alone.
   */
  replacing?: string | undefined;
  dryRun: boolean;
  now: Date;
  /** The profile's TTL from the keybroker config (undefined: no config yet, use the default). */
  profileTtlMs: number | undefined;
  /** --sandbox: turn Claude Code's sandbox on and deny these in the same file (claude-sandbox.ts). */
  sandbox?: SandboxWanted | undefined;
}

export interface SetupClaudeResult extends SetupFileResult {
  scope: SettingsScope;
}

export async function setupClaude(options: SetupClaudeOptions): Promise<SetupClaudeResult> {
  if (options.managed && options.project)
    throw new BrokerError('USAGE', '--managed and --project name different files: pick one');
  const scope: SettingsScope = options.managed ? 'managed' : options.project ? 'project' : 'user';
  const managedDir = managedSettingsDir(options);
  if (scope === 'managed' && managedDir === undefined)
    throw new BrokerError('USAGE', `Claude Code has no managed settings file on ${options.platform}`);
  const file = scope === 'managed' ? path.join(managedDir!, 'managed-settings.json') : settingsPath(options, scope);
  const { original, data } = await readSettings(file);
  const key = HELPER_SETTING[options.helper];
  const command = helperCommand(options.shim, options.helper, options.profile);
  const changes: SetupChange[] = [];

  const helperChange = changeOfHelper(options, file, key, data[key], command);
  if (helperChange) changes.push(helperChange);

  let env = data.env;
  if (env !== undefined && (typeof env !== 'object' || env === null || Array.isArray(env))) {
    throw new BrokerError('CONFIG_INVALID', `${file}: "env" is not an object`, { fix: 'fix it by hand first' });
  }
  if (options.helper === 'api-key') {
    const ttl = String(helperTtlFor(options.profileTtlMs ?? DEFAULTS.ttlMs));
    const current = (env as Record<string, unknown> | undefined)?.[HELPER_TTL_ENV];
    if (current !== ttl) {
      changes.push({
        key: `env.${HELPER_TTL_ENV}`,
        before: current === undefined ? undefined : String(current),
        after: ttl,
      });
      env = { ...(env as Record<string, unknown> | undefined), [HELPER_TTL_ENV]: ttl };
    }
  }

  const sandbox = options.sandbox ? sandboxEdit(data, options.sandbox, file, options.home) : undefined;
  if (sandbox) changes.push(...sandbox.changes);

  const result: SetupClaudeResult = {
    scope,
    ...unwrittenResult(file, original, changes, collectWarnings(options, data)),
  };
  if (changes.length === 0 || options.dryRun) return result;

  // Spreading keeps every key where it was; new keys go at the end.
  const next: Record<string, unknown> = { ...data, [key]: command };
  if (env !== undefined) next.env = env;
  if (sandbox) next.sandbox = sandbox.sandbox;
  if (sandbox?.permissions) next.permissions = sandbox.permissions;
  // Managed settings are read by every user's Claude Code: readable by all, in a directory
  // anyone can enter, written by root.
  const modes = scope === 'managed' ? { newFileMode: 0o644, newDirMode: 0o755 } : {};
  let written;
  try {
    written = await writeSettingsFile(file, next, original, { now: options.now, ...modes });
  } catch (err) {
    throw asWriteRefusal(err, file, scope === 'managed' ? '; managed settings belong to root — run it with sudo' : '');
  }
  return { ...result, ...writtenResult(written) };
}

/** The settings file's text (undefined when there is none) and what it holds. */
async function readSettings(file: string): Promise<{ original: string | undefined; data: Record<string, unknown> }> {
  let original: string | undefined;
  try {
    original = await readSettingsText(file);
  } catch (err) {
    if (err instanceof FileCheckError)
      throw new BrokerError('CONFIG_INVALID', err.message, {
        fix: 'fix it by hand first (keybroker writes only a regular settings file)',
      });
    const code = (err as NodeJS.ErrnoException).code;
    if (code !== 'ENOENT') throw new BrokerError('CONFIG_INVALID', `cannot read ${file} (${code ?? 'error'})`);
  }
  const parsed = parseSettingsText(original ?? '');
  if ('error' in parsed) {
    throw new BrokerError('CONFIG_INVALID', `${file} ${parsed.error}`, {
      fix: 'fix it by hand first (keybroker does not rewrite a file it cannot parse)',
    });
  }
  return { original, data: parsed.data };
}

/**
 * The change to the helper setting (undefined when it already runs `command`); refuses to replace
 * another helper unless forced, adopted or an update of keybroker's own.
 */
function changeOfHelper(
  options: SetupClaudeOptions,
  file: string,
  key: string,
  existing: unknown,
  command: string,
): SetupChange | undefined {
  if (options.replacing !== undefined && existing !== options.replacing && existing !== command)
    throw new BrokerError('CONFIG_INVALID', `${key} in ${file} changed while keybroker was adopting it`, {
      fix: 'run the command again',
    });
  if (existing === command) return undefined;
  // keybroker's own shim is an update, not a conflict, when the user names the profile
  // (--profile work after setup claude): the change line shows before and after. Without
  // --profile, a helper that names one is kept unless forced: dropping it would silently hand
  // the choice to directories:.
  const ours = typeof existing === 'string' ? parseKeybrokerHelper(existing) : undefined;
  const update = isSameKeybrokerHelper(existing, options) || (ours !== undefined && options.profile !== undefined);
  const adopted = options.replacing !== undefined && existing === options.replacing;
  if (existing !== undefined && !options.force && !update && !adopted) {
    if (ours) {
      throw new BrokerError(
        'USAGE',
        `${file} already runs keybroker-shim for profile "${ours.profile}" in ${key}; keep it with --profile ${ours.profile}, or replace it with --force (the directory then picks the profile; a backup is written first)`,
      );
    }
    const shown = typeof existing === 'string' ? describeHelper(existing) : `a ${typeof existing}`;
    throw new BrokerError(
      'USAGE',
      `${file} already sets ${key} to another helper (${shown}); rerun with --force to replace it (a backup is written first)`,
    );
  }
  return {
    key,
    before:
      typeof existing === 'string'
        ? describeHelper(existing)
        : existing === undefined
          ? undefined
          : `(a ${typeof existing})`,
    after: command,
  };
}

/**
 * An earlier keybroker helper that asks for the same thing is ours to rewrite without --force: the
 * same profile (the shim moved), or `default` by name where the new one names none — what
 * `setup claude` wrote before per-directory profiles, which would otherwise pin every project to
 * `default`.
 */
function isSameKeybrokerHelper(existing: unknown, options: SetupClaudeOptions): boolean {
  if (typeof existing !== 'string') return false;
  const ours = parseKeybrokerHelper(existing);
  if (!ours || ours.format !== HELPER_FORMAT[options.helper]) return false;
  return ours.profile === options.profile || (options.profile === undefined && ours.profile === 'default');
}

function collectWarnings(options: SetupClaudeOptions, data: Record<string, unknown>): string[] {
  const warnings: string[] = [];
  if (options.managed) {
    warnings.push(...shimReachableByAll(options.shim));
  }
  if (options.project) {
    warnings.push(
      'project settings: in interactive sessions Claude Code runs a helper from .claude/settings.json only after you accept the workspace trust dialog; ' +
        'this file is usually committed, and the shim path in it is specific to this machine',
    );
  }
  const env = (typeof data.env === 'object' && data.env !== null ? data.env : {}) as Record<string, unknown>;
  if (options.helper === 'api-key') {
    for (const name of ['ANTHROPIC_AUTH_TOKEN', 'ANTHROPIC_API_KEY']) {
      if (typeof env[name] === 'string' && env[name] !== '')
        warnings.push(`this file's env block sets ${name}, which Claude Code uses before apiKeyHelper: remove it`);
      if (options.env[name])
        warnings.push(
          `${name} is set in this shell and Claude Code uses it before apiKeyHelper: unset it (keybroker doctor shows where it is set)`,
        );
    }
    for (const flag of ['CLAUDE_CODE_USE_BEDROCK', 'CLAUDE_CODE_USE_VERTEX', 'CLAUDE_CODE_USE_FOUNDRY']) {
      if (options.env[flag] || env[flag])
        warnings.push(`${flag} is set: Claude Code then uses that cloud provider and ignores apiKeyHelper`);
    }
  }
  if (options.helper === 'aws-credentials' && !options.env.CLAUDE_CODE_USE_BEDROCK && !env.CLAUDE_CODE_USE_BEDROCK) {
    warnings.push(
      'awsCredentialExport is used only with Bedrock: set CLAUDE_CODE_USE_BEDROCK=1 and AWS_REGION (in the env block or your shell)',
    );
  }
  return warnings;
}

/**
 * Managed settings run the helper as every user: the shim and node must be readable and
 * reachable by others (not under a home directory with mode 0700, say).
 */
function shimReachableByAll(shim: string): string[] {
  for (let p = shim; ; p = path.dirname(p)) {
    let mode: number;
    try {
      mode = fsSync.statSync(p).mode;
    } catch {
      return [`${shim} does not exist: install keybroker where every user can run it (e.g. npm install -g as root)`];
    }
    const needed = p === shim ? 0o004 : 0o001;
    if ((mode & needed) === 0) {
      return [
        `other users cannot ${p === shim ? 'read' : 'enter'} ${p} (mode ${formatMode(mode)}), so the helper fails for them: install keybroker system-wide (e.g. npm install -g as root)`,
      ];
    }
    if (path.dirname(p) === p) return [];
  }
}
