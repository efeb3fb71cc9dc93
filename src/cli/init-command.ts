// `keybroker init`: a guided first run. The flow itself (init-flow.ts) loads only when the
// command runs: this bundle also starts the daemon, which has no use for it.
import { Option, type Command } from 'commander';
import { configOptionHelp } from './help-text.js';

export interface InitOptions {
  source?: string;
  paste?: boolean;
  adopt?: boolean;
  profile?: string;
  /** true: --setup-claude, false: --no-setup-claude, undefined: ask (or --yes: yes). */
  setupClaude?: boolean;
  /** true: --service, false: --no-service, undefined: ask (or --yes: no). */
  service?: boolean;
  force?: boolean;
  yes?: boolean;
  config?: string;
}

export function registerInit(program: Command): void {
  program
    .command('init')
    .description(
      'set keybroker up: where your key is, a profile checked by one fetch, Claude Code, the service, then doctor',
    )
    .addOption(
      new Option(
        '--source <uri>',
        'where the key is: op://VAULT/ITEM/FIELD, vault://MOUNT/PATH#FIELD, aws-sm://SECRET-ID, exec:COMMAND, keyring:NAME, file:PATH, env:NAME',
      ).conflicts(['paste', 'adopt']),
    )
    .addOption(
      new Option(
        '--paste',
        'give the key itself: kept in the OS keychain where one answers, else in a file only you can read (0600); from stdin when it is not a terminal',
      ).conflicts('adopt'),
    )
    .option('--adopt', "make Claude Code's current apiKeyHelper the profile (as keybroker setup claude --adopt does)")
    .option('--profile <name>', 'the profile to set up (default: "default")')
    .option('--setup-claude', "point Claude Code's apiKeyHelper at keybroker (the default with --yes)")
    .option('--no-setup-claude', "leave Claude Code's settings alone")
    .option('--service', 'install the daemon as a systemd user service / launchd agent')
    .option('--no-service', 'do not install the service (the default with --yes: the shim starts the daemon)')
    .option('--force', 'replace a profile of that name, a key file, or a different apiKeyHelper (backups are kept)')
    .option('-y, --yes', 'answer every question no flag answers with its default; never ask')
    .option('--config <file>', configOptionHelp())
    .addHelpText(
      'after',
      `
On a terminal it asks where your key is — paste it, a 1Password reference, a Vault path, an AWS
secret, a command that prints it, or the apiKeyHelper Claude Code runs now — then writes the
config (a backup of one that exists; a profile of yours is replaced only when you say so), fetches
the key once to check it and shows its fingerprint (the one keybroker audit shows, never the key),
offers to point Claude Code at keybroker and to install the service, and ends with doctor's
verdict. A pasted key is read with nothing shown, never from an argument.

Every question has a flag; --yes takes the default for the rest (Claude Code: yes; service: no;
replacing anything: no). Without a terminal it asks nothing: give the source (--source, --paste
with the key on stdin, or --adopt) and --yes, or a flag for each question.

The check fetch runs here, in this process, with this shell's environment: it needs no daemon and
does not count against a running daemon's forced-fetch limit.

Examples:
  keybroker init                                      # asks
  keybroker init --paste                              # skips the first question: asks for the key
  printf %s "$KEY" | keybroker init --paste --yes     # a script: the key on stdin
  keybroker init --source op://Private/Anthropic/credential --yes
  keybroker init --source 'exec:pass show anthropic' --no-service --yes
  keybroker init --adopt --yes                        # the apiKeyHelper you have now
  keybroker init --profile work --source 'vault://secret/anthropic#api_key' --no-setup-claude --yes

Exit status: 0 set up (doctor's verdict is printed; keybroker doctor exits 1 on a failed check);
2 no terminal and a question no flag answers, or something to replace without --force; the
source's own status when the check fetch fails (nothing is written); 15 an empty key or one with
a line break; 22 --adopt found the two values differ; 130 ^C. When setting up Claude Code or the
service fails, the rest still runs and the exit status is that step's.`,
    )
    .action(async (opts: InitOptions, cmd: Command) => {
      const { runInit } = await import('./init-flow.js');
      await runInit(opts, cmd.optsWithGlobals<{ socket?: string }>().socket);
    });
}
