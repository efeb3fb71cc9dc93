// The one way keybroker reads a file it did not write: configs, Claude Code's settings, key and
// token files. Opened non-blocking, so a FIFO (or a device) put in a file's place is refused at once
// instead of hanging a reload — and with it SIGTERM — forever; checked on the opened descriptor
// (fstat), so a swap between check and read cannot fool it; read with a bound.
import fs from 'node:fs/promises';
import { constants as fsConstants, type Stats } from 'node:fs';
import { BrokerError, type ErrorCode } from './errors.js';
import { renderError } from './protocol/messages.js';
import { formatMode } from './client/file-mode.js';

/**
 * Who must own the file, and who else may touch it:
 * - secret: a key or token. Owned by you and readable by nobody else; or owned by root and
 *   writable by nobody else (a Kubernetes secret mount, a Vault Agent sink an admin provisioned:
 *   root can read your files anyway, so trusting root's costs nothing).
 * - config: it can run commands (exec: sources). Owned by you, writable by nobody else.
 * - any: no ownership rule (Claude Code's settings.json, which Claude Code itself reads as is).
 */
export type FileTrust = 'secret' | 'config' | 'any';

export interface CheckedFileOptions {
  /** How messages name the file, e.g. "token file ~/op-token". */
  label: string;
  maxBytes: number;
  /** The code for a file that is not a regular file, or is too large to be what it should hold. */
  invalid: ErrorCode;
  trust: FileTrust;
  /**
   * Refuse a symlink in the last component. Off by default: a symlink into a private directory is
   * a common, fine setup (dotfile managers); the checks apply to the file actually opened.
   */
  noFollow?: boolean;
}

/**
 * A file refused by its type, size, owner or mode, with what to do about it (`fix`). `problem`
 * says both in one line, without the file's name: a config problem's text.
 */
export class FileCheckError extends BrokerError {
  readonly problem: string;

  constructor(code: ErrorCode, label: string, what: string, fix?: string) {
    super(code, `${label} ${what}`, { fix });
    this.problem = renderError({ message: what, fix });
  }
}

/**
 * Read a file after checking, on the opened descriptor, that it is a regular file no larger than
 * `maxBytes` that `trust` allows. Errors from opening or reading it (ENOENT, EACCES, ELOOP…) are
 * thrown as they are, for the caller's own translator. The caller wipes a buffer holding a secret.
 */
export async function readCheckedFile(file: string, options: CheckedFileOptions): Promise<Buffer> {
  const flags = fsConstants.O_RDONLY | fsConstants.O_NONBLOCK | (options.noFollow ? fsConstants.O_NOFOLLOW : 0);
  const handle = await fs.open(file, flags);
  try {
    const st = await handle.stat();
    if (!st.isFile())
      throw new FileCheckError(options.invalid, options.label, `is not a regular file (it is ${fileType(st)})`);
    checkTrust(st, file, options);
    if (st.size > options.maxBytes)
      throw new FileCheckError(
        options.invalid,
        options.label,
        `is ${st.size} bytes; it may hold at most ${options.maxBytes}`,
      );
    // Bounded even if the file grows after the fstat.
    const buffer = Buffer.alloc(options.maxBytes + 1);
    let length = 0;
    for (;;) {
      const { bytesRead } = await handle.read(buffer, length, buffer.length - length, null);
      if (bytesRead === 0) break;
      length += bytesRead;
      if (length > options.maxBytes) {
        buffer.fill(0);
        throw new FileCheckError(options.invalid, options.label, `is larger than ${options.maxBytes} bytes`);
      }
    }
    const out = Buffer.from(buffer.subarray(0, length));
    buffer.fill(0);
    return out;
  } finally {
    await handle.close();
  }
}

/** A secret file: see FileTrust. */
export function readPrivateFile(file: string, options: Omit<CheckedFileOptions, 'trust'>): Promise<Buffer> {
  return readCheckedFile(file, { ...options, trust: 'secret' });
}

function checkTrust(st: Stats, file: string, options: CheckedFileOptions): void {
  if (options.trust === 'any') return;
  const me = typeof process.geteuid === 'function' ? process.geteuid() : undefined;
  if (me === undefined) return;
  const mode = formatMode(st.mode);
  if (options.trust === 'config') {
    if (st.uid !== me) {
      throw new FileCheckError(
        'CONFIG_INVALID',
        options.label,
        `is owned by uid ${st.uid}, not by you (uid ${me}); the config can run commands, so keybroker reads only your own`,
        'copy it and chown it',
      );
    }
    if ((st.mode & 0o022) !== 0) {
      throw new FileCheckError(
        'CONFIG_INVALID',
        options.label,
        `is writable by group or others (mode ${mode}); the config can run commands`,
        `run: chmod 600 ${file}`,
      );
    }
    return;
  }
  if (st.uid === me) {
    if ((st.mode & 0o077) !== 0) {
      throw new FileCheckError(
        'PERMISSION_DENIED',
        options.label,
        `is readable by others (mode ${mode}); refusing to use it`,
        `run: chmod 600 ${file}`,
      );
    }
    return;
  }
  if (st.uid === 0) {
    if ((st.mode & 0o022) !== 0) {
      throw new FileCheckError(
        'PERMISSION_DENIED',
        options.label,
        `is owned by root but writable by group or others (mode ${mode}); refusing to use it`,
        `ask its owner to run: chmod go-w ${file}`,
      );
    }
    return;
  }
  throw new FileCheckError(
    'PERMISSION_DENIED',
    options.label,
    `is owned by uid ${st.uid}, not by you (uid ${me}) or root; refusing to use it`,
    'copy it to a file of your own with mode 0600',
  );
}

function fileType(st: Stats): string {
  if (st.isFIFO()) return 'a FIFO';
  if (st.isDirectory()) return 'a directory';
  if (st.isSocket()) return 'a socket';
  if (st.isCharacterDevice() || st.isBlockDevice()) return 'a device';
  return 'not a file';
}
