// Forced fetches cost backend reads: a loop of `keybroker-shim --refresh` (or `keybroker refresh`)
// against the real daemon must cost a handful of fetches, not one per call.
//
// One daemon serves the file; each test has a profile of its own (its own fetch count and
// forced-fetch budget), so neither sees the other's refreshes.
import fs from 'node:fs';
import path from 'node:path';
import { expect, it } from 'vitest';
import { FORCED_FETCH_BURST, FORCED_FETCH_INTERVAL_MS } from '../../src/cache/forced-fetch-limit.js';
import { run, SHIM, sharedDaemon } from '../helpers/daemon.js';
import { ERROR_CODES, type StatusReply } from '../../src/protocol/messages.js';

const d = sharedDaemon({
  config: `profiles:\n${['loop', 'cli'].map((p) => `  ${p}:\n    source: exec:echo x >> ./${p}.count; echo sk-counted\n    ttl: 1h\n`).join('')}`,
  logLevel: 'info',
});
const fetches = (profile: string): number =>
  fs.readFileSync(path.join(d.dir, `${profile}.count`), 'utf8').split('\n').length - 1;

// Enough calls to run well past the burst: a limit that let every call through would show as
// one fetch per call.
const CALLS = 30;

it(`${CALLS} \`keybroker-shim --refresh\` in a loop cost at most a handful of fetches`, async () => {
  const started = Date.now();
  const script = `for i in $(seq ${CALLS}); do ${SHIM} --refresh loop >/dev/null 2>>./errors; echo $? >> ./codes; done`;
  const loop = await run('/bin/sh', ['-c', script], { env: d.env, cwd: d.dir, timeoutMs: 120_000 });
  const elapsedMs = Date.now() - started;
  expect(loop.code).toBe(0);
  const codes = fs.readFileSync(path.join(d.dir, 'codes'), 'utf8').trim().split('\n').map(Number);
  expect(codes).toHaveLength(CALLS);
  // A burst, then one more per interval the loop took.
  const allowed = FORCED_FETCH_BURST + Math.floor(elapsedMs / FORCED_FETCH_INTERVAL_MS);
  console.log(`${CALLS} refreshes in ${elapsedMs} ms cost ${fetches('loop')} fetches (allowed ${allowed})`);
  // (A loop so slow that the limit would allow every call proves nothing.)
  expect(allowed).toBeLessThan(CALLS);
  expect(fetches('loop')).toBeLessThanOrEqual(allowed);
  expect(codes.slice(0, FORCED_FETCH_BURST)).toEqual(Array(FORCED_FETCH_BURST).fill(0));
  expect(codes.filter((c) => c === ERROR_CODES.RATE_LIMITED).length).toBe(CALLS - fetches('loop'));
  // The daemon answered every refused refresh with one line; plain reads still get the value.
  expect(fs.readFileSync(path.join(d.dir, 'errors'), 'utf8').trim().split('\n')).toHaveLength(CALLS - fetches('loop'));
  expect(await d.shim('loop')).toMatchObject({ code: 0, stdout: 'sk-counted\n' });
}, 150_000);

it('`keybroker refresh` shares the limit and says when to retry, with its own exit status', async () => {
  // The burst, spent by the CLI and by the request the shim's --refresh sends alike.
  expect((await d.cli(['refresh', 'cli'])).code).toBe(0);
  for (let i = 1; i < FORCED_FETCH_BURST; i++)
    expect(await d.request({ v: 1, op: 'get', profile: 'cli', refresh: true })).toMatchObject({ ok: true });
  const limited = await d.cli(['refresh', 'cli']);
  expect(limited.code).toBe(ERROR_CODES.RATE_LIMITED);
  expect(limited.stderr.trim().split('\n')).toHaveLength(1);
  const reply = await d.request({ v: 1, op: 'get', profile: 'cli', refresh: true });
  expect(reply).toMatchObject({ ok: false, error: { code: 'RATE_LIMITED', transient: true } });
  expect(fetches('cli')).toBe(FORCED_FETCH_BURST);
  const status = (await d.request({ v: 1, op: 'status' })) as StatusReply;
  expect(status.ok).toBe(true);
  expect(status.profiles.find((p) => p.name === 'cli')).toMatchObject({
    fetches: FORCED_FETCH_BURST,
    forcedFetchesLimited: 2,
  });
});
