// The daemon under load and at its limits: a busy daemon's socket is never taken for stale, good
// clients survive a connection flood, running out of file descriptors is named, and a second
// SIGTERM during a stop never kills it mid-way.
import fs from 'node:fs';
import net from 'node:net';
import { afterEach, describe, expect, it } from 'vitest';
import {
  DAEMON_ARGV,
  daemonWorkspace,
  privateTempDir,
  run,
  shellQuote,
  SHIMS,
  startDaemon,
  type DaemonHandle,
} from '../helpers/daemon.js';

const cleanups: Array<() => Promise<unknown> | unknown> = [];
afterEach(async () => {
  for (const c of cleanups.splice(0).reverse()) await c();
});

function track(d: DaemonHandle): DaemonHandle {
  cleanups.push(async () => {
    d.signal('SIGCONT');
    await d.stop();
    fs.rmSync(d.dir, { recursive: true, force: true });
  });
  return d;
}

/**
 * Stop the daemon (SIGSTOP) so it accepts nothing, then connect until the kernel refuses with
 * EAGAIN: its listen backlog is full, as under a connection flood.
 */
async function fillBacklog(d: DaemonHandle): Promise<net.Socket[]> {
  d.signal('SIGSTOP');
  const sockets: net.Socket[] = [];
  cleanups.push(() => sockets.forEach((s) => s.destroy()));
  for (let i = 0; i < 10_000; i++) {
    const outcome = await new Promise<string>((resolve) => {
      const s = net.createConnection({ path: d.socket });
      s.once('connect', () => {
        sockets.push(s);
        resolve('connected');
      });
      s.once('error', (err: NodeJS.ErrnoException) => resolve(err.code ?? 'error'));
    });
    if (outcome === 'EAGAIN') return sockets;
    if (outcome !== 'connected') throw new Error(`unexpected connect outcome ${outcome}`);
  }
  throw new Error('the backlog never filled');
}

const config = 'profiles:\n  default:\n    source: env:HOME\n';

describe('a busy live daemon', () => {
  it('keeps its socket: a second daemon that gets EAGAIN does not take it for stale', async () => {
    const d = track(await startDaemon({ config }));
    const ino = fs.statSync(d.socket).ino;
    await fillBacklog(d);
    const second = await run(process.execPath, [...DAEMON_ARGV], {
      env: d.env,
      timeoutMs: 10_000,
    });
    expect(second.code).toBe(17);
    expect(fs.statSync(d.socket).ino).toBe(ino);
    d.signal('SIGCONT');
    expect(await d.request({ v: 1, op: 'ping' })).toMatchObject({ ok: true, pid: d.proc.pid });
  });
});

describe('a connection flood', () => {
  it('does not fail good shim calls (they retry a full backlog), and costs a bounded log', async () => {
    const d = track(await startDaemon({ config, logLevel: 'info' }));
    await d.shim(); // the value is cached: the shims below measure the socket, not the source
    const logBefore = d.log().length;
    await fillBacklog(d);
    // A few of each shim built here: how many is not the point, that each one gets through is.
    const shims = SHIMS.filter((s) => s.skip === undefined).flatMap((s) =>
      Array.from({ length: 3 }, () => d.shim('', {}, s.path)),
    );
    // The shims meet the full backlog (2 s is ample for them to start and try), then the daemon
    // resumes and works through ~500 idle connections (more than its cap of waiting
    // connections) and the shims' retries.
    await new Promise((r) => setTimeout(r, 2_000));
    d.signal('SIGCONT');
    const results = await Promise.all(shims);
    expect(results.map((r) => r.code)).toEqual(results.map(() => 0));
    expect(results.every((r) => r.stdout === `${d.dir}\n`)).toBe(true);
    const newLog = d.log().slice(logBefore);
    expect(newLog.split('\n').filter((l) => l.includes('dropped the oldest')).length).toBeGreaterThan(0);
    expect(newLog.split('\n').filter((l) => l.includes('dropped the oldest')).length).toBeLessThanOrEqual(2);
  });
});

