// A second daemon on a live socket: ALREADY_RUNNING (exit 17) names the running daemon's pid, and
// says it once — on a terminal the log line is the message, not the log line and a copy of it.
import fs from 'node:fs';
import { describe, expect, it } from 'vitest';
import { ERROR_CODES } from '../../src/protocol/messages.js';
import { CLI, run, startDaemon } from '../helpers/daemon.js';

const CONFIG = 'profiles:\n  default:\n    source: env:KB_AR_KEY\n';

const script = ['/usr/bin/script', '/bin/script'].find((p) => fs.existsSync(p));

describe('ALREADY_RUNNING', () => {
  it.skipIf(!script)('names the running pid, once, on a terminal (script(1) for a pty)', async () => {
    const d = await startDaemon({ config: CONFIG, prefix: 'kb-ar-' });
    const r = await run(script!, ['-qec', `${process.execPath} ${CLI} daemon`, '/dev/null'], { env: d.env });
    expect(r.code).toBe(ERROR_CODES.ALREADY_RUNNING);
    const lines = r.stdout.split(/\r?\n/).filter(Boolean);
    expect(lines).toHaveLength(1);
    expect(lines[0]).toContain(`(pid ${d.proc.pid})`);
  });
  if (!script) console.log('skipped the terminal case: script(1) is not installed');

  it('names the running pid in the JSON log when stderr is not a terminal', async () => {
    const d = await startDaemon({ config: CONFIG, prefix: 'kb-ar-' });
    const r = await run(process.execPath, [CLI, 'daemon'], { env: d.env });
    expect(r.code).toBe(ERROR_CODES.ALREADY_RUNNING);
    const fatal = r.stderr
      .split('\n')
      .filter((l) => l.startsWith('{'))
      .map((l) => JSON.parse(l) as { level: number; err?: { code: string; message: string } })
      .find((rec) => rec.level === 60);
    expect(fatal?.err?.code).toBe('ALREADY_RUNNING');
    expect(fatal?.err?.message).toContain(`(pid ${d.proc.pid})`);
  });
});
