// Clients trust a socket only when the caller owns it and its directory, and nobody else can get
// into that directory (git credential-cache's rule); autostart writes only into a directory it has
// just checked, without following links; the daemon notices its directory or socket changing.
import { spawn, type ChildProcess } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import {
  baseEnv,
  CLI,
  DAEMON_ARGV,
  privateTempDir,
  run,
  SHIM,
  SHIMS,
  sharedDaemon,
  startDaemon,
  stopAutostarted,
  waitFor,
  type DaemonHandle,
  type RunResult,
  shellQuote,
} from '../helpers/daemon.js';
import { nodeFor, otherUser } from '../helpers/other-user.js';

const cleanups: Array<() => Promise<unknown> | unknown> = [];
afterEach(async () => {
  for (const c of cleanups.splice(0).reverse()) await c();
});

function tempDir(): string {
  const dir = privateTempDir('kb-trust-');
  cleanups.push(() => fs.rmSync(dir, { recursive: true, force: true }));
  return dir;
}

function track(d: DaemonHandle): DaemonHandle {
  cleanups.push(async () => {
    await d.stop();
    fs.rmSync(d.dir, { recursive: true, force: true });
  });
  return d;
}

/**
 * A fake daemon run as another user: it answers every request with its own "key" and writes a
 * line to its stdout for each connection, so a test can tell whether anyone talked to it.
 */
async function plantFakeDaemon(
  socketPath: string,
  user: { uid: number; gid: number },
): Promise<{ proc: ChildProcess; connections(): number }> {
  const script = `
    const net = require('net');
    net.createServer((s) => {
      process.stdout.write('connected\\n');
      s.end(JSON.stringify({ v: 1, ok: true, profile: 'default', value: 'sk-planted', stale: false, source: 'env', expiresInMs: 60000, pong: true, pid: 1, version: '0.1.0' }) + '\\n');
    }).listen(${JSON.stringify(socketPath)}, () => process.stdout.write('up\\n'));`;
  // This node may lie where that user cannot reach (CI's Node 22 and 24, in a checkout under a
  // 0700 directory): nodeFor copies it beside the planted socket then.
  const proc = spawn(nodeFor(user, path.dirname(socketPath)), ['-e', script], {
    uid: user.uid,
    gid: user.gid,
    stdio: ['ignore', 'pipe', 'inherit'],
    cwd: '/',
  });
  let out = '';
  proc.stdout!.on('data', (d: Buffer) => (out += d.toString()));
  cleanups.push(() => proc.kill('SIGKILL'));
  await waitFor(() => out.includes('up\n'), 5_000, 'fake daemon to listen');
  return { proc, connections: () => out.split('\n').filter((l) => l === 'connected').length };
}

describe('a socket planted by another user', () => {
  const other = otherUser();
  if (other.skip) console.log(`skipping planted-socket tests: ${other.skip}`);

  it.skipIf(Boolean(other.skip))(
    'in a directory that user owns is refused by the shim and the CLI (exit 18, nothing on stdout, nothing sent)',
    async () => {
      const user = other as { uid: number; gid: number };
      const home = tempDir();
      // /tmp/<dir owned by the other user>/kb.sock, where the victim's KEYBROKER_SOCKET points.
      const planted = fs.mkdtempSync('/tmp/kb-plant-');
      cleanups.push(() => fs.rmSync(planted, { recursive: true, force: true }));
      fs.chownSync(planted, user.uid, user.gid);
      fs.chmodSync(planted, 0o755);
      const socket = path.join(planted, 'kb.sock');
      const fake = await plantFakeDaemon(socket, user);
      const env = baseEnv(home, { KEYBROKER_SOCKET: socket });

      const shim = await run('/bin/sh', ['-c', shellQuote(SHIM)], { env });
      expect(shim.code).toBe(18);
      expect(shim.stdout).toBe('');
      expect(shim.stderr.trim().split('\n')).toHaveLength(1);
      expect(shim.stderr).toContain(planted);
      const status = await run(process.execPath, [CLI, 'status'], { env });
      expect(status.code).toBe(18);
      expect(status.stdout).toBe('');
      expect(fake.connections()).toBe(0);
    },
  );

  it.skipIf(Boolean(other.skip))(
    'in a private directory of ours (put there while it was open) is refused: the socket is not ours',
    async () => {
      const user = other as { uid: number; gid: number };
      const home = tempDir();
      const dir = path.join(home, 'sock');
      fs.mkdirSync(dir, { mode: 0o700 });
      fs.chmodSync(dir, 0o777);
      fs.chmodSync(home, 0o711);
      const socket = path.join(dir, 'kb.sock');
      const fake = await plantFakeDaemon(socket, user);
      fs.chmodSync(dir, 0o700);
      fs.chmodSync(home, 0o700);
      const env = baseEnv(home, { KEYBROKER_SOCKET: socket, KEYBROKER_NO_AUTOSTART: '' });

      const shim = await run('/bin/sh', ['-c', shellQuote(SHIM)], { env });
      expect(shim.code).toBe(18);
      expect(shim.stdout).toBe('');
      expect(shim.stderr).toContain(`owned by uid ${user.uid}`);
      expect(fake.connections()).toBe(0);
    },
  );
});

