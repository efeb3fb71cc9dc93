import type { Command } from 'commander';
import { buildGetRequest, renderError, type GetReply } from '../protocol/messages.js';
import { callDaemon } from './client.js';

export function registerGet(program: Command): void {
  program
    .command('get')
    .description("print a profile's key (as keybroker-shim does, without starting a daemon)")
    .argument('[profile]', 'profile name (default: the one this directory maps to in directories:, else "default")')
    .option('--refresh', 'fetch from the source now instead of the cache')
    .option('--which', 'print the profile served and why on stderr')
    .addHelpText(
      'after',
      `
Without a profile, the daemon picks one by this directory: the longest directories: entry that
holds it (symlinks resolved), else "default" — the same rule Claude Code's helper gets.

Examples:
  keybroker get work
  cd ~/code/acme && keybroker get --which      # "keybroker: profile work (directories: ~/code/acme)"
  curl -H "x-api-key: $(keybroker get work)" …`,
    )
    .action(async (profile: string | undefined, opts: { refresh?: boolean; which?: boolean }, cmd: Command) => {
      const reply = await callDaemon<GetReply>(
        cmd.optsWithGlobals(),
        buildGetRequest({ profile, cwd: process.cwd(), refresh: opts.refresh }),
      );
      if (opts.which) process.stderr.write(`keybroker: profile ${reply.profile} (${whyChosen(reply)})\n`);
      if (reply.stale && reply.warning)
        process.stderr.write(
          `keybroker: warning: serving a cached value past its TTL: ${renderError(reply.warning)}\n`,
        );
      process.stdout.write(`${reply.value}\n`);
    });
}

/** In the words `doctor` uses: "directories: ~/code/acme", "argument", "default". */
export function whyChosen(reply: Pick<GetReply, 'chosenBy' | 'directory'>): string {
  if (reply.chosenBy === 'directory') return `directories: ${reply.directory ?? '?'}`;
  if (reply.chosenBy === 'argument') return 'named on the command line';
  return 'no directories: entry matches: the default profile';
}
