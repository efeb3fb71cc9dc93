// What the daemon keeps an eye on while it runs. Each watcher is a function that starts watching
// and returns the function that stops it; the daemon's stop calls every one.
import fs from 'node:fs/promises';
import { unwatchFile, watchFile, type Stats } from 'node:fs';
import path from 'node:path';
import { MANAGED_CONFIG_ENV, platformManagedConfigPath } from '../config/managed.js';
import { privateDirProblem } from '../client/socket-check.js';

export type StopWatching = () => void;

/**
 * How often the daemon re-checks its socket directory and socket: a directory swapped or loosened
 * after start-up, or a socket removed, is noticed within this long. Two lstat calls each time.
 */
export const SOCKET_CHECK_INTERVAL_MS = 2_000;

export interface SocketWatch {
  /** The socket's directory, and its inode when the daemon bound (the one it checked). */
  dir: string;
  ino: number;
  /** Whether the socket file is still the one bound, as a message when it is not (none under socket activation). */
  socketFileProblem?: () => Promise<string | undefined>;
  /** Called once, with what is wrong; watching has stopped by then. */
  onProblem(problem: string): void;
}

/**
 * The directory was private when the daemon bound; someone who can change that later (root, or
 * the owner of a shared parent) could swap it for one holding their own socket, or open it up.
 * Nothing keeps a directory from changing under a held fd, so it is re-checked on a timer.
 */
export function watchSocket(watch: SocketWatch): StopWatching {
  let stopped = false;
  const check = async (): Promise<void> => {
    let problem: string | undefined;
    const st = await fs.lstat(watch.dir).catch((err: NodeJS.ErrnoException) => err);
    if (st instanceof Error) problem = `socket directory ${watch.dir} is gone (${st.code ?? 'error'})`;
    else
      problem =
        privateDirProblem(watch.dir, st)?.what ??
        (st.ino !== watch.ino ? `socket directory ${watch.dir} was replaced` : undefined);
    if (!problem) problem = await watch.socketFileProblem?.();
    if (!problem || stopped) return;
    stop();
    watch.onProblem(problem);
  };
  const timer = setInterval(() => {
    if (!stopped) void check();
  }, SOCKET_CHECK_INTERVAL_MS);
  timer.unref();
  const stop = (): void => {
    stopped = true;
    clearInterval(timer);
  };
  return stop;
}

export interface ManagedConfigWatch {
  env: NodeJS.ProcessEnv;
  /** The platform's managed config path to watch (tests); default: the platform's. */
  platformPath?: string | undefined;
  /** How often to stat it (0: never). */
  intervalMs: number;
  onChange(file: string): void;
}

/**
 * An administrator (or MDM) replacing the managed config cannot signal every user's daemon, so
 * each daemon looks at it (a stat every interval, also for a file not there yet) and reloads when
 * it changes. Both places one may be are watched: the platform's path and $KEYBROKER_MANAGED_CONFIG.
 */
export function watchManagedConfig(watch: ManagedConfigWatch): StopWatching {
  if (watch.intervalMs <= 0) return () => {};
  const fromEnv = watch.env[MANAGED_CONFIG_ENV];
  const paths = [watch.platformPath ?? platformManagedConfigPath(), fromEnv ? path.resolve(fromEnv) : undefined].filter(
    (p): p is string => p !== undefined,
  );
  const listeners = paths.map((file) => {
    const listener = (curr: Stats, prev: Stats): void => {
      if (
        curr.mtimeMs === prev.mtimeMs &&
        curr.ino === prev.ino &&
        curr.size === prev.size &&
        curr.mode === prev.mode &&
        curr.uid === prev.uid
      )
        return;
      watch.onChange(file);
    };
    watchFile(file, { interval: watch.intervalMs, persistent: false }, listener);
    return [file, listener] as const;
  });
  return () => {
    for (const [file, listener] of listeners) unwatchFile(file, listener);
  };
}
