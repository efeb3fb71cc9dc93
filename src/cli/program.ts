// What every keybroker entry point shares: the program with its global options, and running it
// to an exit status with errors rendered once. main.ts is the CLI; daemon-main.ts is the daemon's
// own, smaller entry (see scripts/bundle.mjs for why there are two).
import { Command, CommanderError } from 'commander';
import { BrokerError, resourceError } from '../errors.js';
import { renderError } from '../protocol/messages.js';
import { VERSION } from '../version.js';
import { disableColour } from './colour.js';
import { CliExit } from './output.js';

/** The `keybroker` program with its global options and no commands yet. */
export function newProgram(): Command {
  return new Command('keybroker')
    .version(VERSION, '-v, --version', 'print the version')
    .description('Fetch API keys once, cache them in a daemon, and hand them to apiKeyHelper in milliseconds.')
    .option(
      '--socket <path>',
      "the daemon's socket (default: $KEYBROKER_SOCKET, then $XDG_RUNTIME_DIR/keybroker/keybroker.sock, then ~/.local/state/keybroker/keybroker.sock)",
    )
    .option('--no-color', 'no colour, even on a terminal (also: NO_COLOR=1; FORCE_COLOR=1 forces it)')
    .showHelpAfterError('(run with --help for usage)')
    .exitOverride()
    .hook('preAction', (_program, action) => {
      if (action.optsWithGlobals<{ color?: boolean }>().color === false) disableColour();
    });
}

/** Parses process.argv with `program` and runs the command: the process's exit status. */
export async function runProgram(program: Command): Promise<number> {
  // `keybroker audit --json | head` closes the pipe early: that is the reader being done, not an
  // error worth a stack trace.
  process.stdout.on('error', (err: NodeJS.ErrnoException) => {
    if (err.code === 'EPIPE') process.exit(0);
    throw err;
  });
  try {
    await program.parseAsync(process.argv);
    return 0;
  } catch (err) {
    if (err instanceof CliExit) return err.exitCode;
    if (err instanceof CommanderError) return err.exitCode === 0 ? 0 : 2;
    const known = err instanceof BrokerError ? err : resourceError(err);
    if (known) {
      process.stderr.write(`keybroker: ${renderError(known)}\n`);
      return known.exitCode;
    }
    process.stderr.write('keybroker: internal error (run with KEYBROKER_LOG_LEVEL=debug for details)\n');
    return 1;
  }
}
