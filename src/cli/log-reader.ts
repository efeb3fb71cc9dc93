// Reading the daemon's log for `keybroker logs`: pino's JSON lines from daemon.log (and the
// daemon.log.1 that rotation keeps), followed across rotation; or journald's records of the
// systemd service. Entries are the records as the daemon wrote them (already redacted): this
// module filters and hands them on, and never adds anything of its own to them.
import { spawn } from 'node:child_process';
import fs from 'node:fs';
import readline from 'node:readline';
import { BrokerError } from '../errors.js';

/** One line of the log: its pino record, or, for a line that is not one, the text alone. */
export interface LogEntry {
  record?: Record<string, unknown>;
  raw: string;
}

export function parseEntry(line: string): LogEntry {
  if (line.startsWith('{')) {
    try {
      const record = JSON.parse(line) as unknown;
      if (record && typeof record === 'object' && !Array.isArray(record))
        return { record: record as Record<string, unknown>, raw: line };
    } catch {
      // a cut line: shown as text
    }
  }
  return { raw: line };
}

/** pino's level numbers by name. */
export const LEVEL_NUMBERS: Readonly<Record<string, number>> = {
  trace: 10,
  debug: 20,
  info: 30,
  warn: 40,
  error: 50,
  fatal: 60,
};

/** syslog priority (journald's PRIORITY) to a pino level, for lines that are not pino's. */
const PRIORITY_LEVEL = [60, 60, 60, 50, 40, 30, 30, 20];

/**
 * One `journalctl -o json` record as an entry: MESSAGE is the daemon's pino line; a line that is
 * not (systemd's own "Started …", Node writing to stderr) gets journald's time and priority.
 */
export function journalEntry(line: string): LogEntry | undefined {
  let j: { MESSAGE?: unknown; __REALTIME_TIMESTAMP?: unknown; PRIORITY?: unknown };
  try {
    j = JSON.parse(line) as typeof j;
  } catch {
    return undefined;
  }
  // journald gives a message that is not valid UTF-8 as an array of bytes.
  const message = Array.isArray(j.MESSAGE)
    ? Buffer.from(j.MESSAGE as number[]).toString('utf8')
    : typeof j.MESSAGE === 'string'
      ? j.MESSAGE
      : undefined;
  if (message === undefined) return undefined;
  const entry = parseEntry(message);
  if (entry.record) return entry;
  const micros = Number(j.__REALTIME_TIMESTAMP);
  const record: Record<string, unknown> = {
    level: PRIORITY_LEVEL[Number(j.PRIORITY)] ?? 30,
    msg: message,
  };
  if (Number.isFinite(micros)) record.time = new Date(micros / 1000).toISOString();
  return { record, raw: JSON.stringify(record) };
}

/**
 * --level and --since. A line that is not a record (a plain "keybroker: …" line) goes with the
 * record before it: shown when that one was.
 */
export function entryFilter(options: { minLevel?: number; sinceMs?: number }): (entry: LogEntry) => boolean {
  let previous = options.minLevel === undefined && options.sinceMs === undefined;
  return (entry) => {
    if (!entry.record) return previous;
    const level = Number(entry.record.level);
    const time = typeof entry.record.time === 'string' ? Date.parse(entry.record.time) : NaN;
    previous =
      (options.minLevel === undefined || !Number.isFinite(level) || level >= options.minLevel) &&
      (options.sinceMs === undefined || Number.isNaN(time) || time >= options.sinceMs);
    return previous;
  };
}

const O_NOFOLLOW = fs.constants.O_NOFOLLOW ?? 0;
const O_NONBLOCK = fs.constants.O_NONBLOCK ?? 0;
const CHUNK = 64 * 1024;
/** How often -f looks for new lines and for a rotation. */
export const FOLLOW_INTERVAL_MS = 200;

/** A log file opened for reading: a regular file of ours, never through a symlink or a FIFO. */
function openOwnLog(file: string): { fd: number; ino: number } | undefined {
  let fd: number;
  try {
    fd = fs.openSync(file, fs.constants.O_RDONLY | O_NOFOLLOW | O_NONBLOCK);
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    if (code === 'ENOENT') return undefined;
    throw new BrokerError('UNSAFE_PATH', `cannot read ${file} (${code === 'ELOOP' ? 'a symbolic link' : code})`, {
      fix: `look at it: ls -l ${file}`,
    });
  }
  const st = fs.fstatSync(fd);
  const uid = process.geteuid?.();
  if (!st.isFile() || (uid !== undefined && st.uid !== uid)) {
    fs.closeSync(fd);
    throw new BrokerError('UNSAFE_PATH', `${file} is not a regular file of yours: not reading it`, {
      fix: `look at it: ls -l ${file}`,
    });
  }
  return { fd, ino: st.ino };
}

