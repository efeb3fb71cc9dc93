import type { Command } from 'commander';
import type { GetReply } from '../protocol/messages.js';
import { callDaemon } from './client.js';

export function registerGet(program: Command): void {
  program
    .command('get')
    .description("print a profile's key (as keybroker-shim does, without starting a daemon)")
    .argument('[profile]', 'profile name', 'default')
    .option('--refresh', 'fetch from the source now instead of the cache')
    .addHelpText('after', '\nExamples:\n  keybroker get work\n  curl -H "x-api-key: $(keybroker get work)" …')
    .action(async (profile: string, opts: { refresh?: boolean }, cmd: Command) => {
      const reply = await callDaemon<GetReply>(cmd.optsWithGlobals(), { v: 1, op: 'get', profile, ...(opts.refresh && { refresh: true }) });
      if (reply.stale && reply.warning) process.stderr.write(`keybroker: warning: serving a cached value past its TTL: ${reply.warning.message}\n`);
      process.stdout.write(`${reply.value}\n`);
    });
}
