// The daemon never keeps a debugger port open (SIGUSR1, --inspect, NODE_OPTIONS), and a daemon the
// shim autostarts gets a defined environment, whose variable names status and doctor show.
import { spawn } from 'node:child_process';
import fs from 'node:fs';
import { describe, expect, it } from 'vitest';
import { killWhenDone } from '../helpers/cleanup.js';
import {
  DAEMON_ARGV,
  daemonPid,
  daemonStatus,
  run,
  SHIM,
  sharedDaemon,
  waitFor,
  workspace,
  shellQuote,
} from '../helpers/daemon.js';

/** TCP sockets in LISTEN state that process `pid` holds (any port, IPv4 or IPv6). */
function listeningTcpSockets(pid: number): string[] {
  const inodes = new Set<string>();
  for (const fd of fs.readdirSync(`/proc/${pid}/fd`)) {
    try {
      const m = /^socket:\[(\d+)\]$/.exec(fs.readlinkSync(`/proc/${pid}/fd/${fd}`));
      if (m) inodes.add(m[1]!);
    } catch {
      // closed meanwhile
    }
  }
  const found: string[] = [];
  for (const table of ['/proc/net/tcp', '/proc/net/tcp6']) {
    if (!fs.existsSync(table)) continue;
    for (const line of fs.readFileSync(table, 'utf8').split('\n').slice(1)) {
      const f = line.trim().split(/\s+/);
      // local_address st … inode: state 0A is LISTEN.
      if (f[3] === '0A' && inodes.has(f[9]!)) found.push(f[1]!);
    }
  }
  return found;
}

const config = 'profiles:\n  default:\n    source: env:HOME\n';

/**
 * A daemon for the tests that need no fresh one (one signals it and sees it keep serving, one asks
 * about the environment it was given).
 */
const d = sharedDaemon({ config, env: { KB_SECRETISH: 'sk-value-never-shown', CLAUDECODE: '1' } });

describe('the inspector', () => {
  it('is not opened by SIGUSR1: nothing listens, no inspector url, and the daemon keeps serving', async () => {
    expect(listeningTcpSockets(d.proc.pid!)).toEqual([]);
    d.signal('SIGUSR1');
    await waitFor(
      () => d.log().includes('SIGUSR1') || d.log().includes('Debugger listening'),
      5_000,
      'the daemon to handle SIGUSR1',
    );
    expect(d.log()).not.toContain('Debugger listening');
    expect(listeningTcpSockets(d.proc.pid!)).toEqual([]);
    expect(await d.shim()).toMatchObject({ code: 0, stdout: `${d.dir}\n` });
  });

  it.each([
    ['NODE_OPTIONS=--inspect', { env: { NODE_OPTIONS: '--inspect=127.0.0.1:0' }, execArgv: [] as string[] }],
    ['--inspect on the command line', { env: {}, execArgv: ['--inspect=127.0.0.1:0'] }],
  ])('opened by %s is closed at start, with a warning in the log', async (_how, { env: extra, execArgv }) => {
    const ws = workspace({ prefix: 'kb-insp-', config, env: extra });
    // (With the daemon's Node options too, as autostart and the units start it: no self-exec.)
    const proc = spawn(process.execPath, [...execArgv, ...DAEMON_ARGV], {
      env: ws.env,
      stdio: ['ignore', 'ignore', 'pipe'],
    });
    let log = '';
    proc.stderr!.on('data', (c: Buffer) => (log += c.toString()));
    killWhenDone(proc);
    await waitFor(async () => (await ws.request({ v: 1, op: 'ping' }, 500)).ok, 10_000, 'daemon');
    expect(log).toContain('Debugger listening'); // Node opened it before any of our code ran…
    expect(listeningTcpSockets(proc.pid!)).toEqual([]); // …and it is closed now
    expect(log).toMatch(/"level":40,.*closed the inspector/);
    expect((await ws.request({ v: 1, op: 'get', profile: 'default' })).ok).toBe(true);
  });
});

describe('autostart', () => {
  it("gives the daemon a defined environment: no NODE_OPTIONS, none of Claude Code's per-session variables", async () => {
    const session = {
      NODE_OPTIONS: '--max-old-space-size=512',
      CLAUDECODE: '1',
      CLAUDE_CODE_ENTRYPOINT: 'cli',
      CLAUDE_CODE_CHILD_SESSION: '1',
      CLAUDE_CODE_SSE_PORT: '41234',
      AI_AGENT: 'claude-code_2.1.330_agent',
      CLAUDE_PID: '4242',
    };
    const { dir, env } = workspace({
      prefix: 'kb-env-',
      config,
      autostart: true,
      env: { KB_KEEP_ME: 'yes', ...session },
    });
    expect(await run('/bin/sh', ['-c', shellQuote(SHIM)], { env })).toMatchObject({ code: 0, stdout: `${dir}\n` });
    const pid = (await daemonPid(env))!;
    const names = fs
      .readFileSync(`/proc/${pid}/environ`, 'utf8')
      .split('\0')
      .map((kv) => kv.split('=')[0]);
    expect(names).toContain('KB_KEEP_ME');
    expect(names).toContain('KEYBROKER_CONFIG');
    for (const name of Object.keys(session)) expect(names, name).not.toContain(name);
  });
});

describe('the environment the daemon keeps', () => {
  it('is shown by name (never by value) in status --json and doctor', async () => {
    // The status reply, asked over the socket: `status --json` prints it as it comes.
    const status = await daemonStatus(d);
    const envNames = status.daemon.envNames;
    expect(envNames).toContain('KB_SECRETISH');
    expect(envNames).toContain('CLAUDECODE');
    expect(JSON.stringify(status)).not.toContain('sk-value-never-shown');
    const doctor = await d.cli(['doctor', '--json', '--no-fetch']);
    const checks = JSON.parse(doctor.stdout) as Array<{ id: string; status: string; message: string }>;
    const check = checks.find((c) => c.id === 'daemon-env');
    expect(check).toMatchObject({ status: 'warn' });
    expect(check!.message).toContain('KB_SECRETISH');
    expect(check!.message).toContain('CLAUDECODE');
    expect(doctor.stdout).not.toContain('sk-value-never-shown');
  });
});
