// The Node options a daemon runs with (src/client/daemon-node-flags.ts): who passes them, and
// the self-exec of a daemon started by hand — checked on the real processes' command lines in
// /proc. That a socket-activated daemon does not exec (which would close its fd 3) is covered by
// test/integration/socket-activation.test.ts, which fails if it does.
import fs from 'node:fs';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { DAEMON_NODE_FLAGS, missingNodeFlags } from '../../src/client/daemon-node-flags.js';
import { daemonPid, run, SHIM, startDaemon, workspace, shellQuote } from '../helpers/daemon.js';

const LINUX = process.platform === 'linux';
/** Node 22.15+ and 24 can exec: a daemon started by hand becomes one with the options. */
const EXECS = typeof (process as { execve?: unknown }).execve === 'function';
const CONFIG = 'profiles:\n  default:\n    source: env:KB_FLAGS_KEY\n';

const cmdline = (pid: number): string[] => fs.readFileSync(`/proc/${pid}/cmdline`, 'utf8').split('\0').slice(0, -1);
/** The node options on a command line: what comes between the node binary and the script. */
const nodeOptionsOf = (argv: string[]): string[] =>
  argv.slice(
    1,
    argv.findIndex((a) => a.endsWith('main.js')),
  );

describe('which options are missing', () => {
  it('an option the user gave, with any value, on the command line or in NODE_OPTIONS, is not added again', () => {
    const wanted = ['--max-semi-space-size=1', '--disable-sigusr1'];
    expect(missingNodeFlags(wanted, [], undefined)).toEqual(wanted);
    expect(missingNodeFlags(wanted, ['--max-semi-space-size=8'], undefined)).toEqual(['--disable-sigusr1']);
    expect(missingNodeFlags(wanted, ['--max-semi-space-size', '8'], '--disable-sigusr1')).toEqual([]);
    expect(missingNodeFlags(wanted, [], ' --max-semi-space-size=2  --inspect')).toEqual(['--disable-sigusr1']);
    expect(missingNodeFlags(wanted, ['--max-semi-space-size-x=1'], undefined)).toEqual(wanted);
  });
});

describe.skipIf(!LINUX)('who passes them', () => {
  it(`a daemon started by hand ${EXECS ? 'execs itself with them: same pid, and it serves' : 'runs as started (this Node cannot exec)'}`, async () => {
    const daemon = await startDaemon({ config: CONFIG, env: { KB_FLAGS_KEY: 'sk-flags-1' }, nodeFlags: [] });
    const pid = daemon.proc.pid!;
    expect(await daemonPid(daemon.env)).toBe(pid);
    expect(nodeOptionsOf(cmdline(pid))).toEqual(EXECS ? DAEMON_NODE_FLAGS : []);
    // The mark that stops a second exec is not passed on to what the daemon runs.
    const r = await run('/bin/sh', ['-c', shellQuote(SHIM)], { env: daemon.env });
    expect(r).toMatchObject({ code: 0, stdout: 'sk-flags-1\n' });
    expect(daemon.log()).not.toContain('KEYBROKER_DAEMON_REEXEC');
  });

  it.skipIf(!EXECS)('keeps an option the user chose, and its value', async () => {
    const daemon = await startDaemon({
      config: CONFIG,
      env: { KB_FLAGS_KEY: 'sk-flags-2', NODE_OPTIONS: '--max-semi-space-size=4' },
      nodeFlags: [],
    });
    const options = nodeOptionsOf(cmdline(daemon.proc.pid!));
    // Nothing was missing: no exec, the command line as started.
    expect(options).toEqual([]);
  });

  it('an autostarted daemon is started with them (no exec needed)', async () => {
    const { env } = workspace({
      prefix: 'kb-auto-',
      autostart: true,
      config: CONFIG,
      env: { KB_FLAGS_KEY: 'sk-flags-3' },
    });
    const r = await run('/bin/sh', ['-c', shellQuote(SHIM)], { env });
    expect(r).toMatchObject({ code: 0, stdout: 'sk-flags-3\n' });
    const pid = (await daemonPid(env))!;
    const argv = cmdline(pid);
    expect(nodeOptionsOf(argv)).toEqual(DAEMON_NODE_FLAGS);
    expect(argv.slice(argv.findIndex((a) => a.endsWith('main.js')) + 1)).toEqual([
      'daemon',
      '--autostarted',
      '--socket',
      env.KEYBROKER_SOCKET,
    ]);
    // One daemon, started once: its log says "listening" once.
    const log = fs.readFileSync(path.join(path.dirname(env.KEYBROKER_SOCKET!), 'daemon.log'), 'utf8');
    expect(log.match(/"msg":"listening"/g)).toHaveLength(1);
  });
});
