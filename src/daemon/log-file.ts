// The daemon's log file, kept bounded: when the daemon's stderr is its daemon.log (autostart's, or
// a LaunchAgent's), the daemon writes that file itself and, before a line would take it past
// LOG_MAX_BYTES, renames it to daemon.log.1 (replacing the previous one) and starts a new one.
//
// Not pino-roll or rotating-file-stream: both write asynchronously (pino-roll from a worker
// thread, which also costs the daemon memory and start-up time), and the daemon's log is written
// synchronously so that a crash cannot lose the lines that explain it. One size check per line
// and a rename are all that bounding it needs. Under systemd the log is journald's, which rotates
// it itself.
import fs from 'node:fs';
import path from 'node:path';

/** A running daemon's log holds at most this, plus one previous file of at most the same. */
export const LOG_MAX_BYTES = 10 * 1024 * 1024;
/** Tests set a small limit instead of writing 10 MiB (not documented: not a setting for users). */
export const LOG_MAX_BYTES_ENV = 'KEYBROKER_LOG_MAX_BYTES';

// As autostart opens it: never through a symlink, never blocking on a FIFO.
const FLAGS =
  fs.constants.O_WRONLY |
  fs.constants.O_CREAT |
  fs.constants.O_APPEND |
  (fs.constants.O_NOFOLLOW ?? 0) |
  (fs.constants.O_NONBLOCK ?? 0);

/** Where a daemon's log is when it is a file: beside the socket (autostart), or launchd's. */
export function daemonLogCandidates(socketPath: string, platform: NodeJS.Platform, home: string): string[] {
  const files = [path.join(path.dirname(socketPath), 'daemon.log')];
  if (platform === 'darwin') files.push(path.join(home, 'Library', 'Logs', 'keybroker', 'daemon.log'));
  return files;
}

/** The log file this process's stderr is (same device and inode), among `candidates`. */
export function stderrLogFile(candidates: readonly string[], fd = 2): string | undefined {
  let st: fs.Stats;
  try {
    st = fs.fstatSync(fd);
  } catch {
    return undefined;
  }
  if (!st.isFile()) return undefined;
  return candidates.find((file) => {
    try {
      const c = fs.lstatSync(file);
      return c.isFile() && c.dev === st.dev && c.ino === st.ino;
    } catch {
      return false;
    }
  });
}

export function logMaxBytes(env: NodeJS.ProcessEnv): number {
  const n = Number(env[LOG_MAX_BYTES_ENV]);
  return Number.isInteger(n) && n > 0 ? n : LOG_MAX_BYTES;
}

/**
 * A pino destination that appends to `file` synchronously and rotates it at `maxBytes`. A rename
 * or open that fails leaves it writing where it was (a log line is never worth a crash); it tries
 * again after another `maxBytes`.
 */
export function rotatingLogFile(file: string, maxBytes: number): { write(line: string): void } {
  let fd = fs.openSync(file, FLAGS, 0o600);
  let size = fs.fstatSync(fd).size;
  const rotate = (): void => {
    size = 0;
    try {
      fs.renameSync(file, `${file}.1`);
      const next = fs.openSync(file, FLAGS, 0o600);
      fs.closeSync(fd);
      fd = next;
    } catch {
      // keep the old descriptor
    }
  };
  return {
    write(line: string): void {
      const bytes = Buffer.from(line);
      if (size > 0 && size + bytes.length > maxBytes) rotate();
      try {
        fs.writeSync(fd, bytes);
      } catch {
        // a full disk: the line is lost, the daemon carries on
      }
      size += bytes.length;
    },
  };
}
