// Whether a socket path is safe to trust, checked by whoever connects (the shim, every CLI command,
// doctor) and by the daemon for its own directory: git credential-cache's "permissions on your
// socket directory are too loose". A socket in a directory someone else controls may be a fake
// daemon handing out its own "key" and reading the consumer info we send it.
// Built-ins only: the shim imports this.
import fs from 'node:fs';
import path from 'node:path';
import type { WireError } from '../protocol/messages.js';
import { formatMode } from './file-mode.js';

export interface PathProblem {
  /** UNSAFE_PATH: refuse. MISSING: nothing there yet (a daemon, or autostart, may create it). */
  kind: 'UNSAFE_PATH' | 'MISSING';
  /** What is wrong, naming the path and what was found. */
  what: string;
  /** What to do about it. */
  fix: string;
}

/** What a client says when it will not connect, as an error's fields (renderError makes the line). */
export const refusal = (p: Pick<PathProblem, 'what' | 'fix'>): Pick<WireError, 'message' | 'fix'> => ({
  message: `refusing to connect: ${p.what}`,
  fix: p.fix,
});

/** The permission bits the checks look at (the native shim's copies are generated from these). */
export const MODE_BITS = {
  /** A private directory has none of these: group and others cannot enter or list it. */
  groupOther: 0o077,
  /** A directory above it has none of these, unless it has the sticky bit. */
  groupOtherWrite: 0o022,
  sticky: 0o1000,
} as const;

type Problem = Pick<PathProblem, 'what' | 'fix'>;
/** Numbers as the messages show them; text, so scripts/native-header.mjs can fill in placeholders. */
type Shown = string | number;

/**
 * What the checks say, as data: the native shim's copies of these messages are generated from
 * them by scripts/native-header.mjs, so the two shims word a refusal the same.
 */
export const PATH_PROBLEMS = {
  symlink: (label: string, dir: string): Problem => ({
    what: `${label} ${dir} is a symbolic link`,
    fix: `use a real directory (mode 0700): run: rm ${dir}`,
  }),
  notDirectory: (label: string, dir: string): Problem => ({
    what: `${label} ${dir} is not a directory`,
    fix: `run: rm ${dir}`,
  }),
  notOwned: (label: string, dir: string, owner: Shown, uid: Shown): Problem => ({
    what: `${label} ${dir} is owned by uid ${owner}, not by you (uid ${uid})`,
    fix:
      label === 'socket directory'
        ? 'use --socket with a path in a directory of your own'
        : 'use a directory of your own (XDG_STATE_HOME)',
  }),
  notPrivate: (label: string, dir: string, mode: string): Problem => ({
    what: `${label} ${dir} is accessible by group or others (mode ${mode})`,
    fix: `run: chmod 700 ${dir}`,
  }),
  ancestorNotOwned: (dir: string, owner: Shown, uid: Shown): Problem => ({
    what: `directory ${dir} above the socket is owned by uid ${owner}, not by you (uid ${uid}) or root, so they could swap the socket directory`,
    fix: 'use --socket with a path in a directory of your own',
  }),
  ancestorWritable: (dir: string, mode: string): Problem => ({
    what: `directory ${dir} above the socket is writable by group or others without the sticky bit (mode ${mode}), so they could swap the socket directory`,
    fix: `run: chmod go-w ${dir}, or use --socket with a path in a directory of your own`,
  }),
  notSocket: (socketPath: string, mode: string): Problem => ({
    what: `${socketPath} is not a socket (mode ${mode})`,
    fix: `run: rm ${socketPath}`,
  }),
  socketNotOwned: (socketPath: string, owner: Shown, uid: Shown): Problem => ({
    what: `socket ${socketPath} is owned by uid ${owner}, not by you (uid ${uid}), so it is not your daemon`,
    fix: `remove it (rm ${socketPath}) and start yours: keybroker daemon`,
  }),
};
const P = PATH_PROBLEMS;

