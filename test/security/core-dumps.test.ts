// A daemon started by hand or by autostart from a shell with `ulimit -c unlimited` still cannot
// leave a core dump holding its keys: it sets its own core-file limit to 0 and clears its dump filter.
import { spawn } from 'node:child_process';
import fs from 'node:fs';
import { describe, expect, it } from 'vitest';
import { killWhenDone } from '../helpers/cleanup.js';
import { CLI, daemonPid, run, SHIM, waitFor, workspace, shellQuote } from '../helpers/daemon.js';

const config = 'profiles:\n  default:\n    source: env:HOME\n';

function coreLimit(pid: number): string {
  const line = fs
    .readFileSync(`/proc/${pid}/limits`, 'utf8')
    .split('\n')
    .find((l) => l.startsWith('Max core file size'))!;
  return line
    .replace(/^Max core file size\s+/, '')
    .split(/\s+/)
    .slice(0, 2)
    .join(' ');
}

const coredumpFilter = (pid: number): number =>
  parseInt(fs.readFileSync(`/proc/${pid}/coredump_filter`, 'utf8').trim(), 16);

describe.skipIf(process.platform !== 'linux')('core dumps', () => {
  it('a daemon started by hand under ulimit -c unlimited runs with core limit 0 and coredump_filter 0', async () => {
    const ws = workspace({ prefix: 'kb-core-', config });
    // exec: the shell becomes the daemon, as a user's `keybroker daemon` would be.
    const proc = spawn('/bin/sh', ['-c', `ulimit -c unlimited && exec "${process.execPath}" "${CLI}" daemon`], {
      env: ws.env,
      stdio: 'ignore',
    });
    killWhenDone(proc);
    await waitFor(async () => (await ws.request({ v: 1, op: 'ping' }, 500)).ok, 10_000, 'daemon');
    expect(coreLimit(proc.pid!)).toBe('0 0');
    expect(coredumpFilter(proc.pid!)).toBe(0);
  });

  it('so does a daemon the shim autostarts from such a shell', async () => {
    const { env } = workspace({ prefix: 'kb-core-', config, autostart: true });
    expect(await run('/bin/sh', ['-c', `ulimit -c unlimited && ${shellQuote(SHIM)}`], { env })).toMatchObject({
      code: 0,
    });
    const pid = (await daemonPid(env))!;
    expect(coreLimit(pid)).toBe('0 0');
    expect(coredumpFilter(pid)).toBe(0);
  });
});
