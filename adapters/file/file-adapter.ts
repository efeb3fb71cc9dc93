// file: — a file holding the key, re-read on every refresh.
//
//   profiles:
//     default:
//       source: file:~/.config/keybroker/anthropic-key
//
// The path is absolute or starts with ~/. The file must be a regular file that only its owner can
// read (mode 0600 or 0400): a group- or world-readable key file is refused, not served.
// One trailing newline is trimmed, so `echo KEY > file` works.
import fs from 'node:fs/promises';
import { constants as fsConstants } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import type { Adapter, AdapterInit, FetchResult } from '../../src/adapter.js';
import { BrokerError } from '../../src/errors.js';
import { SecretValue } from '../../src/secret.js';

interface FileRef {
  path: string;
  written: string;
}

const MAX_FILE_BYTES = 64 * 1024;

export function createAdapter(init: AdapterInit): Adapter<FileRef> {
  const home = init.env.HOME || os.homedir();
  return {
    kind: 'file',
    parse(uri) {
      const written = uri.slice('file:'.length);
      let p = written;
      if (p === '~' || p.startsWith('~/')) p = path.join(home, p.slice(1));
      if (!path.isAbsolute(p)) {
        throw new BrokerError('CONFIG_INVALID', `"${uri}": a file source needs an absolute path or one starting with ~/ (the daemon's working directory is not yours)`);
      }
      return { path: path.normalize(p), written };
    },
    describe: (ref) => `file:${ref.written}`,
    async fetch(ref): Promise<FetchResult> {
      let handle: fs.FileHandle;
      try {
        // O_NOFOLLOW is not used: a symlink into a private directory is a common, fine setup;
        // the mode check below applies to the file actually opened.
        handle = await fs.open(ref.path, fsConstants.O_RDONLY | fsConstants.O_NONBLOCK);
      } catch (err) {
        throw translateFileError(err, ref.path);
      }
      try {
        const st = await handle.stat();
        if (!st.isFile()) throw new BrokerError('INVALID_VALUE', `${ref.path} is not a regular file`);
        if ((st.mode & 0o077) !== 0) {
          const mode = (st.mode & 0o777).toString(8).padStart(4, '0');
          throw new BrokerError('PERMISSION_DENIED', `${ref.path} is readable by others (mode ${mode}); refusing to serve it — run: chmod 600 ${ref.path}`);
        }
        if (typeof process.getuid === 'function' && st.uid !== process.getuid()) {
          throw new BrokerError('PERMISSION_DENIED', `${ref.path} is owned by uid ${st.uid}, not by you; refusing to serve it`);
        }
        if (st.size > MAX_FILE_BYTES) {
          throw new BrokerError('INVALID_VALUE', `${ref.path} is ${st.size} bytes; a key file may hold at most ${MAX_FILE_BYTES}`);
        }
        const bytes = await handle.readFile();
        let end = bytes.length;
        if (end > 0 && bytes[end - 1] === 0x0a) end--;
        if (end > 0 && bytes[end - 1] === 0x0d) end--;
        const value = SecretValue.fromBytes(bytes.subarray(0, end));
        bytes.fill(0);
        return { value };
      } catch (err) {
        if (err instanceof BrokerError) throw err;
        throw translateFileError(err, ref.path);
      } finally {
        await handle.close();
      }
    },
    async close() {},
  };
}

/** The file adapter's error translator. */
export function translateFileError(err: unknown, filePath: string): BrokerError {
  const code = (err as NodeJS.ErrnoException | undefined)?.code;
  switch (code) {
    case 'ENOENT':
      return new BrokerError('NOT_FOUND', `${filePath} does not exist — create it with: (umask 077; printf '%s\\n' 'YOUR-KEY' > ${filePath})`);
    case 'EACCES':
    case 'EPERM':
      return new BrokerError('PERMISSION_DENIED', `cannot read ${filePath}: permission denied`);
    case 'EISDIR':
      return new BrokerError('INVALID_VALUE', `${filePath} is a directory, not a key file`);
    default:
      return new BrokerError('SOURCE_ERROR', `cannot read ${filePath}${code ? ` (${code})` : ''}`);
  }
}
