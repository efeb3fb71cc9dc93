// Messages a new user meets in the first hour, through the built daemon, shim and CLI as real
// processes: each asserted by exit status, error code and shape (one line), never by wording.
import { describe, expect, it } from 'vitest';
import type { StatusReply } from '../../src/protocol/messages.js';
import { sharedDaemon } from '../helpers/daemon.js';

const d = sharedDaemon({
  config: [
    'profiles:',
    '  two-lines:',
    `    source: 'exec:printf "sk-two-lines-1\\nnotice: signed in\\n"'`,
    '  pem:',
    `    source: 'exec:printf "%s\\n" "-----BEGIN KEY-----" abc "-----END KEY-----"'`,
    '    multiline: true',
    '  denied:',
    `    source: 'exec:echo "permission denied" >&2; exit 1'`,
  ].join('\n'),
});

describe('a value that spans lines', () => {
  it('is refused with one line and INVALID_VALUE, and the value is not echoed', async () => {
    const r = await d.shim('two-lines');
    expect(r.code).toBe(15);
    expect(r.stdout).toBe('');
    expect(r.stderr.split('\n').filter(Boolean)).toHaveLength(1);
    expect(r.stderr).not.toContain('sk-two-lines-1');
    expect(r.stderr).toContain('"two-lines"');
  });

  it('is served whole when the profile sets multiline: true', async () => {
    const r = await d.shim('pem');
    expect(r.code).toBe(0);
    expect(r.stdout.trim().split('\n')).toHaveLength(3);
  });
});

describe('a failing profile', () => {
  it('counts the consumers that asked for it in status', async () => {
    expect((await d.shim('denied')).code).toBe(5);
    const status = JSON.parse((await d.cli(['status', '--json'])).stdout) as StatusReply;
    const denied = status.profiles.find((p) => p.name === 'denied')!;
    expect(denied).toMatchObject({ state: 'error', consumers: 1, lastError: { code: 'SOURCE_ERROR' } });
  });

  it('logs what happens next instead of a retry delay nothing acts on', () => {
    const failed = d
      .log()
      .split('\n')
      .filter((l) => l.includes('"profile":"denied"') && l.includes('"retry"'))
      .map((l) => JSON.parse(l) as Record<string, unknown>);
    expect(failed.length).toBeGreaterThan(0);
    for (const line of failed) {
      expect(line.retry).toBe('next-read');
      expect(line).not.toHaveProperty('retryInMs');
    }
  });
});
