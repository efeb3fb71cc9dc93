import type { Command } from 'commander';
import type { StatusReply } from '../protocol/messages.js';
import { callDaemon } from './client.js';
import { die } from './output.js';

const RELOAD_WAIT_MS = 10_000;

export function registerReload(program: Command): void {
  program
    .command('reload')
    .description('make the running daemon re-read its config (as SIGHUP does), and say whether it took')
    .addHelpText(
      'after',
      `
Profiles whose settings did not change keep their cached values. A config with errors is
refused and the running one kept: the errors are printed and the exit status is 8.`,
    )
    .action(async (_opts: unknown, cmd: Command) => {
      const globals = cmd.optsWithGlobals<{ socket?: string }>();
      const before = await callDaemon<StatusReply>(globals, { v: 1, op: 'status' }, 5_000);
      try {
        process.kill(before.daemon.pid, 'SIGHUP');
      } catch (err) {
        die(
          'INTERNAL',
          `cannot signal the daemon (pid ${before.daemon.pid}): ${(err as NodeJS.ErrnoException).code ?? 'error'}`,
        );
      }
      const deadline = Date.now() + RELOAD_WAIT_MS;
      for (;;) {
        await new Promise((r) => setTimeout(r, 50));
        const after = await callDaemon<StatusReply>(globals, { v: 1, op: 'status' }, 5_000);
        if (after.daemon.pid !== before.daemon.pid)
          die('DAEMON_UNREACHABLE', 'the daemon was replaced while reloading; run keybroker status');
        if (after.daemon.reloads > before.daemon.reloads) {
          if (after.daemon.lastReloadError) {
            process.stderr.write(`${after.daemon.lastReloadError}\n`);
            die(
              'CONFIG_INVALID',
              `config not reloaded: the daemon keeps running the previous one (${after.daemon.config})`,
            );
          }
          const names = after.profiles.map((p) => p.name);
          process.stdout.write(
            `reloaded ${after.daemon.config}: ${names.length} profile${names.length === 1 ? '' : 's'}${names.length ? ` (${names.join(', ')})` : ''}\n`,
          );
          return;
        }
        if (Date.now() > deadline)
          die(
            'TIMEOUT',
            `the daemon (pid ${before.daemon.pid}) did not finish reloading within ${RELOAD_WAIT_MS / 1000} s`,
          );
      }
    });
}
