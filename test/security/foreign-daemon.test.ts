// A daemon's reply names a pid, and keybroker stop, keybroker restart and autostart's replacement
// of a daemon of another build (in both shims) signal it: only when it is a keybroker daemon of
// this user's. As root, kill() signals anyone's process, so there the owner check alone keeps a pid
// named on our socket from reaching a process of another user that merely looks like a daemon.
import { spawn } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { ERROR_CODES } from '../../src/protocol/messages.js';
import { cleanUp, killWhenDone } from '../helpers/cleanup.js';
import { run, SHIMS, workspace, shellQuote } from '../helpers/daemon.js';
import { otherUser } from '../helpers/other-user.js';
import { recordingServer, type Reply } from '../helpers/stand-in-daemon.js';

const user = otherUser();
/** Why these tests are skipped here: outside Linux, keybroker has no /proc to learn a pid's owner from. */
const skip = process.platform === 'linux' ? user.skip : 'the owner check reads /proc, on Linux only';
if (skip !== undefined) console.log(`foreign-daemon tests skipped: ${skip}`);

const CONFIG = 'profiles:\n  default:\n    source: env:KB_FOREIGN_KEY\n';
/** Another build than this one, started by autostart: restart and the shims both want it gone. */
const OTHER_BUILD = { version: '0.0.1', build: 'a0a0a0a0a0a0', startedBy: 'autostart' };

interface ForeignProcess {
  pid: number;
  /**
   * Null while it runs, never signalled; else how it ended ('SIGTERM', or 'exit N'). It is asked
   * with a SIGWINCH, which it answers: a SIGTERM sent before (lower-numbered, it is delivered
   * first, and its default action ends the process) leaves it no chance to.
   */
  signalled(): Promise<string | null>;
}

/**
 * A process of the other user that looks like a keybroker daemon on Linux: `daemon` and an entry
 * point ending in main.js in its argv. We start it, and it becomes that user once set up (so that
 * user needs no node of its own). Given a socket, it listens there first and answers every request
 * with a pong naming its own pid, so that the kernel names it as the listener too.
 */
async function foreignDaemon(dir: string, listen?: { socket: string }): Promise<ForeignProcess> {
  const { uid, gid } = user as { uid: number; gid: number };
  const script = `
    const net = require('node:net');
    const [, , , uid, gid, socket, pong] = process.argv;
    process.on('SIGWINCH', () => process.stdout.write('not signalled\\n'));
    setInterval(() => {}, 60_000);
    const become = () => {
      process.setgroups([Number(gid)]);
      process.setgid(Number(gid));
      process.setuid(Number(uid));
      process.stdout.write('ready\\n');
    };
    if (!socket) become();
    else
      net
        .createServer((c) => c.once('data', () => c.end(JSON.stringify({ v: 1, ok: true, pong: true, pid: process.pid, ...JSON.parse(pong) }) + '\\n')))
        .listen(socket, become);`;
  const args = [path.join(dir, 'main.js'), 'daemon', String(uid), String(gid)];
  if (listen) {
    fs.mkdirSync(path.dirname(listen.socket), { recursive: true, mode: 0o700 });
    args.push(listen.socket, JSON.stringify(OTHER_BUILD));
  }
  const proc = spawn(process.execPath, ['-e', script, ...args], { stdio: ['ignore', 'pipe', 'inherit'] });
  killWhenDone(proc, 'SIGKILL');
  const ended = new Promise<string>((resolve) => proc.on('close', (code, signal) => resolve(signal ?? `exit ${code}`)));
  let out = '';
  proc.stdout.on('data', (d: Buffer) => (out += d.toString()));
  /** Once it has printed `line` `count` times: true; false if it ends first. */
  const printed = (line: string, count: number): Promise<boolean> =>
    new Promise((resolve) => {
      const check = (): void => {
        if (out.split('\n').filter((l) => l === line).length >= count) resolve(true);
      };
      proc.stdout.on('data', check);
      check();
      void ended.then(() => {
        check();
        resolve(false);
      });
    });
  expect(await printed('ready', 1)).toBe(true);
  expect(fs.statSync(`/proc/${proc.pid}`).uid).toBe(uid);
  let asked = 0;
  return {
    pid: proc.pid!,
    signalled: async () => {
      asked += 1;
      if (proc.exitCode === null && proc.signalCode === null) proc.kill('SIGWINCH');
      return (await printed('not signalled', asked)) ? null : ended;
    },
  };
}

