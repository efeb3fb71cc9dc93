import os from 'node:os';
import path from 'node:path';
import type { Command } from 'commander';
import { die } from './output.js';

interface LogsOptions {
  follow?: boolean;
  since?: string;
  level?: string;
  json?: boolean;
  lines?: string;
}

/** With -f and no -n, the lines shown before following (as tail and journalctl -f do). */
const FOLLOW_BACKLOG = 10;

export function registerLogs(program: Command): void {
  program
    .command('logs')
    .description("show the daemon's log as readable lines (time, level, message, fields)")
    .option('-f, --follow', 'keep printing lines as the daemon writes them (across rotation)')
    .option('--since <duration>', 'only lines this recent, e.g. 10m, 2h, 1d')
    .option('--level <level>', 'only this level and worse: trace, debug, info, warn, error, fatal')
    .option('-n, --lines <count>', `only the last COUNT lines (with -f: ${FOLLOW_BACKLOG} unless given)`)
    .option('--json', 'the JSON records as the daemon wrote them, one per line')
    .addHelpText(
      'after',
      `
Where the log is: a daemon run by systemd logs to the journal (read with journalctl --user -u
keybroker.service -o json); a LaunchAgent's to ~/Library/Logs/keybroker/daemon.log; an
autostarted one to daemon.log beside the socket, which the daemon keeps to 10 MiB plus one
previous file (daemon.log.1, shown first). A daemon you run with keybroker daemon logs to its own
terminal. The log never holds a key: values are logged as [redacted].

Examples:
  keybroker logs -n 50
  keybroker logs -f --level warn
  keybroker logs --since 1h --json | jq .msg`,
    )
    .action(async (opts: LogsOptions, cmd: Command) => {
      const filter = await parseFilter(opts);
      const socket = await socketPath(cmd);
      const where = await logLocation(socket);
      const print = await printer(opts);
      const lines = opts.lines !== undefined ? Number(opts.lines) : opts.follow ? FOLLOW_BACKLOG : undefined;
      const { entryFilter, parseEntry, readJournal, readLogFile } = await import('./log-reader.js');
      const passes = entryFilter(filter);
      // -n: the last lines that pass, then (with -f) everything new as it comes.
      const backlog: string[] = [];
      let live = lines === undefined || (where.kind === 'journal' && Boolean(opts.follow));
      const emit = (entry: import('./log-reader.js').LogEntry): void => {
        if (!passes(entry)) return;
        const text = print(entry);
        if (live) process.stdout.write(text);
        else {
          backlog.push(text);
          if (backlog.length > lines!) backlog.shift();
        }
      };
      const flushBacklog = (): void => {
        if (live) return;
        live = true;
        process.stdout.write(backlog.join(''));
      };
      if (where.note) process.stderr.write(`keybroker: ${where.note}\n`);
      if (where.kind === 'journal') {
        // Following, journalctl counts -n itself (before the level filter); otherwise the last
        // lines that pass are kept here.
        await readJournal(
          {
            follow: Boolean(opts.follow),
            ...(opts.follow && lines !== undefined && { lines }),
            ...(filter.sinceMs !== undefined && { sinceMs: filter.sinceMs }),
          },
          emit,
        );
        flushBacklog();
        return;
      }
      await readLogFile(where.file, Boolean(opts.follow), (line) => emit(parseEntry(line)), flushBacklog);
    });
}

