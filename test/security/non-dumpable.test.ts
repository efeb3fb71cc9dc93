// With its hardening addon the daemon is not dumpable (PR_SET_DUMPABLE 0), so a process running as
// the same user can no longer read its environment (/proc/PID/environ: what env: sources read),
// its memory (/proc/PID/mem: every cached key) or attach a debugger to it. Root can do all of that
// anyway, so the daemon and the prober run as a second, unprivileged user. A control process of that
// user, probed the same way, shows that the probes themselves work.
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { killWhenDone, privateTempDir } from '../helpers/cleanup.js';
import { HARDENING_ADDON, installCopy, openToAll } from '../helpers/install-copy.js';
import { nodeFor, otherUser } from '../helpers/other-user.js';

const SECRET = 'sk-env-only-6c1d90';

/** Attaches with ptrace to a pid, or to a child it forks itself (allowed under Yama's scope 1). */
const PTRACE_PROBE = `
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ptrace.h>
#include <sys/wait.h>
#include <unistd.h>
static int attach(pid_t pid) {
  if (ptrace(PTRACE_ATTACH, pid, 0, 0) != 0) return errno;
  waitpid(pid, NULL, __WALL);
  ptrace(PTRACE_DETACH, pid, 0, 0);
  return 0;
}
int main(int argc, char **argv) {
  if (argc != 2) return 2;
  if (strcmp(argv[1], "child") == 0) {
    pid_t pid = fork();
    if (pid == 0) { pause(); _exit(0); }
    int err = attach(pid);
    kill(pid, SIGKILL);
    waitpid(pid, NULL, 0);
    printf("%d\\n", err);
    return 0;
  }
  printf("%d\\n", attach((pid_t)atoi(argv[1])));
  return 0;
}
`;

/**
 * Reads /proc/PID/environ, /proc/PID/mem (at an address from the maps, which the prober cannot
 * read for itself) and /proc/PID/cmdline of a target; then of its own child, the control.
 */
const FILE_PROBE = `
const fs = require('node:fs');
const { spawn } = require('node:child_process');
const [pid, address] = process.argv.slice(1);
const attempt = (fn) => { try { fn(); return 'ok'; } catch (e) { return e.code ?? 'error'; } };
const probe = (p, at) => ({
  environ: attempt(() => fs.readFileSync('/proc/' + p + '/environ')),
  mem: attempt(() => {
    const fd = fs.openSync('/proc/' + p + '/mem', 'r');
    try { fs.readSync(fd, Buffer.alloc(64), 0, 64, BigInt(at)); } finally { fs.closeSync(fd); }
  }),
  cmdline: attempt(() => fs.readFileSync('/proc/' + p + '/cmdline')),
});
const control = spawn('sleep', ['30'], { stdio: 'ignore' });
setTimeout(() => {
  const maps = fs.readFileSync('/proc/' + control.pid + '/maps', 'utf8').split('\\n')[0];
  const out = { daemon: probe(pid, address), control: probe(control.pid, '0x' + maps.split('-')[0]) };
  control.kill();
  console.log(JSON.stringify(out));
}, 100);
`;

describe.skipIf(process.platform !== 'linux')('a hardened daemon and a process of the same user', () => {
  it('cannot read its environment or memory, or attach to it; can still use it and see its command line', async (ctx) => {
    const user = otherUser();
    if (user.skip !== undefined) return ctx.skip(user.skip);
    if (!fs.existsSync(HARDENING_ADDON)) return ctx.skip(`${HARDENING_ADDON} was not built (no C compiler)`);
    const cc = process.env.CC || 'cc';
    if (spawnSync(cc, ['--version'], { stdio: 'ignore' }).error) return ctx.skip(`no C compiler (${cc}) for the probe`);
    const as = { uid: user.uid, gid: user.gid };

    // Everything the other user runs lives in a directory they can read; the checkout may not be.
    const base = privateTempDir('kb-nd-');
    const kb = installCopy(path.join(base, 'kb'), { addon: true, user });
    fs.writeFileSync(path.join(base, 'ptrace-probe.c'), PTRACE_PROBE);
    const compiled = spawnSync(cc, ['-o', path.join(base, 'ptrace-probe'), path.join(base, 'ptrace-probe.c')], {
      encoding: 'utf8',
    });
    expect(compiled.stderr).toBe('');
    openToAll(base);
    const node = nodeFor(user, base);
    const home = path.join(base, 'home');
    fs.mkdirSync(home, { mode: 0o700 });
    fs.writeFileSync(path.join(home, 'config.yaml'), 'profiles:\n  default:\n    source: env:KB_SECRET\n', {
      mode: 0o600,
    });
    for (const p of [home, path.join(home, 'config.yaml')]) fs.chownSync(p, user.uid, user.gid);
    const env = {
      PATH: process.env.PATH ?? '/usr/bin:/bin',
      HOME: home,
      XDG_RUNTIME_DIR: path.join(home, 'run'),
      XDG_STATE_HOME: path.join(home, 'state'),
      XDG_CONFIG_HOME: path.join(home, 'config'),
      KEYBROKER_SOCKET: path.join(home, 'sock', 'kb.sock'),
      KEYBROKER_CONFIG: path.join(home, 'config.yaml'),
      KEYBROKER_NO_AUTOSTART: '1',
    };

    const daemon: ChildProcess = spawn(node, [kb.cli, 'daemon'], {
      ...as,
      cwd: home,
      env: { ...env, KB_SECRET: SECRET },
      stdio: ['ignore', 'ignore', 'pipe'],
    });
    const exited = new Promise((r) => daemon.once('exit', r));
    killWhenDone(daemon);
    let log = '';
    await new Promise<void>((resolve, reject) => {
      daemon.stderr!.on('data', (c: Buffer) => {
        log += c.toString();
        if (log.includes('"msg":"listening"')) resolve();
      });
      void exited.then(() => reject(new Error(`daemon exited:\n${log}`)));
    });
    const pid = daemon.pid!;

    // The same user still gets keys through the socket.
    const get = spawnSync(node, [kb.cli, 'get', 'default'], { ...as, env, encoding: 'utf8' });
    expect(get).toMatchObject({ status: 0, stdout: `${SECRET}\n` });

    // Root reads the maps for the prober: a readable address in the daemon.
    const address = `0x${fs.readFileSync(`/proc/${pid}/maps`, 'utf8').split('-')[0]}`;
    const files = spawnSync(node, ['-e', FILE_PROBE, String(pid), address], { ...as, encoding: 'utf8', env });
    expect(files.stderr).toBe('');
    const result = JSON.parse(files.stdout) as Record<'daemon' | 'control', Record<string, string>>;
    expect(result.control).toEqual({ environ: 'ok', mem: 'ok', cmdline: 'ok' });
    // cmdline stays readable: `keybroker restart` checks it before signalling a daemon.
    expect(result.daemon).toEqual({ environ: 'EACCES', mem: 'EACCES', cmdline: 'ok' });

    const probe = path.join(base, 'ptrace-probe');
    const control = spawnSync(probe, ['child'], { ...as, encoding: 'utf8' });
    expect(control.stdout.trim()).toBe('0');
    const attach = spawnSync(probe, [String(pid)], { ...as, encoding: 'utf8' });
    expect(Number(attach.stdout.trim())).toBe(os.constants.errno.EPERM);
  }, 120_000);
});
