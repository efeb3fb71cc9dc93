import type { Command } from 'commander';
import type { RefreshReply } from '../protocol/messages.js';
import { callDaemon } from './client.js';
import { CliExit, die } from './output.js';
import { exitCodeFor, renderError } from '../protocol/messages.js';

export function registerRefresh(program: Command): void {
  program
    .command('refresh')
    .description('fetch profiles from their sources now (after rotating a key)')
    .argument('[profile]', 'profile name')
    .option('--all', 'refresh every profile')
    .addHelpText('after', '\nExamples:\n  keybroker refresh work\n  keybroker refresh --all')
    .action(async (profile: string | undefined, opts: { all?: boolean }, cmd: Command) => {
      if (!profile && !opts.all) die('USAGE', 'name a profile or pass --all (see keybroker refresh --help)');
      if (profile && opts.all) die('USAGE', 'name a profile or pass --all, not both');
      const request = opts.all
        ? { v: 1 as const, op: 'refresh' as const, all: true }
        : { v: 1 as const, op: 'refresh' as const, profile: profile! };
      const reply = await callDaemon<RefreshReply>(cmd.optsWithGlobals(), request);
      for (const name of reply.refreshed) process.stdout.write(`refreshed ${name}\n`);
      for (const f of reply.failed) process.stderr.write(`keybroker: ${f.profile}: ${renderError(f.error)}\n`);
      if (reply.failed.length > 0) throw new CliExit(exitCodeFor(reply.failed[0]!.error.code));
    });
}
