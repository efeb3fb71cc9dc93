import type { Command } from 'commander';
import type { PingReply } from '../protocol/messages.js';
import { die } from './output.js';

/** How long `keybroker stop` waits for the daemon to exit, unless --timeout says otherwise. */
const DEFAULT_STOP_TIMEOUT_S = 10;

const SYSTEMD_STOP = ['systemctl', '--user', 'stop', 'keybroker.service'];

export function registerStop(program: Command): void {
  program
    .command('stop')
    .description('stop the running daemon gracefully and wait until it has exited')
    .option('--timeout <seconds>', `how long to wait for it to exit (default ${DEFAULT_STOP_TIMEOUT_S})`)
    .addHelpText(
      'after',
      `
The daemon is asked to stop (SIGTERM: it finishes the replies in flight, removes its socket and
exits); stop waits for the process to be gone and says which pid and socket it stopped. A daemon
run by systemd is stopped through it (systemctl --user stop keybroker.service; keybroker.socket
still listens and starts it again on the next request). A LaunchAgent stays stopped until your
next login (launchctl kickstart gui/$UID/dev.keybroker.agent starts it now). An autostarted
daemon is started again by the next keybroker-shim call, unless KEYBROKER_NO_AUTOSTART=1.

Before signalling, stop checks that the pid the daemon names is a keybroker daemon of yours, and,
where the hardening addon is built, that the kernel names that same pid as the socket's listener.
Exit status: 0 stopped; 3 (DAEMON_UNREACHABLE) no daemon answers; 6 (TIMEOUT) it did not exit in
time; 11 (PERMISSION_DENIED) the pid is not a keybroker daemon of yours; 13 (UNAVAILABLE) systemctl failed.

Examples:
  keybroker stop
  keybroker stop --timeout 30
  keybroker --socket /tmp/kb/kb.sock stop`,
    )
    .action(async (opts: { timeout?: string }, cmd: Command) => {
      const timeoutS = opts.timeout === undefined ? DEFAULT_STOP_TIMEOUT_S : Number(opts.timeout);
      if (!Number.isFinite(timeoutS) || timeoutS <= 0 || timeoutS > 600)
        die('USAGE', `--timeout ${opts.timeout}: give a number of seconds from 1 to 600`);
      const [{ resolveSocketPath }, { sendRequest }] = await Promise.all([
        import('../client/socket-path.js'),
        import('../client/client.js'),
      ]);
      const socket = resolveSocketPath({ flag: cmd.optsWithGlobals<{ socket?: string }>().socket }).path;
      const ping = await sendRequest(socket, { v: 1, op: 'ping' }, { timeoutMs: 2_000 });
      if (!ping.ok || !('pong' in ping)) {
        const why = ping.ok ? 'an unexpected reply' : ping.error.message;
        die(ping.ok ? 'DAEMON_UNREACHABLE' : ping.error.code, `no daemon to stop: ${why}`);
      }
      if (ping.startedBy === 'systemd') return stopThroughSystemd(ping, socket);
      await stopBySignal(ping, socket, Date.now() + timeoutS * 1000);
    });
}

async function stopThroughSystemd(daemon: PingReply, socket: string): Promise<void> {
  const { runCommand } = await import('../integration/service-manager.js');
  const r = await runCommand(SYSTEMD_STOP, process.env);
  if (r.code !== 0)
    die(
      'UNAVAILABLE',
      `the daemon (pid ${daemon.pid}) runs under systemd, and ${SYSTEMD_STOP.join(' ')} failed: ${(r.stderr || r.stdout).trim().split('\n')[0] ?? `exit ${r.code}`}`,
    );
  process.stdout.write(
    `stopped the keybroker daemon (pid ${daemon.pid}, keybroker.service) on ${socket} with: ${SYSTEMD_STOP.join(' ')}\n` +
      'keybroker.socket still listens and starts it again on the next request; to stop that too: systemctl --user stop keybroker.socket\n',
  );
}

async function stopBySignal(daemon: PingReply, socket: string, deadline: number): Promise<void> {
  const refuse = (why: string): never =>
    die(
      'PERMISSION_DENIED',
      `not signalling pid ${daemon.pid}, which the daemon on ${socket} named: ${why} — check the socket with: keybroker status`,
    );
  const listener = await kernelListenerProblem(socket, daemon.pid);
  if (listener) refuse(listener);
  const { stopDaemon } = await import('../client/autostart.js');
  const failed = await stopDaemon(socket, daemon.pid, {
    deadline,
    until: 'exit',
    onWaiting: () =>
      process.stderr.write(`keybroker: waiting for the daemon (pid ${daemon.pid}) to finish its replies in flight…\n`),
  });
  if (failed?.reason === 'not-ours') refuse(failed.why);
  if (failed?.reason === 'kill-failed') die('PERMISSION_DENIED', `cannot signal pid ${daemon.pid}: ${failed.errno}`);
  if (failed?.reason === 'timeout')
    die(
      'TIMEOUT',
      `the daemon (pid ${daemon.pid}) is still running ${Math.round(failed.waitedMs / 1000)} s after SIGTERM (a slow fetch in flight?) — wait, or end it at once with: kill -KILL ${daemon.pid}`,
    );
  const how =
    daemon.startedBy === 'launchd'
      ? 'it stays stopped until your next login; to start it now: launchctl kickstart gui/$UID/dev.keybroker.agent'
      : daemon.startedBy === 'autostart'
        ? 'the next keybroker-shim call starts one again (unless KEYBROKER_NO_AUTOSTART=1)'
        : undefined;
  process.stdout.write(
    `stopped the keybroker daemon (pid ${daemon.pid}${daemon.startedBy ? `, ${daemon.startedBy}` : ''}) on ${socket}\n${how ? `${how}\n` : ''}`,
  );
}

/**
 * Where the hardening addon is built, the kernel says which process listens on the socket
 * (SO_PEERCRED / LOCAL_PEERPID on the connection): it must be the pid the daemon named. Without
 * the addon, undefined (askToStop still checks the pid).
 */
async function kernelListenerProblem(socket: string, pid: number): Promise<string | undefined> {
  const { loadHardeningAddon } = await import('../daemon/hardening-addon.js');
  const { addon } = loadHardeningAddon();
  if (!addon) return undefined;
  const [net, { kernelPeer }] = await Promise.all([import('node:net'), import('../daemon/peer-identity.js')]);
  const listener = await new Promise<number | undefined>((resolve) => {
    const conn = net.createConnection({ path: socket });
    const done = (found: number | undefined): void => {
      conn.destroy();
      resolve(found);
    };
    conn.on('connect', () => done(kernelPeer(addon, conn)?.pid));
    conn.on('error', () => done(undefined));
  });
  if (listener === undefined) return undefined;
  return listener === pid ? undefined : `the kernel says pid ${listener} listens on that socket`;
}
