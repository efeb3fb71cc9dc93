// The foreground daemon's log: readable lines on a terminal, JSON lines otherwise.
import fs from 'node:fs';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { formatLogLine, wantsPrettyLog } from '../../src/log.js';
import { baseEnv, CLI, privateTempDir, run, shellQuote } from '../helpers/daemon.js';

const dir = privateTempDir('kb-logfmt-');

/** A daemon that stops at once: its socket path is too long, so it logs one fatal line and exits 18. */
function failingDaemonEnv(extra: NodeJS.ProcessEnv = {}): NodeJS.ProcessEnv {
  const env = baseEnv(dir, { KEYBROKER_SOCKET: path.join(dir, 'x'.repeat(120), 'kb.sock'), ...extra });
  fs.writeFileSync(env.KEYBROKER_CONFIG!, 'profiles:\n  a:\n    source: env:A\n', { mode: 0o600 });
  return env;
}

const isJson = (line: string): boolean => {
  try {
    return typeof JSON.parse(line) === 'object';
  } catch {
    return false;
  }
};

describe('the daemon log format', () => {
  it('is JSON lines when stderr is not a terminal', async () => {
    const r = await run(process.execPath, [CLI, 'daemon'], { env: failingDaemonEnv() });
    expect(r.code).toBe(18);
    const logLines = r.stderr.split('\n').filter((l) => l.startsWith('{'));
    expect(logLines.length).toBeGreaterThan(0);
    expect(logLines.every(isJson)).toBe(true);
  });

  const script = ['/usr/bin/script', '/bin/script'].find((p) => fs.existsSync(p));
  it.skipIf(!script)('is readable lines when stderr is a terminal (run under script(1) for a pty)', async () => {
    const r = await run(script!, ['-qec', `${shellQuote(process.execPath)} ${shellQuote(CLI)} daemon`, '/dev/null'], {
      env: failingDaemonEnv(),
    });
    const lines = r.stdout.split(/\r?\n/).filter(Boolean);
    expect(lines.length).toBeGreaterThan(0);
    expect(lines.some(isJson)).toBe(false);
    expect(lines.some((l) => /^\d\d:\d\d:\d\d FATAL /.test(l))).toBe(true);
  });
  if (!script) console.log('skipped the terminal case: script(1) is not installed');

  it('KEYBROKER_LOG_FORMAT overrides the guess', () => {
    expect(wantsPrettyLog({ KEYBROKER_LOG_FORMAT: 'json' }, true)).toBe(false);
    expect(wantsPrettyLog({ KEYBROKER_LOG_FORMAT: 'pretty' }, false)).toBe(true);
    expect(wantsPrettyLog({}, true)).toBe(true);
    expect(wantsPrettyLog({}, false)).toBe(false);
  });
});

describe('formatLogLine', () => {
  it('prints time, level, message and the fields, one line, from the already-redacted record', () => {
    const line = formatLogLine(
      JSON.stringify({
        level: 40,
        time: '2026-01-01T12:04:31.000Z',
        pid: 1,
        name: 'keybroker',
        profile: 'work',
        err: { type: 'BrokerError', code: 'UNAVAILABLE', message: 'down' },
        value: '[redacted]',
        retry: 'next-read',
        msg: 'fetch failed',
      }),
    );
    expect(line.endsWith('\n')).toBe(true);
    expect(line.slice(0, -1)).not.toContain('\n');
    expect(line).toMatch(/^\d\d:\d\d:\d\d WARN {2}fetch failed {2}/);
    const fields = line.slice(line.indexOf('  ', 15) + 2).trim();
    expect(fields).toBe('profile=work err="UNAVAILABLE: down" value=[redacted] retry=next-read');
  });

  it('passes a line that is not JSON through unchanged', () => {
    expect(formatLogLine('plain text')).toBe('plain text\n');
  });
});