describe('out of file descriptors', () => {
  // How many descriptors Node needs to boot, and the daemon after it, depends on the Node version
  // and on the build (a bundle opens fewer files than ~250 ES modules). So the daemon starts under
  // `ulimit -n 64` with K descriptors already taken, for a range of K: wherever in its start-up it
  // runs out, it must say which limit and how to raise it, never "internal error". K goes down from
  // where Node itself cannot boot (not ours to word) until the daemon starts (stopped by the timeout).
  it('says which limit ran out and how to raise it (exit 20), not "internal error"', async () => {
    const dir = privateTempDir('kb-nofile-');
    cleanups.push(() => fs.rmSync(dir, { recursive: true, force: true }));
    const ws = daemonWorkspace(dir, config);
    const outcomes: Array<{ taken: number; code: number | null; stderr: string }> = [];
    const attempt = async (taken: number): Promise<'no node' | 'ran out' | 'started'> => {
      // Started with the daemon's Node options, as autostart and the units start it: a daemon
      // started without them execs itself with them, and Node's exec closes the taken descriptors.
      const script = `ulimit -n 64 && for i in $(seq ${taken}); do exec {fd}</dev/null; done; exec ${[process.execPath, ...DAEMON_ARGV].map(shellQuote).join(' ')}`;
      const r = await run('/bin/bash', ['-c', script], { env: ws.env, timeoutMs: 3_000 });
      outcomes.push({ taken, code: r.code, stderr: r.stderr });
      fs.rmSync(ws.socket, { force: true });
      // Killed by the timeout: it started. Node itself dies of a signal when it cannot boot.
      if (r.code === null) return r.ms >= 2_900 ? 'started' : 'no node';
      return 'ran out';
    };
    // Where Node cannot boot (a dozen K, ~0.1 s of CPU each) is crossed in strides; then every K
    // from just below the last stride where it could not down to where the daemon starts.
    const STRIDE = 4;
    let taken = 56;
    let outcome = await attempt(taken);
    while (outcome === 'no node' && taken - STRIDE >= 8) outcome = await attempt((taken -= STRIDE));
    for (let k = Math.min(taken + STRIDE - 1, 56); k > taken; k--) await attempt(k);
    while (outcome !== 'started' && taken > 8) outcome = await attempt(--taken);
    // Every K from the highest where Node boots down to the lowest tried was tried.
    const booted = outcomes.filter((o) => o.code !== null).map((o) => o.taken);
    const tried = new Set(outcomes.map((o) => o.taken));
    for (let k = Math.max(...booted); k >= taken; k--) expect(tried.has(k), `K=${k} tried`).toBe(true);
    const named = outcomes.filter((o) => o.code === 20);
    expect(named.length).toBeGreaterThan(0);
    for (const o of named) {
      expect(o.stderr.trim().split('\n')).toHaveLength(1);
      expect(o.stderr).toContain('ulimit -n');
    }
    expect(outcomes.filter((o) => o.stderr.includes('internal error'))).toEqual([]);
  }, 180_000);
});

describe('two SIGTERMs in quick succession', () => {
  it('still stop the daemon cleanly: exit 0, socket removed', async () => {
    for (let round = 0; round < 3; round++) {
      const d = track(await startDaemon({ config: 'profiles: {}\n' }));
      const exited = new Promise<{ code: number | null; signal: string | null }>((r) =>
        d.proc.once('exit', (code, signal) => r({ code, signal })),
      );
      // Keep signalling until it is gone: whatever point of the stop a signal lands in, it must
      // join the stop rather than get the default action.
      const burst = setInterval(() => {
        try {
          process.kill(d.proc.pid!, 'SIGTERM');
        } catch {
          // already gone
        }
      }, 1);
      const result = await exited;
      clearInterval(burst);
      expect(result).toEqual({ code: 0, signal: null });
      expect(fs.existsSync(d.socket)).toBe(false);
    }
  });
});
