import type { Command } from 'commander';
import type { ForgetReply } from '../protocol/messages.js';
import { callDaemon } from './client.js';
import { die } from './output.js';

export function registerForget(program: Command): void {
  program
    .command('forget')
    .description("drop cached values from the daemon's memory now, as ssh-agent -D does (the next read fetches again)")
    .argument('[profile]', 'profile name')
    .option('--all', 'forget every profile')
    .addHelpText(
      'after',
      `
For an incident (a key you think leaked) or before handing a laptop over. Never refused, and
audited. Nothing is fetched now: the next keybroker-shim call for the profile fetches from its
source again, within the profile's forced-fetch limit (3 back to back, then one per 10 s; a call
that finds it spent waits for its turn). To also stop the daemon, kill the pid that keybroker
status shows (kill PID).

Examples:
  keybroker forget work
  keybroker forget --all`,
    )
    .action(async (profile: string | undefined, opts: { all?: boolean }, cmd: Command) => {
      if (!profile && !opts.all) die('USAGE', 'name a profile or pass --all (see keybroker forget --help)');
      if (profile && opts.all) die('USAGE', 'name a profile or pass --all, not both');
      const request = opts.all
        ? { v: 1 as const, op: 'forget' as const, all: true }
        : { v: 1 as const, op: 'forget' as const, profile: profile! };
      const reply = await callDaemon<ForgetReply>(cmd.optsWithGlobals(), request, 5_000);
      for (const name of reply.forgotten) process.stdout.write(`forgot ${name}\n`);
    });
}
