// A known secret goes through every path the daemon has — fetch, cache hit, refresh, stale
// serving, a suspected rejection, status, errors, reload, shutdown — at trace level. Its bytes
// must appear nowhere but on the shim's stdout.
import fs from 'node:fs';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { SHIM, startDaemon, waitFor, type DaemonHandle } from '../helpers/daemon.js';
import { CLAUDE_ENV, startFakeClaude } from '../helpers/fake-claude.js';

const SECRET = 'sk-ant-api03-NEVER-LOG-ME-9f8e7d6c5b4a';
const encodings = (s: string): string[] => [s, Buffer.from(s).toString('base64'), Buffer.from(s).toString('hex'), s.slice(8, 28)];

let d: DaemonHandle;
const outputs: string[] = [];

beforeAll(async () => {
  d = await startDaemon({
    logLevel: 'trace',
    config: [
      'profiles:',
      '  default:',
      '    source: exec:cat ./key',
      '    ttl: 1s',
      '  env:',
      '    source: env:KB_SECRET',
      '  headers:',
      '    source: env:KB_SECRET',
    ].join('\n'),
    env: { KB_SECRET: SECRET },
  });
  fs.writeFileSync(path.join(d.dir, 'key'), SECRET);
});
afterAll(() => fs.rmSync(d.dir, { recursive: true, force: true }));

describe('no secret value outside the reply', () => {
  it('runs every path, then finds the value nowhere in logs, status or errors', async () => {
    // Served: a miss, then hits.
    expect((await d.shim()).stdout).toBe(`${SECRET}\n`);
    expect((await d.shim('env')).stdout).toBe(`${SECRET}\n`);
    expect((await d.shim('--format headers headers')).code).toBe(0);
    // A refresh, explicit and via the shim.
    outputs.push(JSON.stringify(await d.cli(['refresh', '--all'])));
    expect((await d.shim('--refresh')).stdout).toBe(`${SECRET}\n`);
    // A suspected rejection from a Claude Code session, then the failure.
    const claude = startFakeClaude(d.dir, { ...d.env, ...CLAUDE_ENV });
    try {
      for (let i = 0; i < 3; i++) outputs.push(JSON.stringify({ ...(await claude.callHelper(`${SHIM} env`)), stdout: '' }));
    } finally {
      claude.close();
    }
    expect(outputs.at(-1)).toContain('the key was rejected');
    // The source fails: stale serving with a warning, then errors.
    fs.writeFileSync(path.join(d.dir, 'key'), '');
    await new Promise((r) => setTimeout(r, 1_100));
    const stale = await d.shim();
    expect(stale.stdout).toBe(`${SECRET}\n`);
    outputs.push(stale.stderr);
    // Wrong uses that echo input back.
    outputs.push(JSON.stringify(await d.shim('--format aws-credentials env')));
    outputs.push(JSON.stringify(await d.request({ v: 1, op: 'get', profile: 'nope' })));
    // Status in both forms.
    outputs.push((await d.cli(['status'])).stdout);
    outputs.push((await d.cli(['status', '--json'])).stdout);
    // A reload, a bad reload, and a shutdown.
    d.signal('SIGHUP');
    await waitFor(() => d.log().includes('config reloaded'), 5_000, 'reload');
    d.writeConfig('profiles:\n  default:\n    source: exec:cat ./key\n    ttl: nope\n');
    d.signal('SIGHUP');
    await waitFor(() => d.log().includes('config reload failed'), 5_000, 'failed reload');
    expect(await d.stop()).toBe(0);

    const log = d.log();
    expect(log).toContain('"level":10'); // trace lines were written
    expect(log).toContain('"msg":"fetched"');
    // The value did reach the logger (whole replies are traced), and came out redacted.
    expect(log).toContain('"value":"[redacted]"');
    for (const text of [log, ...outputs]) {
      for (const form of encodings(SECRET)) expect(text).not.toContain(form);
    }
  });
});
