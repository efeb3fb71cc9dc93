// The reason an autostarted daemon stopped, read from the end of its log: bounded, never through
// a symlink, never from someone else's file.
import { execFileSync } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { lastDaemonFailure, LOG_TAIL_BYTES } from '../../src/client/daemon-log.js';
import { privateTempDir } from '../helpers/daemon.js';

const dir = privateTempDir('kb-dlog-');
afterAll(() => fs.rmSync(dir, { recursive: true, force: true }));

function log(name: string, text: string): string {
  const file = path.join(dir, name);
  fs.writeFileSync(file, text, { mode: 0o600 });
  return file;
}

const fatal = JSON.stringify({
  level: 60,
  msg: 'could not start',
  err: {
    code: 'UNSAFE_PATH',
    message: 'socket directory /x is accessible by group or others (mode 0755); run: chmod 700 /x',
  },
});
const info = JSON.stringify({ level: 30, msg: 'listening' });

describe('lastDaemonFailure', () => {
  it("gives the last fatal record's reason, skipping the info lines after it", () => {
    expect(lastDaemonFailure(log('a.log', `${info}\n${fatal}\n${info}\n`))).toMatch(/chmod 700/);
  });

  it('takes the plain "keybroker: …" line the daemon prints when it cannot start', () => {
    expect(
      lastDaemonFailure(log('b.log', `${fatal}\nkeybroker: a keybroker daemon is already listening on /x\n`)),
    ).toBe('a keybroker daemon is already listening on /x');
  });

  it('is undefined for a log with no failure, a missing file, a symlink, or a FIFO', () => {
    expect(lastDaemonFailure(log('c.log', `${info}\n`))).toBeUndefined();
    expect(lastDaemonFailure(path.join(dir, 'missing.log'))).toBeUndefined();
    const target = log('target.log', `${fatal}\n`);
    fs.symlinkSync(target, path.join(dir, 'link.log'));
    expect(lastDaemonFailure(path.join(dir, 'link.log'))).toBeUndefined();
    execFileSync('mkfifo', [path.join(dir, 'fifo.log')]);
    expect(lastDaemonFailure(path.join(dir, 'fifo.log'))).toBeUndefined();
  });

  it('reads only the tail of a large log, and prints one bounded line', () => {
    const big = `${fatal}\n${'x'.repeat(LOG_TAIL_BYTES * 4)}\n`;
    expect(lastDaemonFailure(log('big.log', big))).toBeUndefined(); // the old fatal line is beyond the tail
    const long = JSON.stringify({ level: 50, msg: `bad\u001b[31m ${'y'.repeat(2000)}` });
    const reason = lastDaemonFailure(log('long.log', `${long}\n`))!;
    // eslint-disable-next-line no-control-regex -- checking that control characters are gone
    expect(reason).not.toMatch(/[\u0000-\u001f]/);
    expect(reason.length).toBeLessThanOrEqual(401);
  });

  it.skipIf(process.getuid?.() !== 0)("ignores someone else's log (needs root to set up)", () => {
    const file = log('theirs.log', `${fatal}\n`);
    fs.chownSync(file, 4242, 4242);
    expect(lastDaemonFailure(file)).toBeUndefined();
  });
});
