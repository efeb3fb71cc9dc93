// The daemon as a process: its private socket, stale and live sockets, signals, reloads.
import { spawn } from 'node:child_process';
import fs from 'node:fs';
import net from 'node:net';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { killWhenDone } from '../helpers/cleanup.js';
import {
  DAEMON_ARGV,
  run,
  SETUP_SHIM,
  sharedDaemon,
  startDaemon,
  waitFor,
  workspace,
  shellQuote,
  type DaemonHandle,
} from '../helpers/daemon.js';

/** Run `keybroker daemon` expecting it to exit; returns its status and stderr. */
function daemonExits(env: NodeJS.ProcessEnv, args: string[] = []): Promise<{ code: number | null; stderr: string }> {
  return run(process.execPath, [...DAEMON_ARGV, ...args], { env, timeoutMs: 10_000 }).then((r) => ({
    code: r.code,
    stderr: r.stderr,
  }));
}

const mode = (p: string): number => fs.statSync(p).mode & 0o777;

/**
 * A running daemon for the tests that need no fresh one: they look at its socket, or load a config
 * of their own into it (SIGHUP, `keybroker reload`) before they look at what it serves.
 */
const live = sharedDaemon({ config: 'profiles: {}\n' });

/** SIGHUP the daemon and wait for `msg` in what it logs after the signal. */
async function hup(d: DaemonHandle, msg: string): Promise<void> {
  const from = d.log().length;
  d.signal('SIGHUP');
  await waitFor(() => d.log().slice(from).includes(msg), 5_000, msg);
}
const RELOADED = '"msg":"config reloaded"';

describe('socket and directory', () => {
  it('creates the socket directory 0700 and the socket 0600', () => {
    const d = live;
    expect(mode(path.dirname(d.socket))).toBe(0o700);
    expect(mode(d.socket)).toBe(0o600);
    expect(fs.statSync(d.socket).isSocket()).toBe(true);
  });

  it('refuses a socket directory that group or others can enter, and says how to fix it', async () => {
    const { env } = workspace({ config: 'profiles: {}\n' });
    fs.mkdirSync(path.dirname(env.KEYBROKER_SOCKET!), { mode: 0o755 });
    fs.chmodSync(path.dirname(env.KEYBROKER_SOCKET!), 0o755);
    const { code, stderr } = await daemonExits(env);
    expect(code).toBe(18);
    expect(stderr).toContain(
      `keybroker: socket directory ${path.dirname(env.KEYBROKER_SOCKET!)} is accessible by group or others (mode 0755) — run: chmod 700`,
    );
    expect(fs.existsSync(env.KEYBROKER_SOCKET!)).toBe(false);
  });

  it.skipIf(process.getuid?.() !== 0)(
    'refuses a socket directory owned by another user (needs root to set up)',
    async () => {
      const { env } = workspace({ config: 'profiles: {}\n' });
      fs.mkdirSync(path.dirname(env.KEYBROKER_SOCKET!), { mode: 0o700 });
      fs.chownSync(path.dirname(env.KEYBROKER_SOCKET!), 4242, 4242);
      const { code, stderr } = await daemonExits(env);
      expect(code).toBe(18);
      expect(stderr).toContain('is owned by uid 4242');
    },
  );

  it('replaces a stale socket left by a crashed daemon', async () => {
    const { dir, env } = workspace();
    const socket = env.KEYBROKER_SOCKET!;
    fs.mkdirSync(path.dirname(socket), { mode: 0o700 });
    // A listener that died without removing its socket file, as a crashed daemon leaves it: one
    // bound here, its file moved aside while it closes (closing removes it) and put back.
    const listener = net.createServer();
    await new Promise<void>((r) => listener.listen(socket, r));
    fs.renameSync(socket, `${socket}.aside`);
    await new Promise((r) => listener.close(r));
    fs.renameSync(`${socket}.aside`, socket);
    expect(fs.statSync(socket).isSocket()).toBe(true);
    const d = await startDaemon({ config: 'profiles: {}\n', dir });
    expect((await d.request({ v: 1, op: 'ping' })).ok).toBe(true);
  });

  it("never steals a live daemon's socket: a second daemon exits with a clear message", async () => {
    const d = live;
    const { code, stderr } = await daemonExits(d.env);
    expect(code).toBe(17);
    // Names the socket and the daemon that holds it (the pid to stop).
    expect(stderr).toContain(d.socket);
    expect(stderr).toContain(String(d.proc.pid));
    expect(await d.request({ v: 1, op: 'ping' })).toMatchObject({ ok: true, pid: d.proc.pid });
  });

  it('lets exactly one of several daemons started together keep the socket', async () => {
    const ws = workspace({ config: 'profiles: {}\n' });
    const procs = Array.from({ length: 3 }, () =>
      spawn(process.execPath, DAEMON_ARGV, { env: ws.env, stdio: 'ignore' }),
    );
    for (const p of procs) killWhenDone(p);
    const losers = procs.length - 1;
    await waitFor(() => procs.filter((p) => p.exitCode !== null).length === losers, 15_000, 'all but one to give up');
    expect(procs.filter((p) => p.exitCode === 17)).toHaveLength(losers);
    const survivor = procs.find((p) => p.exitCode === null)!;
    expect(await ws.request({ v: 1, op: 'ping' })).toMatchObject({ ok: true, pid: survivor.pid });
  });
});