/** Reads whole lines from a descriptor, from where the last read stopped. */
class LineReader {
  #pos = 0;
  #partial = '';
  constructor(
    readonly fd: number,
    readonly ino: number,
  ) {}

  /** Every whole line written since the last call. */
  read(onLine: (line: string) => void): void {
    if (fs.fstatSync(this.fd).size < this.#pos) this.#pos = 0; // truncated: start again
    const buf = Buffer.alloc(CHUNK);
    for (;;) {
      const n = fs.readSync(this.fd, buf, 0, CHUNK, this.#pos);
      if (n <= 0) return;
      this.#pos += n;
      const lines = (this.#partial + buf.subarray(0, n).toString('utf8')).split('\n');
      this.#partial = lines.pop()!;
      for (const line of lines) if (line !== '') onLine(line);
    }
  }

  close(): void {
    fs.closeSync(this.fd);
  }
}

/**
 * Every line of daemon.log.1, then daemon.log; then, with `follow`, each line as it is written,
 * across rotation (daemon.log renamed and a new one started): the old file is read to its end
 * before the new one; `onCaughtUp` runs once the lines already there are read. Resolves when not
 * following; else runs until the process ends.
 */
export async function readLogFile(
  file: string,
  follow: boolean,
  onLine: (line: string) => void,
  onCaughtUp: () => void = () => {},
): Promise<void> {
  const previous = openOwnLog(`${file}.1`);
  if (previous) {
    new LineReader(previous.fd, previous.ino).read(onLine);
    fs.closeSync(previous.fd);
  }
  let current = openOwnLog(file);
  if (!current && !previous && !follow)
    throw new BrokerError('NOT_FOUND', `there is no daemon log at ${file} yet`, {
      fix: 'it is written by a daemon that keybroker-shim starts (autostart); run: keybroker-shim, then keybroker logs',
    });
  let reader = current && new LineReader(current.fd, current.ino);
  reader?.read(onLine);
  onCaughtUp();
  if (!follow) {
    reader?.close();
    return;
  }
  for (;;) {
    await new Promise((r) => setTimeout(r, FOLLOW_INTERVAL_MS));
    reader?.read(onLine);
    const ino = fs.lstatSync(file, { throwIfNoEntry: false })?.ino;
    if (ino === undefined || ino === reader?.ino) continue;
    // Rotated (or created): finish the old file, then read the new one from its start.
    reader?.read(onLine);
    reader?.close();
    current = openOwnLog(file);
    reader = current && new LineReader(current.fd, current.ino);
    reader?.read(onLine);
  }
}

/** journald's records of the service: `journalctl --user -u keybroker.service -o json`. */
export function readJournal(
  options: { follow: boolean; lines?: number; sinceMs?: number },
  onEntry: (entry: LogEntry) => void,
): Promise<void> {
  const argv = ['--user', '-u', 'keybroker.service', '-o', 'json', '--no-pager'];
  if (options.sinceMs !== undefined) argv.push('--since', `@${Math.floor(options.sinceMs / 1000)}`);
  if (options.lines !== undefined) argv.push('-n', String(options.lines));
  if (options.follow) argv.push('-f');
  return new Promise((resolve, reject) => {
    const child = spawn('journalctl', argv, { stdio: ['ignore', 'pipe', 'pipe'] });
    let stderr = '';
    child.stderr.on('data', (d: Buffer) => {
      if (stderr.length < 4096) stderr += d.toString();
    });
    readline.createInterface({ input: child.stdout, crlfDelay: Infinity }).on('line', (line) => {
      const entry = journalEntry(line);
      if (entry) onEntry(entry);
    });
    child.on('error', (err: NodeJS.ErrnoException) =>
      reject(
        new BrokerError('UNAVAILABLE', `cannot run journalctl (${err.code ?? 'error'})`, {
          fix: 'the daemon runs under systemd: its log is in the journal (journalctl --user -u keybroker)',
        }),
      ),
    );
    child.on('close', (code) => {
      if (code === 0 || code === null) resolve();
      else
        reject(
          new BrokerError(
            'UNAVAILABLE',
            `journalctl --user -u keybroker.service failed: ${stderr.trim().split('\n')[0] || `exit ${code}`}`,
          ),
        );
    });
  });
}
