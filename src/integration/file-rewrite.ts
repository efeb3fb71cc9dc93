// Rewriting another program's config file safely — Claude Code's settings.json (`setup claude`),
// Codex's config.toml (`setup codex`): a timestamped backup beside it first, then a temporary file
// renamed over it, with the original file's mode.
import { constants as fsConstants } from 'node:fs';
import fs from 'node:fs/promises';
import path from 'node:path';
import { readCheckedFile } from '../checked-file.js';
import { BrokerError } from '../errors.js';

export interface RewriteOptions {
  /** For the backup's name. */
  now: Date;
  /** Mode for a file that does not exist yet. */
  newFileMode?: number;
  /** Mode for directories created for it. */
  newDirMode?: number;
}

export interface RewriteResult {
  /** The file written (the target of a symlink, when the path is one). */
  file: string;
  backup: string | undefined;
  created: boolean;
  mode: number;
}

/**
 * Replace `file` (whose text was `original`; undefined: it does not exist) with `text`: back it up
 * beside itself, write a temporary file with the original's mode, fsync, rename over it. A
 * symlinked file (dotfile managers do this) is followed, so the link survives and its target is
 * what changes. `maxBytes`: the most the backup reads of it.
 */
export async function rewriteFile(
  file: string,
  text: string,
  original: string | undefined,
  options: RewriteOptions & { maxBytes: number },
): Promise<RewriteResult> {
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
    backup = await backupFile(target, options.now, options.maxBytes);
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
    await fs.rename(tmp, target);
  } catch (err) {
    await fs.rm(tmp, { force: true });
    throw err;
  }
  return { file: target, backup, created, mode };
}

/**
 * `settings.json.keybroker-backup-20250101T120000Z`, never overwriting an earlier backup. Always
 * 0600, whatever the original's mode: what it replaces may have held a literal key (`echo sk-…`
 * as a helper, an `experimental_bearer_token`), and a backup is exactly where nobody looks before
 * sharing a machine. Created 0600 before a byte is written, so there is no moment when it is
 * readable by others.
 */
async function backupFile(file: string, now: Date, maxBytes: number): Promise<string> {
  const stamp = now
    .toISOString()
    .replace(/[-:]/g, '')
    .replace(/\.\d+Z$/, 'Z');
  const bytes = await readCheckedFile(file, { label: file, maxBytes, invalid: 'CONFIG_INVALID', trust: 'any' });
  try {
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
