// Reading why an autostarted daemon stopped, from the end of its log, so the shim can print the
// daemon's own one-line reason and fix ("… mode 0755 — run: chmod 700 …") instead of "see
// daemon.log". Built-ins only: the shim imports it.
import fs from 'node:fs';
import { renderError, type WireError } from '../protocol/messages.js';

/** Only the end of the log is read: the reason is the last thing a stopping daemon writes. */
export const LOG_TAIL_BYTES = 16 * 1024;
const MAX_REASON_CHARS = 400;

/**
 * The reason in the last fatal or error record of a daemon log (its err rendered, else its msg)
 * written after byte `sinceByte`,
 * or the last "keybroker: …" line the daemon printed; undefined when there is none, or when the
 * file is not a regular file of ours (it is opened without following a symlink, and never
 * waits on a FIFO).
 */
export function lastDaemonFailure(logFile: string, sinceByte = 0): string | undefined {
  let fd: number;
  try {
    fd = fs.openSync(logFile, fs.constants.O_RDONLY | fs.constants.O_NOFOLLOW | fs.constants.O_NONBLOCK);
  } catch {
    return undefined;
  }
  try {
    const st = fs.fstatSync(fd);
    if (!st.isFile()) return undefined;
    if (typeof process.geteuid === 'function' && st.uid !== process.geteuid()) return undefined;
    // From `sinceByte` on (what this daemon wrote, not an earlier one), at most the last 16 KiB.
    const start = Math.max(Math.min(sinceByte, st.size), st.size - LOG_TAIL_BYTES);
    const buf = Buffer.alloc(st.size - start);
    const read = fs.readSync(fd, buf, 0, buf.length, start);
    return reasonFrom(buf.subarray(0, read).toString('utf8'));
  } catch {
    return undefined;
  } finally {
    fs.closeSync(fd);
  }
}

function reasonFrom(tail: string): string | undefined {
  const lines = tail.split('\n');
  for (let i = lines.length - 1; i >= 0; i--) {
    const line = lines[i]!.trim();
    if (line.startsWith('keybroker: ')) return clean(line.slice('keybroker: '.length));
    if (!line.startsWith('{')) continue;
    let record: { level?: unknown; msg?: unknown; err?: { message?: unknown; profile?: unknown; fix?: unknown } };
    try {
      record = JSON.parse(line) as typeof record;
    } catch {
      continue; // the first line of the tail may be cut
    }
    if (typeof record.level !== 'number' || record.level < 50) continue;
    const reason =
      typeof record.err?.message === 'string'
        ? renderError(record.err as WireError)
        : typeof record.msg === 'string'
          ? record.msg
          : undefined;
    if (reason) return clean(reason);
  }
  return undefined;
}

function clean(text: string): string {
  // eslint-disable-next-line no-control-regex -- one printable line for a terminal
  const line = text.replace(/[\u0000-\u001f\u007f]+/g, ' ').trim();
  return line.length > MAX_REASON_CHARS ? `${line.slice(0, MAX_REASON_CHARS)}…` : line;
}
