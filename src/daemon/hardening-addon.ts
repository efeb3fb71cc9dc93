// The daemon's hardening addon (native/hardening.c, built at install time by
// scripts/build-native.mjs where a C compiler exists): loaded once, by the daemon only. Without it
// — no compiler at install, npm told not to run install scripts, a build from another machine —
// the daemon runs as it always did, and its log, `status` and `doctor` say what that leaves open.
import { createRequire } from 'node:module';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { findPackageRoot, HARDENING_ADDON } from '../package-root.js';

/** What the C side exports. Each call answers an errno number where it fails; none throws. */
export interface HardeningAddon {
  /** Linux: PR_SET_DUMPABLE 0; macOS: PT_DENY_ATTACH. */
  setNonDumpable(): number;
  /** RLIMIT_CORE 0, soft and hard. */
  setCoreLimitZero(): number;
  /** The peer of a connected Unix socket, as the kernel recorded it at connect(). */
  peerCredentials(fd: number): [pid: number, uid: number] | number;
  /** The file a process runs (/proc/PID/exe; proc_pidpath on macOS). */
  executablePath(pid: number): string | number;
  /** [pid, start, parent, start, …] upwards from pid, to stopAt, init or maxDepth processes. */
  ancestry(pid: number, stopAt: number, maxDepth: number): number[] | number;
}

export type AddonLoad =
  | { addon: HardeningAddon; file: string; problem?: undefined }
  | { addon: undefined; file: string | undefined; problem: string };

let loaded: AddonLoad | undefined;

/** The addon, loaded on the first call; or why there is none, in one line. */
export function loadHardeningAddon(from: string = path.dirname(fileURLToPath(import.meta.url))): AddonLoad {
  loaded ??= load(from);
  return loaded;
}

function load(from: string): AddonLoad {
  if (process.platform !== 'linux' && process.platform !== 'darwin')
    return { addon: undefined, file: undefined, problem: `there is no hardening addon for ${process.platform}` };
  const root = findPackageRoot(from);
  if (root === undefined)
    return { addon: undefined, file: undefined, problem: `cannot find keybroker's package.json above ${from}` };
  const file = path.join(root, HARDENING_ADDON);
  try {
    const addon = createRequire(import.meta.url)(file) as HardeningAddon;
    if (typeof addon.executablePath !== 'function' || typeof addon.ancestry !== 'function')
      return { addon: undefined, file, problem: `${file} is not this keybroker's hardening addon` };
    return { addon, file };
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    if (code === 'MODULE_NOT_FOUND' || code === 'ENOENT')
      return {
        addon: undefined,
        file,
        problem: `the hardening addon is not built (${file} is missing: there was no C compiler when keybroker was installed, or npm did not run its install script)`,
      };
    // dlopen's own words name the file and the reason (wrong architecture, a missing symbol).
    const why = ((err as Error).message ?? String(err)).split('\n')[0]!.slice(0, 300);
    return { addon: undefined, file, problem: `cannot load the hardening addon: ${why}` };
  }
}

const ERRNO_NAMES = new Map(Object.entries(os.constants.errno).map(([name, n]) => [n, name]));

/** EPERM for 1: what the addon's numbers mean, for logs and status. */
export function errnoName(n: number): string {
  return ERRNO_NAMES.get(n) ?? `errno ${n}`;
}