describe('signals', () => {
  it('on SIGTERM finishes replies in flight, removes its socket and exits 0', async () => {
    const d = await startDaemon({ config: 'profiles:\n  slow:\n    source: exec:sleep 1; echo sk-slow\n' });
    const pending = d.request({ v: 1, op: 'get', profile: 'slow' }, 5_000);
    await new Promise((r) => setTimeout(r, 300));
    d.signal('SIGTERM');
    expect(await pending).toMatchObject({ ok: true, value: 'sk-slow' });
    expect(await d.stop()).toBe(0);
    expect(fs.existsSync(d.socket)).toBe(false);
  });

  it('on SIGINT stops the same way', async () => {
    const d = await startDaemon({ config: 'profiles: {}\n' });
    d.signal('SIGINT');
    expect(await d.stop()).toBe(0);
    expect(fs.existsSync(d.socket)).toBe(false);
  });
});

describe('reload on SIGHUP', () => {
  it('keeps the cache of unchanged profiles, rebuilds changed ones, drops removed ones, adds new ones', async () => {
    const d = live;
    const { dir } = d;
    fs.writeFileSync(path.join(dir, 'key'), 'sk-one');
    const counting = (name: string) => `exec:echo x >> ${dir}/${name}.count; cat ${dir}/key`;
    const fetches = (name: string) =>
      fs.existsSync(path.join(dir, `${name}.count`))
        ? fs.readFileSync(path.join(dir, `${name}.count`), 'utf8').split('\n').length - 1
        : 0;
    d.writeConfig(
      `profiles:\n  keep:\n    source: ${counting('keep')}\n  change:\n    source: ${counting('change')}\n  drop:\n    source: ${counting('drop')}\n`,
    );
    await hup(d, RELOADED);
    for (const p of ['keep', 'change', 'drop'])
      expect(await d.request({ v: 1, op: 'get', profile: p })).toMatchObject({ ok: true, value: 'sk-one' });
    fs.writeFileSync(path.join(dir, 'key'), 'sk-two');
    d.writeConfig(
      `profiles:\n  keep:\n    source: ${counting('keep')}\n  change:\n    source: ${counting('change')}\n    ttl: 1h\n  add:\n    source: ${counting('add')}\n`,
    );
    const from = d.log().length;
    await hup(d, RELOADED);
    expect(await d.request({ v: 1, op: 'get', profile: 'keep' })).toMatchObject({ ok: true, value: 'sk-one' });
    expect(await d.request({ v: 1, op: 'get', profile: 'change' })).toMatchObject({ ok: true, value: 'sk-two' });
    expect(await d.request({ v: 1, op: 'get', profile: 'add' })).toMatchObject({ ok: true, value: 'sk-two' });
    expect(await d.request({ v: 1, op: 'get', profile: 'drop' })).toMatchObject({
      ok: false,
      error: { code: 'UNKNOWN_PROFILE' },
    });
    expect([fetches('keep'), fetches('change'), fetches('add')]).toEqual([1, 2, 1]);
    expect(d.log().slice(from)).toMatch(
      /"added":\["add"\],"changed":\["change"\],"removed":\["drop"\],"kept":\["keep"\]/,
    );
  });

  it('keeps the old config running when the new one is bad, and says so in status', async () => {
    const d = live;
    d.writeConfig('profiles:\n  a:\n    source: env:HOME\n');
    await hup(d, RELOADED);
    d.writeConfig('profiles:\n  a:\n    source: env:HOME\n    ttl: forever\n');
    await hup(d, 'config reload failed');
    expect(await d.request({ v: 1, op: 'get', profile: 'a' })).toMatchObject({ ok: true, value: d.dir });
    const status = await d.cli(['status']);
    expect(status.stdout).toContain('config not loaded:');
    expect(status.stdout).toContain('profiles.a.ttl: "forever" is not a duration');
    expect(d.proc.exitCode).toBeNull();
  });

  it('starts with a broken config, answers with the config error, and recovers on SIGHUP', async () => {
    const d = await startDaemon({ config: 'profiles:\n  a:\n    sauce: env:HOME\n' });
    const shim = await d.shim('a');
    expect(shim.code).toBe(8);
    expect(shim.stdout).toBe('');
    // A summary for Claude Code's one line; config check lists both problems (the missing source, the typo).
    expect(shim.stderr).toMatch(
      /^keybroker: 2 problems in .*; first: line 2: profiles\.a.* — run: keybroker config check\n$/,
    );
    expect(shim.stderr.trim().split('\n')).toHaveLength(1);
    d.writeConfig('profiles:\n  a:\n    source: env:HOME\n');
    await hup(d, RELOADED);
    expect(await d.request({ v: 1, op: 'get', profile: 'a' })).toMatchObject({ ok: true, value: d.dir });
  });
});