describe.skipIf(skip !== undefined)('a daemon-looking process of another user, named on our socket', () => {
  it('keybroker stop refuses to signal it (PERMISSION_DENIED), though it listens there', async () => {
    const w = workspace({ prefix: 'kb-foreign-', config: CONFIG });
    const foreign = await foreignDaemon(w.dir, { socket: w.socket });
    const r = await w.cli(['stop', '--timeout', '2']);
    expect(r.code).toBe(ERROR_CODES.PERMISSION_DENIED);
    expect(await foreign.signalled()).toBeNull();
  });

  it('keybroker restart does not signal it, and exits as when it cannot stop the daemon (UNAVAILABLE)', async () => {
    const w = workspace({ prefix: 'kb-foreign-', config: CONFIG });
    const foreign = await foreignDaemon(w.dir, { socket: w.socket });
    // Were it signalled, restart would start a daemon of ours in its place.
    cleanUp(async () => {
      const now = await w.request({ v: 1, op: 'ping' }, 1_000);
      if (now.ok && 'pong' in now && now.pid !== foreign.pid) process.kill(now.pid, 'SIGTERM');
    });
    const r = await w.cli(['restart']);
    expect(r.code).toBe(ERROR_CODES.UNAVAILABLE);
    expect(await foreign.signalled()).toBeNull();
  });

  // Both shims replace a daemon of another build that autostart started: after serving from it
  // (each shim signals it itself), or at once when it refuses the request (the native shim hands
  // that to the Node shim). Neither may signal a pid of another user's.
  describe.each(SHIMS)('the $name shim', (shim) => {
    const callShim = async (answer: (pid: number) => Reply | ((line: string) => Reply)) => {
      const { dir, env } = workspace({
        prefix: 'kb-foreign-',
        env: { KEYBROKER_NO_AUTOSTART: '', KEYBROKER_NODE: process.execPath },
      });
      const foreign = await foreignDaemon(dir);
      const server = await recordingServer(env.KEYBROKER_SOCKET!, answer(foreign.pid));
      // (Not awaited: the stand-in keeps half-open connections, which close() would wait for.)
      cleanUp(() => void server.close());
      const r = await run('/bin/sh', ['-c', shellQuote(shim.path)], { env });
      return { r, foreign, server };
    };

    it.skipIf(shim.skip !== undefined)('serves the key from it, then leaves it alone', async () => {
      const { r, foreign } = await callShim((pid) => ({
        ok: true,
        profile: 'default',
        value: 'sk-foreign-1',
        stale: false,
        source: 'env',
        expiresInMs: 60_000,
        daemon: { pid, ...OTHER_BUILD },
      }));
      expect(r).toMatchObject({ code: 0, stdout: 'sk-foreign-1\n' });
      expect(await foreign.signalled()).toBeNull();
    });

    it.skipIf(shim.skip !== undefined)('does not replace it when it refuses the request (BAD_REQUEST)', async () => {
      const { r, foreign, server } = await callShim(
        (pid) => (line) =>
          line.includes('"op":"ping"')
            ? { ok: true, pong: true, pid, ...OTHER_BUILD }
            : { ok: false, error: { code: 'BAD_REQUEST', message: 'unknown field "x"' } },
      );
      expect(r.code).toBe(ERROR_CODES.BAD_REQUEST);
      expect(server.requests.some((line) => line.includes('"op":"ping"'))).toBe(true);
      expect(await foreign.signalled()).toBeNull();
    });
  });
});