async function parseFilter(opts: LogsOptions): Promise<{ minLevel?: number; sinceMs?: number }> {
  const { LEVEL_NUMBERS } = await import('./log-reader.js');
  const filter: { minLevel?: number; sinceMs?: number } = {};
  if (opts.level !== undefined) {
    const n = LEVEL_NUMBERS[opts.level.toLowerCase()];
    if (n === undefined) die('USAGE', `--level ${opts.level}: use one of ${Object.keys(LEVEL_NUMBERS).join(', ')}`);
    filter.minLevel = n;
  }
  if (opts.since !== undefined) {
    const { parseDuration } = await import('../duration.js');
    const parsed = parseDuration(opts.since);
    if (!parsed.ok) die('USAGE', `--since: ${parsed.reason}`);
    filter.sinceMs = Date.now() - parsed.ms;
  }
  if (opts.lines !== undefined && !(Number.isInteger(Number(opts.lines)) && Number(opts.lines) >= 0))
    die('USAGE', `--lines ${opts.lines}: give a whole number of lines`);
  return filter;
}

async function socketPath(cmd: Command): Promise<string> {
  const { resolveSocketPath } = await import('../client/socket-path.js');
  return resolveSocketPath({ flag: cmd.optsWithGlobals<{ socket?: string }>().socket }).path;
}

type LogLocation = { kind: 'journal'; note?: string } | { kind: 'file'; file: string; note?: string };

/**
 * Which log to read: the running daemon says who started it (systemd: the journal; launchd: its
 * log file; autostart: daemon.log beside the socket). With no daemon answering, daemon.log when
 * there is one, else the journal when the systemd service is installed.
 */
async function logLocation(socket: string): Promise<LogLocation> {
  const { sendRequest } = await import('../client/client.js');
  const ping = await sendRequest(socket, { v: 1, op: 'ping' }, { timeoutMs: 1_000 });
  const daemon = ping.ok && 'pong' in ping ? ping : undefined;
  const beside = path.join(path.dirname(socket), 'daemon.log');
  switch (daemon?.startedBy) {
    case 'systemd':
      return { kind: 'journal' };
    case 'launchd':
      return { kind: 'file', file: path.join(os.homedir(), 'Library', 'Logs', 'keybroker', 'daemon.log') };
    case 'foreground':
      return {
        kind: 'file',
        file: beside,
        note: `the daemon answering (pid ${daemon.pid}) runs in the foreground and logs to its own terminal; this is ${beside}, from daemons keybroker-shim started`,
      };
  }
  if (daemon || (await exists(beside)) || (await exists(`${beside}.1`))) return { kind: 'file', file: beside };
  const unit = path.join(os.homedir(), '.config', 'systemd', 'user', 'keybroker.service');
  if (process.platform === 'linux' && (await exists(unit)))
    return { kind: 'journal', note: 'no daemon answers; showing the systemd service journal' };
  return { kind: 'file', file: beside };
}

async function exists(file: string): Promise<boolean> {
  const fs = await import('node:fs');
  return fs.existsSync(file);
}

/** An entry as text: the JSON record (--json), else a readable line, coloured where wanted. */
async function printer(opts: LogsOptions): Promise<(entry: import('./log-reader.js').LogEntry) => string> {
  if (opts.json) return (entry) => `${entry.record ? entry.raw : JSON.stringify({ msg: entry.raw })}\n`;
  const [{ formatLogLine }, { logLineColours, wantsColour }] = await Promise.all([
    import('../log.js'),
    import('./colour.js'),
  ]);
  const style = { date: true, ...logLineColours(wantsColour(process.stdout)) };
  return (entry) => {
    if (!entry.record) return `${visible(entry.raw)}\n`;
    const msg = entry.record.msg;
    const record = typeof msg === 'string' ? { ...entry.record, msg: visible(msg) } : entry.record;
    return formatLogLine(JSON.stringify(record), style);
  };
}

/**
 * A log line may quote a backend's text: its control characters (a terminal's escape sequences)
 * are shown, not obeyed. (Fields are JSON-quoted by formatLogLine, which escapes them.)
 */
function visible(text: string): string {
  return text.replace(
    // eslint-disable-next-line no-control-regex -- the characters to neutralise
    /[\u0000-\u0008\u000b-\u001f\u007f]/g,
    (c) => `\\x${c.charCodeAt(0).toString(16).padStart(2, '0')}`,
  );
}
