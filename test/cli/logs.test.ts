// keybroker logs: readable lines from a real autostarted daemon's daemon.log (never a key), its
// filters, colour on a terminal (script(1)) and the conventions that turn it off, -f across a
// rotation, and the journal for a daemon systemd runs (a fake journalctl on PATH).
import { spawn } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { beforeAll, describe, expect, it } from 'vitest';
import { ERROR_CODES } from '../../src/protocol/messages.js';
import { VERSION } from '../../src/client/build-info.js';
import { CLI, run, SETUP_SHIM, waitFor, workspace, shellQuote } from '../helpers/daemon.js';
import { recordingServer } from '../helpers/stand-in-daemon.js';

const KEY = 'sk-logs-7c3b9e41d2';
const logsWorkspace = (config = 'profiles: {}\n') => workspace({ prefix: 'kb-logs-', config });
const ESC = '\u001b[';
const script = ['/usr/bin/script', '/bin/script'].find((p) => fs.existsSync(p));

/** Each --json line as its record. */
const records = (stdout: string): Array<{ level: number; time?: string; msg: string }> =>
  stdout
    .trim()
    .split('\n')
    .filter(Boolean)
    .map((l) => JSON.parse(l) as { level: number; time?: string; msg: string });

describe('keybroker logs, from an autostarted daemon', () => {
  const { env } = workspace({
    prefix: 'kb-logs-',
    autostart: true,
    env: { KEYBROKER_LOG_LEVEL: 'debug', KB_LOGS_KEY: KEY },
  });
  const cli = (args: string[], extra: NodeJS.ProcessEnv = {}) =>
    run(process.execPath, [CLI, ...args], { env: { ...env, ...extra } });

  beforeAll(async () => {
    fs.writeFileSync(
      env.KEYBROKER_CONFIG!,
      "profiles:\n  default:\n    source: env:KB_LOGS_KEY\n  broken:\n    source: 'exec:exit 3'\n",
      { mode: 0o600 },
    );
    // The key served, refreshed and asked for in every way the log could record it; by the shim
    // `setup claude` writes (native where built: ~5 ms a run, the Node shim ~0.15 s), whose first
    // call starts the daemon.
    for (const args of ['', 'default', '--refresh default', 'broken'])
      await run('/bin/sh', ['-c', `${shellQuote(SETUP_SHIM)} ${args}`], { env });
  });

  it('prints readable lines: date, time, level, message, fields — and never the key', async () => {
    const r = await cli(['logs']);
    expect(r.code).toBe(0);
    const lines = r.stdout.trim().split('\n');
    expect(lines.length).toBeGreaterThan(3);
    for (const line of lines)
      expect(line).toMatch(/^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d (TRACE|DEBUG|INFO |WARN |ERROR|FATAL) /);
    expect(r.stdout).not.toContain(KEY);
    expect(r.stdout).not.toContain(ESC); // not a terminal: no colour
  });

  // (One test: --level's check needs the unfiltered --json output too, a CLI run saved.)
  it('--json prints the records as written, and never the key; --level keeps that level and worse', async () => {
    const r = await cli(['logs', '--json']);
    expect(r.code).toBe(0);
    expect(records(r.stdout).length).toBeGreaterThan(3);
    expect(r.stdout).not.toContain(KEY);
    const all = records(r.stdout);
    const warn = records((await cli(['logs', '--json', '--level', 'warn'])).stdout);
    expect(all.some((rec) => rec.level < 40)).toBe(true);
    expect(warn.length).toBeGreaterThan(0);
    expect(warn.every((rec) => rec.level >= 40)).toBe(true);
  });

  it.skipIf(!script)('colours the level on a terminal; NO_COLOR and --no-color turn it off', async () => {
    const tty = (args: string, extra: NodeJS.ProcessEnv = {}) =>
      run(script!, ['-qec', `${process.execPath} ${CLI} ${args}`, '/dev/null'], {
        env: { ...env, TERM: 'xterm', ...extra },
      });
    const coloured = await tty('logs');
    expect(coloured.code).toBe(0);
    expect(coloured.stdout).toContain(ESC);
    expect(coloured.stdout).not.toContain(KEY);
    expect((await tty('logs', { NO_COLOR: '1' })).stdout).not.toContain(ESC);
    expect((await tty('logs --no-color')).stdout).not.toContain(ESC);
  });

  it('FORCE_COLOR colours a pipe', async () => {
    expect((await cli(['logs'], { FORCE_COLOR: '1' })).stdout).toContain(ESC);
  });
});