/** Each shim built here (SHIMS), one after the other, as Claude Code runs it: both must refuse. */
const eachShim = async (d: Pick<DaemonHandle, 'shim'>, env: NodeJS.ProcessEnv = {}): Promise<RunResult[]> => {
  const results: RunResult[] = [];
  for (const s of SHIMS) if (s.skip === undefined) results.push(await d.shim('', env, s.path));
  return results;
};

describe('the socket directory', () => {
  it('is refused by clients when group or others can enter it, even with our own daemon behind it', async () => {
    const d = track(await startDaemon({ config: 'profiles:\n  default:\n    source: env:HOME\n' }));
    fs.chmodSync(path.dirname(d.socket), 0o755);
    const shims = await eachShim(d);
    fs.chmodSync(path.dirname(d.socket), 0o700);
    for (const shim of shims) {
      expect(shim.code).toBe(18);
      expect(shim.stdout).toBe('');
      expect(shim.stderr).toContain(`chmod 700 ${path.dirname(d.socket)}`);
    }
  });

  it('that is a symbolic link is refused by clients', async () => {
    const d = track(await startDaemon({ config: 'profiles:\n  default:\n    source: env:HOME\n' }));
    const link = path.join(d.dir, 'link');
    fs.symlinkSync(path.dirname(d.socket), link);
    for (const shim of await eachShim(d, { KEYBROKER_SOCKET: path.join(link, path.basename(d.socket)) })) {
      expect(shim.code).toBe(18);
      expect(shim.stdout).toBe('');
    }
  });

  const exitOf = (d: DaemonHandle): Promise<number | null> =>
    d.proc.exitCode !== null
      ? Promise.resolve(d.proc.exitCode)
      : new Promise((r) => d.proc.once('exit', (code) => r(code)));
  const within = <T>(p: Promise<T>, ms: number): Promise<T | 'still running'> =>
    Promise.race([p, new Promise<'still running'>((r) => setTimeout(() => r('still running'), ms))]);

  it.each([
    ['opened to group and others', (d: DaemonHandle) => fs.chmodSync(path.dirname(d.socket), 0o755)],
    [
      'swapped for another directory',
      (d: DaemonHandle) => {
        fs.renameSync(path.dirname(d.socket), `${path.dirname(d.socket)}.old`);
        fs.mkdirSync(path.dirname(d.socket), { mode: 0o700 });
      },
    ],
    ['left without its socket', (d: DaemonHandle) => fs.rmSync(d.socket)],
  ])('is re-checked by the daemon: %s after start, it logs an error and stops with exit 18', async (_what, change) => {
    const d = track(await startDaemon({ config: 'profiles: {}\n' }));
    change(d);
    expect(await within(exitOf(d), 8_000)).toBe(18);
    expect(d.log()).toMatch(/"level":50,.*(socket directory|socket) .*stopping/);
  });
});