describe('keybroker reload', () => {
  it('reloads the running daemon and says what it loaded, or why not (exit 8, old config kept)', async () => {
    const d = live;
    d.writeConfig('profiles:\n  a:\n    source: env:HOME\n  b:\n    source: env:HOME\n');
    expect(await d.cli(['reload'])).toMatchObject({ code: 0, stdout: `reloaded ${d.configPath}: 2 profiles (a, b)\n` });
    d.writeConfig('profiles:\n  a:\n    source: env:HOME\n    ttl: 5x\n');
    const bad = await d.cli(['reload']);
    expect(bad.code).toBe(8);
    expect(bad.stderr).toContain(`${d.configPath}:4: profiles.a.ttl: "5x" is not a duration`);
    expect(bad.stderr).toContain('keybroker: config not reloaded: the daemon keeps running the previous one');
    expect(await d.request({ v: 1, op: 'get', profile: 'b' })).toMatchObject({ ok: true });
  });
});

describe('first run', () => {
  it('writes a commented starter config at the default path and says where', async () => {
    const { dir, env } = workspace();
    delete env.KEYBROKER_CONFIG;
    const proc = spawn(process.execPath, DAEMON_ARGV, { env, stdio: ['ignore', 'ignore', 'pipe'] });
    let log = '';
    proc.stderr!.on('data', (c: Buffer) => (log += c.toString()));
    killWhenDone(proc);
    const expected = path.join(dir, 'config', 'keybroker', 'config.yaml');
    await waitFor(() => log.includes('"msg":"listening"'), 10_000, 'daemon');
    expect(log).toContain(
      `wrote a starter config to ${expected} — edit it, then run: keybroker reload (or kill -HUP ${proc.pid})`,
    );
    expect(fs.readFileSync(expected, 'utf8')).toMatch(/^# keybroker configuration/);
    expect(mode(expected)).toBe(0o600);
    // Its default profile points at a key file that does not exist yet: the error says what to do.
    const shim = await run('/bin/sh', ['-c', shellQuote(SETUP_SHIM)], { env });
    expect(shim.code).toBe(10);
    expect(shim.stderr).toContain("does not exist — create it with: (umask 077; printf '%s\\n' 'YOUR-KEY' >");
  });
});