function ownUid(): number | undefined {
  return typeof process.geteuid === 'function' ? process.geteuid() : undefined;
}

/**
 * What is wrong with `dir` as a private directory (the socket's, by default), if anything: it must
 * be a real directory (lstat: no symlink followed) owned by the effective uid, with no group or
 * other bits.
 */
export function privateDirProblem(
  dir: string,
  st: fs.Stats,
  uid: number | undefined = ownUid(),
  label = 'socket directory',
): Problem | undefined {
  if (st.isSymbolicLink()) return P.symlink(label, dir);
  if (!st.isDirectory()) return P.notDirectory(label, dir);
  if (uid !== undefined && st.uid !== uid) return P.notOwned(label, dir, st.uid, uid);
  if ((st.mode & MODE_BITS.groupOther) !== 0) return P.notPrivate(label, dir, formatMode(st.mode));
  return undefined;
}

/**
 * What is wrong with the directories above `dir` (the socket's directory), if anything: each must
 * be owned by the effective uid or root, and nobody else may write to it unless it has the sticky
 * bit (as /tmp does: then others cannot rename what is ours). Otherwise another user could rename
 * the socket directory away and put one of theirs in its place, between a client's check and its
 * connect. OpenSSH checks the directories above authorized_keys the same way. They are looked at
 * along the real path (symbolic links above, such as macOS's /tmp, resolved first).
 */
export function ancestorsProblem(dir: string, uid: number | undefined = ownUid()): Problem | undefined {
  if (uid === undefined) return undefined;
  let current: string;
  try {
    // .native: one realpath(3), where the JavaScript version lstats each component (the shim's
    // start-up pays for every call).
    current = fs.realpathSync.native(path.dirname(dir));
  } catch {
    return undefined; // gone: whoever checks the socket directory itself says so
  }
  for (;;) {
    let st: fs.Stats;
    try {
      st = fs.lstatSync(current);
    } catch {
      return undefined;
    }
    if (st.uid !== uid && st.uid !== 0) return P.ancestorNotOwned(current, st.uid, uid);
    if ((st.mode & MODE_BITS.groupOtherWrite) !== 0 && (st.mode & MODE_BITS.sticky) === 0)
      return P.ancestorWritable(current, formatMode(st.mode));
    const parent = path.dirname(current);
    if (parent === current) return undefined;
    current = parent;
  }
}

/**
 * Check a socket before connecting to it: its directory, the directories above that, the socket.
 * Synchronous: a realpath and a few lstat calls, cheap next to a connect, and the shim has
 * nothing else to do meanwhile.
 */
export function checkSocketPath(socketPath: string, uid: number | undefined = ownUid()): PathProblem | undefined {
  // No uid on this platform (Windows): there is no Unix ownership to check.
  if (uid === undefined) return undefined;
  const dir = path.dirname(socketPath);
  let dirStat: fs.Stats;
  try {
    dirStat = fs.lstatSync(dir);
  } catch {
    return { kind: 'MISSING', what: `no socket directory ${dir}`, fix: 'start the daemon: keybroker daemon' };
  }
  const dirProblem = privateDirProblem(dir, dirStat, uid) ?? ancestorsProblem(dir, uid);
  if (dirProblem) return { kind: 'UNSAFE_PATH', ...dirProblem };
  let st: fs.Stats;
  try {
    st = fs.lstatSync(socketPath);
  } catch {
    return { kind: 'MISSING', what: `no socket at ${socketPath}`, fix: 'start the daemon: keybroker daemon' };
  }
  if (!st.isSocket()) return { kind: 'UNSAFE_PATH', ...P.notSocket(socketPath, (st.mode >>> 0).toString(8)) };
  if (st.uid !== uid) return { kind: 'UNSAFE_PATH', ...P.socketNotOwned(socketPath, st.uid, uid) };
  return undefined;
}
