// What `setup claude` and `setup codex` print about the file they changed (or would): the file,
// each change, the TTL the helper's interval was fitted to, the backup, the mode and the undo line.
// The result they render is ../integration/setup-result.ts.
import { collapseHome } from '../client/socket-path.js';
import { formatMode } from '../client/file-mode.js';
import { formatDuration } from '../duration.js';
import type { SetupFileResult } from '../integration/setup-result.js';

export type ChangedFile = Pick<SetupFileResult, 'changes' | 'created' | 'backup' | 'mode'>;

/**
 * `head`: how the file is named after "changed"; `fitted`: the profile (undefined: each project's)
 * and TTL the interval was fitted to, when there is one to show.
 */
export function changedFileLines(
  result: ChangedFile,
  head: string,
  dryRun: boolean,
  fitted: { profile: string | undefined; ttlMs: number } | undefined,
  home: string,
): string[] {
  const lines = [`${dryRun ? 'would change' : result.created ? 'created' : 'changed'} ${head}:`];
  for (const c of result.changes)
    lines.push(`  ${c.key}: ${c.before === undefined ? '(unset)' : c.before} -> ${c.after}`);
  if (fitted)
    lines.push(
      fitted.profile === undefined
        ? `  (the shortest TTL of the profiles it can serve is ${formatDuration(fitted.ttlMs)})`
        : `  (profile "${fitted.profile}" has a TTL of ${formatDuration(fitted.ttlMs)})`,
    );
  if (result.backup) lines.push(`backup: ${collapseHome(result.backup, home)}`);
  if (result.mode !== undefined) lines.push(`mode: ${formatMode(result.mode)}`);
  return lines;
}

/** One line with the shell commands that put every changed file back (none when nothing changed). */
export function undoLines(undo: string[]): string[] {
  return undo.length > 0 ? [`undo: ${undo.join(' && ')}`] : [];
}
