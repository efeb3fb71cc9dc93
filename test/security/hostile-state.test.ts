// Red-team probes against the built daemon with its state directory tampered with: what the same
// user's stray tools (or a mistaken `mkfifo`) can leave where the daemon keeps its audit trail.
// The daemon must keep serving, say what is wrong in status, and still stop on SIGTERM.
import { execFileSync } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { expect, it } from 'vitest';
import type { StatusReply } from '../../src/protocol/messages.js';
import { killWhenDone } from '../helpers/cleanup.js';
import { privateTempDir, startDaemon, waitFor, type DaemonHandle } from '../helpers/daemon.js';

const KEY = 'sk-hostile-state-7d1e';

function exitWithin(d: DaemonHandle, ms: number): Promise<number | null | 'hung'> {
  return Promise.race([d.stop(), new Promise<'hung'>((r) => setTimeout(() => r('hung'), ms))]);
}

it('an audit.jsonl that is a FIFO is refused (UNSAFE_PATH), gets still served, and SIGTERM still stops the daemon', async () => {
  const dir = privateTempDir();
  const stateDir = path.join(dir, 'state', 'keybroker');
  fs.mkdirSync(stateDir, { recursive: true, mode: 0o700 });
  // Opened blocking for writing, a FIFO waits for a reader forever: the write never ends, and
  // shutdown (which flushes the trail) waits for it.
  execFileSync('mkfifo', ['-m', '600', path.join(stateDir, 'audit.jsonl')]);
  const d = await startDaemon({ dir, config: 'profiles:\n  default:\n    source: env:KB_KEY\n', env: { KB_KEY: KEY } });
  // SIGKILL: a daemon hung on the FIFO would not hear SIGTERM.
  killWhenDone(d.proc, 'SIGKILL');
  expect(await d.request({ v: 1, op: 'get', profile: 'default' })).toMatchObject({ ok: true, value: KEY });
  let audit: StatusReply['audit'] | undefined;
  await waitFor(
    async () => {
      audit = ((await d.request({ v: 1, op: 'status' })) as unknown as StatusReply).audit;
      return (audit?.dropped ?? 0) >= 1;
    },
    5_000,
    'the audit write to fail',
  );
  expect(audit!.lastError?.code).toBe('UNSAFE_PATH');
  expect(await exitWithin(d, 5_000)).toBe(0);
});

it('a key pasted into a config field is never echoed by a failed reload: not in the log, status or config check', async () => {
  // Key-shaped, but not the value any source serves: only the shape rules can catch it.
  const pasted = 'sk-ant-api03-PastedIntoTheConfig0123456789abcdef';
  const d = await startDaemon({ config: 'profiles:\n  default:\n    source: env:KB_KEY\n', env: { KB_KEY: KEY } });
  for (const bad of [`    source: file:${pasted}\n`, `    source: env:KB_KEY\n    ttl: ${pasted}\n`]) {
    d.writeConfig(`profiles:\n  default:\n${bad}`);
    const check = await d.cli(['config', 'check']);
    expect(check.code).toBe(8);
    expect(check.stdout + check.stderr).not.toContain(pasted);
    d.signal('SIGHUP');
    let status: StatusReply | undefined;
    await waitFor(
      async () => {
        status = (await d.request({ v: 1, op: 'status' })) as unknown as StatusReply;
        return status.daemon.lastReloadError !== null;
      },
      5_000,
      'the reload to fail',
    );
    expect(JSON.stringify(status)).not.toContain(pasted);
    // The old config keeps serving.
    expect(await d.request({ v: 1, op: 'get', profile: 'default' })).toMatchObject({ ok: true, value: KEY });
    d.writeConfig('profiles:\n  default:\n    source: env:KB_KEY\n');
    d.signal('SIGHUP');
    await waitFor(
      async () => ((await d.request({ v: 1, op: 'status' })) as unknown as StatusReply).daemon.lastReloadError === null,
      5_000,
      'the good reload',
    );
  }
  expect(d.log()).toContain('CONFIG_INVALID');
  expect(d.log()).not.toContain(pasted);
});
