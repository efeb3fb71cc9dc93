// A private directory (0700, ours, not a symbolic link), created if needed: the socket's, and the
// audit trail's. One check for both, below the daemon and the audit trail that use it.
import fs from 'node:fs/promises';
import path from 'node:path';
import { ancestorsProblem, privateDirProblem } from './client/socket-check.js';
import { BrokerError } from './errors.js';

/** Create `dir` (mode 0700) if needed, then check nobody else can get into it. */
export async function ensurePrivateDir(dir: string, label = 'socket directory'): Promise<void> {
  await fs.mkdir(path.dirname(dir), { recursive: true, mode: 0o700 });
  try {
    await fs.mkdir(dir, { mode: 0o700 });
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== 'EEXIST') {
      throw new BrokerError(
        'UNSAFE_PATH',
        `cannot create ${label} ${dir} (${(err as NodeJS.ErrnoException).code ?? 'error'})`,
      );
    }
  }
  await checkPrivateDir(dir, label);
}

/** lstat, not stat: a symbolic link is refused rather than followed (the O_NOFOLLOW of directories). */
export async function checkPrivateDir(dir: string, label = 'socket directory'): Promise<void> {
  const problem =
    privateDirProblem(dir, await fs.lstat(dir), undefined, label) ??
    (label === 'socket directory' ? ancestorsProblem(dir) : undefined);
  if (problem) throw new BrokerError('UNSAFE_PATH', problem.what, { fix: problem.fix });
}
