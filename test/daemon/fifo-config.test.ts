// A config that is a FIFO (or any non-regular file) must not hang the daemon: opened blocking, a
// FIFO waits for a writer forever, the reload never ends, and SIGTERM (which waits for it) no
// longer stops the daemon. Both at start-up and at reload.
import { execFileSync, spawn } from 'node:child_process';
import fs from 'node:fs';
import { expect, it } from 'vitest';
import { sendRequest } from '../../src/client/client.js';
import { killWhenDone } from '../helpers/cleanup.js';
import { CLI, startDaemon, waitFor, workspace } from '../helpers/daemon.js';

function exitWithin(proc: ReturnType<typeof spawn>, ms: number): Promise<number | null | 'hung'> {
  if (proc.exitCode !== null) return Promise.resolve(proc.exitCode);
  return new Promise((resolve) => {
    const timer = setTimeout(() => resolve('hung'), ms);
    proc.on('exit', (code) => {
      clearTimeout(timer);
      resolve(code);
    });
  });
}

it('starts with a FIFO config, answers CONFIG_INVALID at once, and stops on SIGTERM', async () => {
  const { dir, env } = workspace();
  execFileSync('mkfifo', ['-m', '600', env.KEYBROKER_CONFIG!]);
  const proc = spawn(process.execPath, [CLI, 'daemon'], { env, cwd: dir, stdio: ['ignore', 'ignore', 'pipe'] });
  let log = '';
  proc.stderr!.on('data', (d: Buffer) => (log += d.toString()));
  // SIGKILL: a daemon hung on the FIFO would not hear SIGTERM.
  killWhenDone(proc, 'SIGKILL');
  await waitFor(
    async () => (await sendRequest(env.KEYBROKER_SOCKET!, { v: 1, op: 'ping' }, { timeoutMs: 500 })).ok,
    10_000,
    'daemon to answer',
  );
  const reply = await sendRequest(env.KEYBROKER_SOCKET!, { v: 1, op: 'get', profile: 'default' }, { timeoutMs: 5_000 });
  expect(reply).toMatchObject({ ok: false, error: { code: 'CONFIG_INVALID' } });
  expect(log).toContain('not a regular file');
  proc.kill('SIGTERM');
  expect(await exitWithin(proc, 5_000)).toBe(0);
});

it('keeps serving the old config when the config is replaced by a FIFO and reloaded, and still stops on SIGTERM', async () => {
  const d = await startDaemon({
    config: 'profiles:\n  a:\n    source: env:KB_FIFO_KEY\n',
    env: { KB_FIFO_KEY: 'sk-fifo-old-config' },
  });
  killWhenDone(d.proc, 'SIGKILL');
  fs.rmSync(d.configPath);
  execFileSync('mkfifo', ['-m', '600', d.configPath]);
  d.signal('SIGHUP');
  await waitFor(() => d.log().includes('config reload failed'), 5_000, 'the reload to fail');
  expect(await d.request({ v: 1, op: 'get', profile: 'a' })).toMatchObject({ ok: true, value: 'sk-fifo-old-config' });
  const status = await d.request({ v: 1, op: 'status' });
  expect(status).toMatchObject({ ok: true, daemon: { reloads: 1 } });
  expect((status as { daemon: { lastReloadError: string } }).daemon.lastReloadError).toContain('not a regular file');
  d.signal('SIGTERM');
  expect(await exitWithin(d.proc, 5_000)).toBe(0);
});
