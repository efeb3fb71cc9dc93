import type { Command } from 'commander';
import type { StatusReply } from '../protocol/messages.js';
import { resolveSocketPath } from '../client/socket-path.js';
import { callDaemon } from './client.js';
import { die } from './output.js';

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
      // First through the CLI's client: no daemon gets its message (and how to start one).
      await callDaemon<StatusReply>(globals, { v: 1, op: 'status' }, 5_000);
      const { reloadDaemon } = await import('../integration/daemon-reload.js');
      const outcome = await reloadDaemon(resolveSocketPath({ flag: globals.socket }).path);
      if (outcome.daemon === 'not-running')
        die('DAEMON_UNREACHABLE', 'the daemon stopped before it was reloaded; run keybroker status');
      if (outcome.daemon === 'refused') {
        process.stderr.write(`${outcome.error}\n`);
        die('CONFIG_INVALID', `config not reloaded: the daemon keeps running the previous one (${outcome.config})`);
      }
      const names = outcome.profiles;
      process.stdout.write(
        `reloaded ${outcome.config}: ${names.length} profile${names.length === 1 ? '' : 's'}${names.length ? ` (${names.join(', ')})` : ''}\n`,
      );
    });
}
