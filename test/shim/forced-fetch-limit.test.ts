// Forced fetches cost backend reads: a loop of `keybroker-shim --refresh` (or `keybroker refresh`)
// against the real daemon must cost a handful of fetches, not one per call.
import fs from 'node:fs';
import path from 'node:path';
import { afterEach, beforeEach, expect, it } from 'vitest';
import { run, SHIM, startDaemon, type DaemonHandle } from '../helpers/daemon.js';
import { ERROR_CODES } from '../../src/protocol/messages.js';

let d: DaemonHandle;
const fetches = (): number => fs.readFileSync(path.join(d.dir, 'count'), 'utf8').split('\n').length - 1;

beforeEach(async () => {
  d = await startDaemon({
    config: 'profiles:\n  work:\n    source: exec:echo x >> ./count; echo sk-counted\n    ttl: 1h\n',
    logLevel: 'info',
  });
});
afterEach(async () => {
  await d.stop();
  fs.rmSync(d.dir, { recursive: true, force: true });
});

it('100 `keybroker-shim --refresh` in a loop cost at most a handful of fetches', async () => {
  const started = Date.now();
  const script = `for i in $(seq 100); do ${SHIM} --refresh work >/dev/null 2>>./errors; echo $? >> ./codes; done`;
  const loop = await run('/bin/sh', ['-c', script], { env: d.env, cwd: d.dir, timeoutMs: 120_000 });
  const elapsedMs = Date.now() - started;
  expect(loop.code).toBe(0);
  const codes = fs.readFileSync(path.join(d.dir, 'codes'), 'utf8').trim().split('\n').map(Number);
  expect(codes).toHaveLength(100);
  // A burst of 3, then one more per 10 s the loop took.
  const allowed = 3 + Math.floor(elapsedMs / 10_000);
  console.log(`100 refreshes in ${elapsedMs} ms cost ${fetches()} fetches (allowed ${allowed})`);
  expect(fetches()).toBeLessThanOrEqual(allowed);
  expect(codes.slice(0, 3)).toEqual([0, 0, 0]);
  expect(codes.filter((c) => c === ERROR_CODES.RATE_LIMITED).length).toBe(100 - fetches());
  // The daemon answered every refused refresh with one line; plain reads still get the value.
  expect(fs.readFileSync(path.join(d.dir, 'errors'), 'utf8').trim().split('\n')).toHaveLength(100 - fetches());
  expect(await d.shim('work')).toMatchObject({ code: 0, stdout: 'sk-counted\n' });
}, 150_000);

it('`keybroker refresh` shares the limit and says when to retry, with its own exit status', async () => {
  for (let i = 0; i < 3; i++) expect((await d.cli(['refresh', 'work'])).code).toBe(0);
  const limited = await d.cli(['refresh', 'work']);
  expect(limited.code).toBe(ERROR_CODES.RATE_LIMITED);
  expect(limited.stderr.trim().split('\n')).toHaveLength(1);
  const reply = await d.request({ v: 1, op: 'get', profile: 'work', refresh: true });
  expect(reply).toMatchObject({ ok: false, error: { code: 'RATE_LIMITED', transient: true } });
  expect(fetches()).toBe(3);
  const status = await d.request({ v: 1, op: 'status' });
  expect(status).toMatchObject({ ok: true, profiles: [{ name: 'work', fetches: 3, forcedFetchesLimited: 2 }] });
});
