// keybroker stop against real daemons and stand-ins on real sockets: it stops a daemon and waits
// for it, goes through systemctl for a systemd one, refuses to signal a pid that is not a
// keybroker daemon, and gives up at its deadline.
import { spawn } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { ERROR_CODES } from '../../src/protocol/messages.js';
import { installFakeServiceManagers } from '../fakes/fake-service-managers.js';
import { killWhenDone } from '../helpers/cleanup.js';
import { isRunning, startAsSystemd, startDaemon, workspace } from '../helpers/daemon.js';
import { recordingServer } from '../helpers/stand-in-daemon.js';

const CONFIG = 'profiles:\n  default:\n    source: env:KB_STOP_KEY\n';
const stopWorkspace = () => workspace({ prefix: 'kb-stop-', config: CONFIG });

describe('keybroker stop', () => {
  it('stops the running daemon, waits until it has exited, and names its pid and socket', async () => {
    const d = await startDaemon({ config: CONFIG, prefix: 'kb-stop-' });
    const exited = new Promise<number | null>((resolve) => d.proc.on('exit', resolve));
    const r = await d.cli(['stop']);
    expect(r.code).toBe(0);
    // Gone by the time stop returns: no waiting here. (Exited, that is: it stays a zombie until this
    // process reaps it, and Node may not have done so yet.) Then its exit status.
    expect(isRunning(d.proc.pid!)).toBe(false);
    expect(await exited).toBe(0);
    expect(fs.existsSync(d.socket)).toBe(false);
    expect(r.stdout).toContain(`pid ${d.proc.pid}`);
    expect(r.stdout).toContain(d.socket);
  });

  it('exits DAEMON_UNREACHABLE when no daemon answers', async () => {
    const w = stopWorkspace();
    const r = await w.cli(['stop']);
    expect(r.code).toBe(ERROR_CODES.DAEMON_UNREACHABLE);
  });

  // (One daemon for both outcomes: ~0.5 s of CPU a daemon.)
  it('stops a daemon systemd runs through systemctl --user stop, not by signalling it itself; exits UNAVAILABLE, leaving it running, when systemctl fails', async () => {
    const w = stopWorkspace();
    const fake = installFakeServiceManagers(w.dir, process.getuid!());
    const daemon = await startAsSystemd(w);
    const ping = await w.request({ v: 1, op: 'ping' });
    expect(ping.ok && 'pong' in ping && ping.startedBy).toBe('systemd');
    const stop = (extra: NodeJS.ProcessEnv) =>
      w.cli(['stop'], { ...fake.env, PATH: `${fake.bin}:${process.env.PATH}`, ...extra });

    const failed = await stop({ FAKE_SYSTEMCTL_MODE: 'nobus' });
    expect(failed.code).toBe(ERROR_CODES.UNAVAILABLE);
    expect(isRunning(daemon.pid!)).toBe(true);

    const before = fake.calls().length;
    const r = await stop({ FAKE_SYSTEMCTL_MAINPID: String(daemon.pid) });
    expect(r.code).toBe(0);
    expect(fake.calls().slice(before)).toEqual(['systemctl --user stop keybroker.service']);
    expect(isRunning(daemon.pid!)).toBe(false);
  });

  it('refuses to signal a pid that is not the process listening on the socket', async () => {
    const w = stopWorkspace();
    const victim = spawn('sleep', ['30'], { stdio: 'ignore' });
    killWhenDone(victim, 'SIGKILL');
    const standIn = await recordingServer(w.socket, { ok: true, pong: true, pid: victim.pid, version: '0.1.0' });
    try {
      const r = await w.cli(['stop']);
      expect(r.code).toBe(ERROR_CODES.PERMISSION_DENIED);
      expect(isRunning(victim.pid!)).toBe(true);
    } finally {
      // (Not awaited: the stand-in keeps half-open connections, which close() would wait for.)
      void standIn.close();
      victim.kill('SIGKILL');
    }
  });

  it('refuses to signal the listener when its command line is not keybroker daemon', async () => {
    const w = stopWorkspace();
    // The listener names itself: the kernel agrees, but this process is no daemon.
    const standIn = await recordingServer(w.socket, { ok: true, pong: true, pid: process.pid, version: '0.1.0' });
    try {
      const r = await w.cli(['stop']);
      expect(r.code).toBe(ERROR_CODES.PERMISSION_DENIED);
    } finally {
      void standIn.close();
    }
  });

  it('says it is waiting, then exits TIMEOUT, when the daemon does not exit in time', async () => {
    const w = stopWorkspace();
    // A daemon that ignores SIGTERM, with a daemon's command line (argv: … main.js daemon).
    const stubborn = spawn(
      process.execPath,
      [
        '-e',
        `const net = require('node:net');
         process.on('SIGTERM', () => {});
         net.createServer((c) => c.once('data', () => c.end(JSON.stringify({ v: 1, ok: true, pong: true, pid: process.pid, version: '0.1.0' }) + '\\n')))
           .listen(process.argv[1], () => console.log('ready'));`,
        w.socket,
        path.join(w.dir, 'main.js'),
        'daemon',
      ],
      { stdio: ['ignore', 'pipe', 'ignore'] },
    );
    killWhenDone(stubborn, 'SIGKILL');
    fs.mkdirSync(path.dirname(w.socket), { recursive: true, mode: 0o700 });
    await new Promise((resolve) => stubborn.stdout!.once('data', resolve));
    const r = await w.cli(['stop', '--timeout', '2']);
    expect(r.code).toBe(ERROR_CODES.TIMEOUT);
    // The progress line, then the error.
    expect(r.stderr.trim().split('\n')).toHaveLength(2);
    expect(isRunning(stubborn.pid!)).toBe(true);
    stubborn.kill('SIGKILL');
  });

  it('rejects a --timeout that is not a number of seconds', async () => {
    const w = stopWorkspace();
    expect((await w.cli(['stop', '--timeout', 'soon'])).code).toBe(ERROR_CODES.USAGE);
  });
});
