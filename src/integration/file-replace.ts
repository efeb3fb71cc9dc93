// Rewriting a file someone else owns the contents of (Claude Code's settings, the keybroker
// config): a timestamped backup beside it first, then a temporary file renamed over it, with the
// original file's mode — and never over a file that changed since it was read.
import fs from 'node:fs/promises';
import { constants as fsConstants } from 'node:fs';
import path from 'node:path';
import { readCheckedFile } from '../checked-file.js';
import { BrokerError } from '../errors.js';
import { shellQuote } from './helper-command.js';

export interface ReplaceFileOptions {
  /** For the backup's name. */
  now: Date;
  /** The text read before, which the file must still hold; undefined: the file must not exist. */
  original: string | undefined;
  /** The longest file this reads back for the backup. */
  maxBytes: number;
  /** Mode for a file that does not exist yet (default 0600). */
  newFileMode?: number;
  /** Mode for directories created for it (default 0700). */
  newDirMode?: number;
}

export interface ReplaceFileResult {
  /** The file written (the target of a symlink, when the path is one). */
  file: string;
  backup: string | undefined;
  created: boolean;
  mode: number;
}

/**
 * Replace `file` with `text`: back it up beside itself (0600), write a temporary file with the
 * original's mode, fsync, rename over it. A symlinked file (dotfile managers do this) is followed,
 * so the link survives and its target is what changes.
 */
export async function replaceFile(file: string, text: string, options: ReplaceFileOptions): Promise<ReplaceFileResult> {
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
  if (options.original !== undefined) {
    const st = await fs.stat(target);
    mode = st.mode & 0o7777;
    created = false;
    backup = await backupFile(target, options);
  } else {
    await fs.mkdir(dir, { recursive: true, mode: options.newDirMode ?? 0o700 });
  }
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
    if (options.original === undefined) {
      // link() fails if a file appeared meanwhile, where rename() would replace it unseen.
      const linked = await fs.link(tmp, target).then(
        () => true,
        (err: NodeJS.ErrnoException) => {
          if (err.code === 'EEXIST') throw changedMeanwhile(target);
          // A file system without hard links: rename, as for a file that exists.
          if (err.code === 'EPERM' || err.code === 'ENOTSUP' || err.code === 'EOPNOTSUPP') return false;
          throw err;
        },
      );
      if (linked) await fs.rm(tmp, { force: true });
      else await fs.rename(tmp, target);
    } else {
      await fs.rename(tmp, target);
    }
  } catch (err) {
    await fs.rm(tmp, { force: true });
    throw err;
  }
  return { file: target, backup, created, mode };
}

function changedMeanwhile(file: string): BrokerError {
  return new BrokerError(
    'CONFIG_INVALID',
    `${file} changed while keybroker was working on it, so it is left as it is`,
    {
      fix: 'run the command again',
    },
  );
}

/**
 * `NAME.keybroker-backup-20250101T120000Z`, never overwriting an earlier backup. Always 0600,
 * whatever the original's mode: a settings file's helper may have held a literal key (`echo
 * sk-…`), and a backup is exactly where nobody looks before sharing a machine. Created 0600 before
 * a byte is written, so there is no moment when it is readable by others.
 */
async function backupFile(file: string, options: ReplaceFileOptions): Promise<string> {
  const stamp = options.now
    .toISOString()
    .replace(/[-:]/g, '')
    .replace(/\.\d+Z$/, 'Z');
  const bytes = await readCheckedFile(file, {
    label: file,
    maxBytes: options.maxBytes,
    invalid: 'CONFIG_INVALID',
    trust: 'any',
  });
  try {
    if (bytes.toString('utf8') !== options.original) throw changedMeanwhile(file);
    for (let n = 0; n < 100; n++) {
      const candidate = `${file}.keybroker-backup-${stamp}${n === 0 ? '' : `-${n}`}`;
      let handle: fs.FileHandle;
      try {
        handle = await fs.open(
          candidate,
          fsConstants.O_WRONLY | fsConstants.O_CREAT | fsConstants.O_EXCL | fsConstants.O_NOFOLLOW,
          0o600,
        );
      } catch (err) {
        if ((err as NodeJS.ErrnoException).code === 'EEXIST') continue;
        throw err;
      }
      try {
        await handle.chmod(0o600);
        await handle.writeFile(bytes);
        await handle.sync();
      } finally {
        await handle.close();
      }
      return candidate;
    }
  } finally {
    bytes.fill(0);
  }
  throw new BrokerError('INTERNAL', `too many backups of ${file} in one second`);
}

/** The shell line that undoes a replaceFile: the backup copied back, or the file it created removed. */
export function undoReplace(written: Pick<ReplaceFileResult, 'file' | 'backup'>): string {
  return written.backup
    ? `cp ${shellQuote(written.backup)} ${shellQuote(written.file)}`
    : `rm ${shellQuote(written.file)}`;
}

/**
 * A replaceFile the file system refused (EACCES, EPERM, EROFS) as PERMISSION_DENIED naming the
 * file, with `hint` after it; any other error as it was.
 */
export function asWriteRefusal(err: unknown, file: string, hint = ''): unknown {
  const code = (err as NodeJS.ErrnoException).code;
  if (code === 'EACCES' || code === 'EPERM' || code === 'EROFS')
    return new BrokerError('PERMISSION_DENIED', `cannot write ${file} (${code})${hint}`);
  return err;
}
