// `keybroker key set PROFILE` / `key delete PROFILE`: put a key into a keyring: profile's entry in
// the OS keychain (or take it out), and have the running daemon serve it (or drop it) at once.
// What does the work is loaded when the command runs: the daemon starts from this same bundle.
import type { Command } from 'commander';
import { resolveSocketPath } from '../client/socket-path.js';
import type { DaemonOutcome, KeyTarget } from '../integration/profile-key.js';
import { configOptionHelp } from './help-text.js';
import { CliExit, die } from './output.js';

const work = () =>
  Promise.all([import('../integration/profile-key.js'), import('./secret-input.js'), import('../config/load.js')]).then(
    ([keys, input, config]) => ({ ...keys, ...input, resolveConfigPath: config.resolveConfigPath }),
  );

interface KeyOptions {
  config?: string;
  socket?: string;
}

export function registerKey(program: Command): void {
  const key = program
    .command('key')
    .description(
      "store or delete a keyring: profile's key in the OS keychain (macOS Keychain, a Linux Secret Service)",
    );
  key
    .command('set')
    .description('store the key of a keyring: profile in the keychain; a running daemon serves it at once')
    .argument('<profile>', 'a profile whose source is keyring:NAME or keyring://SERVICE/ACCOUNT')
    .option('--config <file>', configOptionHelp())
    .addHelpText(
      'after',
      `
On a terminal it asks for the key and shows nothing of what you type or paste; otherwise it
reads the key from stdin (one trailing newline is dropped). Never give a key as an argument:
ps shows arguments and your shell keeps them in its history. An empty key, or one with a line
break inside, is refused (exit 15).

The entry is service "keybroker", account NAME for keyring:NAME (service SERVICE, account
ACCOUNT for keyring://SERVICE/ACCOUNT); an existing entry is replaced. A running daemon is handed
the new value and serves it from the next request, without fetching it back.

Examples:
  keybroker key set default                        # asks for the key
  pbpaste | keybroker key set default              # macOS: from the clipboard
  wl-paste | keybroker key set work                # Wayland: from the clipboard
  printf %s "$NEW_KEY" | keybroker key set work    # a script (printf is a shell builtin: no ps)

Exit status: 0 stored; 4 no such profile; 2 the profile is not a keyring: profile; 15 empty key
or a line break inside; 12 the keychain is locked; 13 no keychain answers (no Secret Service on
the session bus); 8 stored, but the running daemon has another source for the profile (run
keybroker reload).`,
    )
    .action(async (profile: string, opts: KeyOptions, cmd: Command) => {
      const { KeyInputCancelled, readKey, storeProfileKey } = await work();
      const target = await openTarget(profile, opts);
      try {
        const value = await readKey(`Key for profile "${profile}" (${target.description}; not shown): `).catch(
          (err: unknown) => {
            throw err instanceof KeyInputCancelled ? new CliExit(130) : err;
          },
        );
        const outcome = await storeProfileKey(target, value, socketPath(cmd));
        report(outcome, `stored the key of profile ${profile} in the keychain (${target.description})`, profile);
      } finally {
        await target.close();
      }
    });
  key
    .command('delete')
    .description('delete the keychain entry of a keyring: profile; a running daemon drops its cached value')
    .argument('<profile>', 'a profile whose source is keyring:NAME or keyring://SERVICE/ACCOUNT')
    .option('--config <file>', configOptionHelp())
    .addHelpText(
      'after',
      `
Deletes the entry the profile reads and makes a running daemon forget the value it holds: the
next request for the profile fails with NOT_FOUND (exit 10) until a key is set again.

Examples:
  keybroker key delete default
  keybroker key delete work --config ~/keybroker-work.yaml

Exit status: 0 deleted; 10 there was no entry; 4 no such profile; 2 the profile is not a
keyring: profile; 12 the keychain is locked; 13 no keychain answers.`,
    )
    .action(async (profile: string, opts: KeyOptions, cmd: Command) => {
      const { deleteProfileKey } = await work();
      const target = await openTarget(profile, opts);
      try {
        const { deleted, outcome } = await deleteProfileKey(target, socketPath(cmd));
        if (!deleted && outcome.daemon !== 'refused')
          die('NOT_FOUND', `no keychain entry for profile ${profile} (${target.description}): nothing to delete`);
        report(
          outcome,
          deleted
            ? `deleted the keychain entry of profile ${profile} (${target.description})`
            : `no keychain entry for profile ${profile} (${target.description}): nothing to delete`,
          profile,
        );
      } finally {
        await target.close();
      }
    });
}

async function openTarget(profile: string, opts: KeyOptions): Promise<KeyTarget> {
  const { loadConfigForKeys, openProfile, resolveConfigPath } = await work();
  const where = resolveConfigPath({ flag: opts.config });
  const config = await loadConfigForKeys(where.path);
  return openProfile(config, profile);
}

function socketPath(cmd: Command): string {
  return resolveSocketPath({ flag: (cmd.optsWithGlobals() as KeyOptions).socket }).path;
}

/** Say what happened at the keychain and at the daemon; a daemon that refused decides the exit status. */
function report(outcome: DaemonOutcome, done: string, profile: string): void {
  switch (outcome.daemon) {
    case 'updated':
      process.stdout.write(`${done}; the running daemon serves it now\n`);
      return;
    case 'forgotten':
      process.stdout.write(`${done}; the running daemon dropped its cached value\n`);
      return;
    case 'not-running':
      process.stdout.write(`${done}; no daemon is running (the next keybroker-shim call starts one)\n`);
      return;
    case 'refused':
      process.stdout.write(`${done}\n`);
      die(outcome.error.code, `the running daemon did not take it for profile ${profile}: ${outcome.error.message}`);
  }
}
