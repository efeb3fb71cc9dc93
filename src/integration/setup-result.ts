// What `setup claude` and `setup codex` report about the file they change (or would, on a dry run):
// each change, whether it was written, its backup and mode, warnings, and the shell line that puts
// it back. ../cli/setup-output.ts renders it.
import { undoReplace, type ReplaceFileResult } from './file-replace.js';

export interface SetupChange {
  key: string;
  /** Printable: a foreign helper is shown by its program name only. */
  before: string | undefined;
  after: string;
}

export interface SetupFileResult {
  file: string;
  changes: SetupChange[];
  written: boolean;
  created: boolean;
  backup: string | undefined;
  mode: number | undefined;
  warnings: string[];
  /** Shell commands that put things back as they were. */
  undo: string[];
}

/** The result before anything is written: `original` is the file's text, undefined when there is none. */
export function unwrittenResult(
  file: string,
  original: string | undefined,
  changes: SetupChange[],
  warnings: string[],
): SetupFileResult {
  return {
    file,
    changes,
    written: false,
    created: original === undefined,
    backup: undefined,
    mode: undefined,
    warnings,
    undo: [],
  };
}

/** What writing the file (replaceFile) adds to the result: its backup, its mode and its undo line. */
export function writtenResult(
  written: ReplaceFileResult,
): Pick<SetupFileResult, 'written' | 'created' | 'backup' | 'mode' | 'undo'> {
  return {
    written: true,
    created: written.created,
    backup: written.backup,
    mode: written.mode,
    undo: [undoReplace(written)],
  };
}