describe('the directories above the socket directory', () => {
  // Whoever can write to one of them can rename the socket directory away and put their own in its
  // place between a client's check and its connect: refused unless the sticky bit stops that.
  const config = 'profiles:\n  default:\n    source: env:KB_ABOVE_KEY\n';
  /** A workspace whose socket is in <dir>/open/sock/, with open/ given `mode` (`dir`: a fresh one). */
  function openParent(mode: number, dir = tempDir()): { dir: string; env: NodeJS.ProcessEnv; open: string } {
    const open = path.join(dir, 'open');
    fs.mkdirSync(open);
    fs.chmodSync(open, mode);
    const env = baseEnv(dir, { KEYBROKER_SOCKET: path.join(open, 'sock', 'kb.sock'), KB_ABOVE_KEY: 'sk-above-1' });
    fs.writeFileSync(env.KEYBROKER_CONFIG!, config, { mode: 0o600 });
    return { dir, env, open };
  }

  it('a daemon will not listen below a directory others can write without the sticky bit (exit 18)', async () => {
    const { env, open } = openParent(0o777);
    const r = await run(process.execPath, [...DAEMON_ARGV], { env, timeoutMs: 10_000 });
    expect(r.code).toBe(18);
    expect(r.stderr).toContain(`directory ${open} above the socket`);
    expect(fs.existsSync(env.KEYBROKER_SOCKET!)).toBe(false);
  });

  // A daemon listening below open/ (0755), for the tests that change open/ under it and put it back:
  // the daemon re-checks only its own directory, so it runs on unchanged.
  let open = '';
  const live = sharedDaemon(() => {
    const place = openParent(0o755, privateTempDir('kb-trust-'));
    open = place.open;
    return { config, ...place };
  });

  it('clients refuse a daemon that already listens there, once the directory above is opened', async () => {
    const d = live;
    fs.chmodSync(open, 0o777);
    const shims = await eachShim(d);
    const cli = await d.cli(['status']);
    fs.chmodSync(open, 0o755);
    for (const shim of shims) {
      expect(shim.code).toBe(18);
      expect(shim.stdout).toBe('');
      expect(shim.stderr).toContain(`chmod go-w ${open}`);
    }
    expect(cli.code).toBe(18);
  });

  it('autostart will not start a daemon there either', async () => {
    const { env } = openParent(0o777);
    const shim = await run('/bin/sh', ['-c', shellQuote(SHIM)], { env: { ...env, KEYBROKER_NO_AUTOSTART: '' } });
    expect(shim.code).toBe(18);
    expect(fs.existsSync(path.join(path.dirname(env.KEYBROKER_SOCKET!), 'daemon.log'))).toBe(false);
  });

  it('a directory others can write with the sticky bit (like /tmp) is fine', async () => {
    const { dir, env } = openParent(0o1777);
    const d = track(await startDaemon({ config, dir, env }));
    expect(await d.shim()).toMatchObject({ code: 0, stdout: 'sk-above-1\n' });
  });

  it('a directory above owned by another user is refused, even if only they can write it', async (ctx) => {
    const user = otherUser();
    if (user.skip !== undefined) return ctx.skip(user.skip);
    const d = live;
    fs.chownSync(open, user.uid, user.gid);
    const shims = await eachShim(d);
    fs.chownSync(open, process.getuid!(), process.getgid!());
    for (const shim of shims) {
      expect(shim.code).toBe(18);
      expect(shim.stderr).toContain(`owned by uid ${user.uid}`);
    }
  });
});

describe('autostart', () => {
  it('does not follow a symbolic link planted as daemon.log (the target is not appended to)', async () => {
    const dir = tempDir();
    const env = baseEnv(dir, { KEYBROKER_NO_AUTOSTART: '' });
    fs.writeFileSync(env.KEYBROKER_CONFIG!, 'profiles:\n  default:\n    source: env:HOME\n', { mode: 0o600 });
    const sockDir = path.dirname(env.KEYBROKER_SOCKET!);
    fs.mkdirSync(sockDir, { mode: 0o700 });
    const bashrc = path.join(dir, 'bashrc');
    fs.writeFileSync(bashrc, 'export PATH=$PATH\n');
    fs.symlinkSync(bashrc, path.join(sockDir, 'daemon.log'));
    try {
      const shim = await run('/bin/sh', ['-c', shellQuote(SHIM)], { env });
      expect(shim.code).toBe(18);
      expect(shim.stdout).toBe('');
      expect(fs.readFileSync(bashrc, 'utf8')).toBe('export PATH=$PATH\n');
      expect(fs.existsSync(path.join(sockDir, 'autostart.lock'))).toBe(false);
    } finally {
      // On a build that follows the link, a daemon was started: stop it.
      if (fs.existsSync(env.KEYBROKER_SOCKET!)) await stopAutostarted(env);
    }
  });

  it('refuses to start a daemon in a socket directory others can enter', async () => {
    const dir = tempDir();
    const env = baseEnv(dir, { KEYBROKER_NO_AUTOSTART: '' });
    fs.writeFileSync(env.KEYBROKER_CONFIG!, 'profiles: {}\n', { mode: 0o600 });
    const sockDir = path.dirname(env.KEYBROKER_SOCKET!);
    fs.mkdirSync(sockDir, { mode: 0o700 });
    fs.chmodSync(sockDir, 0o755);
    const shim = await run('/bin/sh', ['-c', shellQuote(SHIM)], { env });
    expect(shim.code).toBe(18);
    expect(shim.stdout).toBe('');
    expect(fs.existsSync(path.join(sockDir, 'daemon.log'))).toBe(false);
  });
});
