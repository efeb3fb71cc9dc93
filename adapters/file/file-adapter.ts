// file: — a file holding the key, re-read on every refresh.
//
//   profiles:
//     default:
//       source: file:~/.config/keybroker/anthropic-key
//
// The path is absolute or starts with ~/. The file must be a regular file that you own and only you
// can read (mode 0600 or 0400), or one root owns and nobody else can write (a Kubernetes secret
// mount, a file an admin provisioned); anything else is refused, not served.
// One trailing newline is trimmed, so `echo KEY > file` works.
import os from 'node:os';
import {
  readPrivateFile,
  resolveUserPath,
  type Adapter,
  type AdapterInit,
  type FetchResult,
} from '../../src/adapter.js';
import { BrokerError } from '../../src/errors.js';
import { SecretValue, withoutTrailingNewline } from '../../src/secret.js';

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
      return { path: resolveUserPath(written, home, `file:${written}`), written };
    },
    describe: (ref) => `file:${ref.written}`,
    secretLocations: (ref) => ({ files: [ref.path], env: [] }),
    async fetch(ref): Promise<FetchResult> {
      let bytes: Buffer;
      try {
        bytes = await readPrivateFile(ref.path, {
          label: ref.path,
          maxBytes: MAX_FILE_BYTES,
          invalid: 'INVALID_VALUE',
        });
      } catch (err) {
        if (err instanceof BrokerError) throw err;
        throw translateFileError(err, ref.path);
      }
      const value = SecretValue.fromBytes(withoutTrailingNewline(bytes));
      bytes.fill(0);
      return { value };
    },
    async close() {},
  };
}

/** The file adapter's error translator. */
export function translateFileError(err: unknown, filePath: string): BrokerError {
  const code = (err as NodeJS.ErrnoException | undefined)?.code;
  switch (code) {
    case 'ENOENT':
      return new BrokerError('NOT_FOUND', `${filePath} does not exist`, {
        fix: `create it with: (umask 077; printf '%s\\n' 'YOUR-KEY' > ${filePath})`,
      });
    case 'EACCES':
    case 'EPERM':
      return new BrokerError('PERMISSION_DENIED', `cannot read ${filePath}: permission denied`);
    case 'EISDIR':
      return new BrokerError('INVALID_VALUE', `${filePath} is a directory, not a key file`);
    default:
      return new BrokerError('SOURCE_ERROR', `cannot read ${filePath}${code ? ` (${code})` : ''}`);
  }
}
