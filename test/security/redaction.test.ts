// A failing exec: command's first stderr line reaches the shim's error, status, status --json and
// the log. If it quotes a value the daemon has served (any profile), or anything key-shaped, that
// must not reach any of them. Through the real daemon and shim.
import { expect, it } from 'vitest';
import { sharedDaemon } from '../helpers/daemon.js';

const SERVED = 'kb-served-value-4d7e91';
const ANTHROPIC = 'sk-ant-api03-Zq8xW2vN5mK7pL1tR9sY3uB6';
const HEX = '3f9a1c0e7b2d4f6a8c0e1b3d5f7a9c2e4b6d8f0a';
const BASE64 = 'dGhpcyBpcyBhIHNlY3JldCB0b2tlbiB2YWx1ZQ8Xk2';

const d = sharedDaemon({
  config: [
    'profiles:',
    '  served:',
    '    source: env:KB_RED_SERVED',
    '  leaky:',
    `    source: 'exec:echo "op: token $KB_RED_SERVED was refused" >&2; exit 1'`,
    // exec: commands run without env: profiles' variables unless let through: this one must see it.
    '    exec:',
    '      passEnv: [KB_RED_SERVED]',
    '  shaped:',
    `    source: 'exec:echo "auth failed: $KB_RED_ANTHROPIC / $KB_RED_HEX / $KB_RED_B64 (see /run/user/1000/keybroker/keybroker.sock)" >&2; exit 2'`,
    '',
  ].join('\n'),
  env: { KB_RED_SERVED: SERVED, KB_RED_ANTHROPIC: ANTHROPIC, KB_RED_HEX: HEX, KB_RED_B64: BASE64 },
  logLevel: 'debug',
});

it('redacts a served value from a failing command’s error everywhere it is shown', async () => {
  expect(await d.shim('served')).toMatchObject({ code: 0, stdout: `${SERVED}\n` });
  const r = await d.shim('leaky');
  expect(r.code).toBe(5);
  expect(r.stderr).toContain('[redacted]');
  expect(r.stderr).not.toContain(SERVED);
  const status = await d.cli(['status']);
  const json = await d.cli(['status', '--json']);
  expect(status.stdout).toContain('[redacted]');
  expect(JSON.parse(json.stdout)).toMatchObject({
    profiles: expect.arrayContaining([
      expect.objectContaining({ name: 'leaky', lastError: expect.objectContaining({ code: 'SOURCE_ERROR' }) }),
    ]),
  });
  for (const text of [status.stdout, json.stdout, d.log()]) expect(text).not.toContain(SERVED);
});

it('masks key-shaped strings in a failing command’s error, and keeps the rest of the line', async () => {
  const r = await d.shim('shaped');
  expect(r.code).toBe(5);
  expect(r.stderr).toContain('[masked]');
  expect(r.stderr).toContain('/run/user/1000/keybroker/keybroker.sock');
  const status = await d.cli(['status', '--json']);
  for (const text of [r.stderr, status.stdout, d.log()]) {
    for (const secret of [ANTHROPIC, HEX, BASE64, 'Zq8xW2vN5mK7']) expect(text).not.toContain(secret);
  }
});
