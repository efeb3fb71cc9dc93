import type { Command } from 'commander';
import { die } from './output.js';
import { renderError } from '../protocol/messages.js';

const SERVICE_RESTART: Readonly<Record<string, (uid: number) => string[]>> = {
  systemd: () => ['systemctl', '--user', 'restart', 'keybroker.service'],
  launchd: (uid) => ['launchctl', 'kickstart', '-k', `gui/${uid}/dev.keybroker.agent`],
};

export function registerRestart(program: Command): void {
  program
    .command('restart')
    .description('replace the running daemon with this build: stop it gracefully and start a new one')
    .addHelpText(
      'after',
      `
After an upgrade (git pull && npm ci, a new package) the daemon still running is the old build;
the shim and the CLI say so. A daemon run by the service manager is restarted through it
(systemctl --user restart keybroker.service, or launchctl kickstart -k); any other is asked to
stop (SIGTERM: replies in flight finish) and a new one is started in the background, with its
log in daemon.log beside the socket. Cached values are fetched again on their next read.

Examples:
  keybroker restart
  keybroker --socket /tmp/kb/kb.sock restart`,
    )
    .action(async (_opts: unknown, cmd: Command) => {
      const [
        { resolveSocketPath },
        { sendRequest },
        { autostart, stopDaemon, AUTOSTART_DEADLINE_MS, UnsafeAutostart },
        { BUILD_ID, describeBuild, isOtherBuild, VERSION },
        { findInstallLayout },
        { runCommand },
      ] = await Promise.all([
        import('../client/socket-path.js'),
        import('../client/client.js'),
        import('../client/autostart.js'),
        import('../client/build-info.js'),
        import('../integration/install-layout.js'),
        import('../integration/service-manager.js'),
      ]);
      const socket = resolveSocketPath({ flag: cmd.optsWithGlobals<{ socket?: string }>().socket }).path;
      const me = { version: VERSION, build: BUILD_ID };
      const ping = await sendRequest(socket, { v: 1, op: 'ping' }, { timeoutMs: 2_000 });
      const old = ping.ok && 'pong' in ping ? ping : undefined;
      const manager = old?.startedBy ? SERVICE_RESTART[old.startedBy] : undefined;
      if (old && manager) {
        const argv = manager(process.getuid?.() ?? 0);
        const r = await runCommand(argv, process.env);
        if (r.code !== 0)
          die(
            'UNAVAILABLE',
            `${argv.join(' ')} failed: ${(r.stderr || r.stdout).trim().split('\n')[0] ?? `exit ${r.code}`}`,
          );
      } else {
        const failed = old && (await stopDaemon(socket, old.pid));
        if (old && failed) {
          // Only a daemon that was signalled and outlived the deadline is one to kill by hand: a
          // refused pid may be anyone's process (as root, kill would reach it).
          if (failed.reason === 'timeout')
            die(
              'UNAVAILABLE',
              `the daemon (pid ${old.pid}) did not stop within 5 s — run: kill ${old.pid}, then keybroker restart`,
            );
          die(
            'UNAVAILABLE',
            failed.reason === 'not-ours'
              ? `not signalling pid ${old.pid}, which the daemon on ${socket} named: ${failed.why}; nothing was restarted — check the socket with: keybroker status`
              : `cannot signal the daemon (pid ${old.pid}): ${failed.errno}`,
          );
        }
        const why = await autostart(socket, Date.now() + AUTOSTART_DEADLINE_MS, {
          cli: findInstallLayout().entry,
        }).catch((err: unknown) => {
          if (err instanceof UnsafeAutostart) die('UNSAFE_PATH', renderError(err));
          throw err;
        });
        if (why) die('DAEMON_UNREACHABLE', `could not start a new daemon on ${socket}: ${why}`);
      }
      // Wait for the new daemon to answer (a service may take a moment), and say which it is.
      const deadline = Date.now() + AUTOSTART_DEADLINE_MS;
      for (;;) {
        const now = await sendRequest(socket, { v: 1, op: 'ping' }, { timeoutMs: 1_000 });
        if (now.ok && 'pong' in now && now.pid !== old?.pid) {
          const from = old
            ? `replaced pid ${old.pid} (keybroker ${describeBuild(old)}) with`
            : 'no daemon was running; started';
          process.stdout.write(
            `${from} pid ${now.pid} (keybroker ${describeBuild(now)}${now.startedBy ? `, ${now.startedBy}` : ''})\n`,
          );
          if (isOtherBuild(me, now))
            process.stderr.write(
              `keybroker: warning: the new daemon is keybroker ${describeBuild(now)}, this CLI is ${describeBuild(me)}: the service runs another install — reinstall it from this one: keybroker service install\n`,
            );
          return;
        }
        if (Date.now() > deadline)
          die('DAEMON_UNREACHABLE', `no new daemon answered on ${socket} within ${AUTOSTART_DEADLINE_MS / 1000} s`);
        await new Promise((r) => setTimeout(r, 100));
      }
    });
}