describe('keybroker logs, from a daemon.log written here', () => {
  const line = (ageMs: number, level: number, msg: string): string =>
    `${JSON.stringify({ level, time: new Date(Date.now() - ageMs).toISOString(), pid: 1, name: 'keybroker', msg })}\n`;

  it('--since keeps the recent lines, across daemon.log.1 and daemon.log', async () => {
    const w = logsWorkspace();
    const log = path.join(path.dirname(w.socket), 'daemon.log');
    fs.mkdirSync(path.dirname(log), { recursive: true, mode: 0o700 });
    fs.writeFileSync(`${log}.1`, line(3 * 3600_000, 30, 'old') + line(30 * 60_000, 30, 'recent-1'), { mode: 0o600 });
    fs.writeFileSync(log, line(60_000, 40, 'recent-2'), { mode: 0o600 });
    const r = await w.cli(['logs', '--json', '--since', '1h']);
    expect(r.code).toBe(0);
    expect(records(r.stdout).map((rec) => rec.msg)).toEqual(['recent-1', 'recent-2']);
  });

  // (One run: with every other line a warning, -n 2 --level warn shows both that -n keeps the last
  // lines and that it counts those that pass the filter; a CLI start less than a run for each.)
  it('-n keeps the last lines that pass the filter', async () => {
    const w = logsWorkspace();
    const log = path.join(path.dirname(w.socket), 'daemon.log');
    fs.mkdirSync(path.dirname(log), { recursive: true, mode: 0o700 });
    const msgs = ['a', 'b', 'c', 'd', 'e', 'f'];
    fs.writeFileSync(log, msgs.map((m, i) => line(0, i % 2 ? 40 : 30, m)).join(''), { mode: 0o600 });
    const r = await w.cli(['logs', '--json', '-n', '2', '--level', 'warn']);
    expect(r.code).toBe(0);
    // Not b, d (the first two warnings), nor f alone (the last two lines, then filtered).
    expect(records(r.stdout).map((rec) => rec.msg)).toEqual(['d', 'f']);
  });

  it('shows a control character in a message rather than sending it to the terminal', async () => {
    const w = logsWorkspace();
    const log = path.join(path.dirname(w.socket), 'daemon.log');
    fs.mkdirSync(path.dirname(log), { recursive: true, mode: 0o700 });
    fs.writeFileSync(log, line(0, 50, 'evil \u001b]0;title\u0007 text'), { mode: 0o600 });
    const r = await w.cli(['logs']);
    expect(r.code).toBe(0);
    expect(r.stdout).not.toContain('\u001b');
    expect(r.stdout).not.toContain('\u0007');
  });

  it('-f follows daemon.log across a rotation', async () => {
    const w = logsWorkspace();
    const log = path.join(path.dirname(w.socket), 'daemon.log');
    fs.mkdirSync(path.dirname(log), { recursive: true, mode: 0o700 });
    fs.writeFileSync(log, line(0, 30, 'before'), { mode: 0o600 });
    const child = spawn(process.execPath, [CLI, 'logs', '-f', '--json'], {
      env: w.env,
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    let out = '';
    child.stdout.on('data', (d: Buffer) => (out += d.toString()));
    const seen = (msgs: string[]) => () => msgs.every((m) => out.includes(`"msg":"${m}"`));
    try {
      await waitFor(seen(['before']), 10_000, 'the first line');
      fs.appendFileSync(log, line(0, 30, 'appended'));
      await waitFor(seen(['appended']), 10_000, 'an appended line');
      // As the daemon rotates: the last line into the old file, rename, a new file.
      fs.appendFileSync(log, line(0, 30, 'last-of-old'));
      fs.renameSync(log, `${log}.1`);
      fs.writeFileSync(log, line(0, 30, 'first-of-new'), { mode: 0o600 });
      await waitFor(seen(['last-of-old', 'first-of-new']), 10_000, 'lines across the rotation');
      expect(records(out).map((rec) => rec.msg)).toEqual(['before', 'appended', 'last-of-old', 'first-of-new']);
    } finally {
      child.kill('SIGTERM');
    }
  });

  it('exits NOT_FOUND when there is no log yet', async () => {
    const w = logsWorkspace();
    expect((await w.cli(['logs'])).code).toBe(ERROR_CODES.NOT_FOUND);
  });

  it('refuses a daemon.log that is a symbolic link', async () => {
    const w = logsWorkspace();
    const log = path.join(path.dirname(w.socket), 'daemon.log');
    fs.mkdirSync(path.dirname(log), { recursive: true, mode: 0o700 });
    fs.symlinkSync('/etc/passwd', log);
    expect((await w.cli(['logs'])).code).toBe(ERROR_CODES.UNSAFE_PATH);
  });

  it('rejects an unknown --level and a bad --since', async () => {
    const w = logsWorkspace();
    expect((await w.cli(['logs', '--level', 'loud'])).code).toBe(ERROR_CODES.USAGE);
    expect((await w.cli(['logs', '--since', 'yesterday'])).code).toBe(ERROR_CODES.USAGE);
  });
});

describe('keybroker logs, for a daemon systemd runs', () => {
  it('reads the journal with journalctl --user -u keybroker.service -o json', async () => {
    const w = logsWorkspace('profiles:\n  default:\n    source: env:KB_LOGS_KEY\n');
    const { dir } = w;
    const bin = path.join(dir, 'bin');
    fs.mkdirSync(bin);
    const calls = path.join(dir, 'journalctl.args');
    const pino = JSON.stringify({ level: 30, time: '2026-01-02T03:04:05.000Z', pid: 7, msg: 'listening', socket: 'x' });
    const systemd = JSON.stringify({
      MESSAGE: 'Started keybroker.service.',
      PRIORITY: '6',
      __REALTIME_TIMESTAMP: '1767323045000000',
    });
    const journal = [
      JSON.stringify({ MESSAGE: pino, PRIORITY: '6', __REALTIME_TIMESTAMP: '1767323045000000' }),
      systemd,
    ];
    fs.writeFileSync(
      path.join(bin, 'journalctl'),
      `#!/bin/sh\nprintf '%s\\n' "$*" > '${calls}'\ncat <<'EOF'\n${journal.join('\n')}\nEOF\n`,
      { mode: 0o755 },
    );
    // What `logs` asks of the daemon is its ping's startedBy: a stand-in answers as a daemon that
    // systemd started does (a real one saying so: test/cli/stop.test.ts), ~0.5 s of CPU less.
    const standIn = await recordingServer(w.socket, {
      ok: true,
      pong: true,
      pid: process.pid,
      version: VERSION,
      startedBy: 'systemd',
    });
    let r: Awaited<ReturnType<typeof w.cli>>;
    try {
      r = await w.cli(['logs', '--json'], { PATH: `${bin}:${process.env.PATH}` });
    } finally {
      void standIn.close();
    }
    expect(standIn.requests.map((l) => (JSON.parse(l) as { op: string }).op)).toEqual(['ping']);
    expect(r.code).toBe(0);
    expect(fs.readFileSync(calls, 'utf8').trim()).toBe('--user -u keybroker.service -o json --no-pager');
    const got = records(r.stdout);
    expect(got.map((rec) => rec.msg)).toEqual(['listening', 'Started keybroker.service.']);
    expect(got[1]!.level).toBe(30);
  });
});
