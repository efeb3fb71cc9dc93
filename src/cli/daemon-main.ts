// `keybroker daemon`'s own entry point (dist/src/cli/daemon.js), which main.js loads instead of
// the whole CLI when the command is `daemon`: the long-lived process then loads only what the
// daemon needs. Fewer modules at start-up is fewer path resolutions, which keeps Node 22+ from
// optimising its path code during start-up and mapping ~5 MiB more of the node binary for as
// long as the daemon runs (docs/performance.md, "The install's path length"). The command itself
// is the same one the CLI registers.
import { registerDaemon } from './daemon-command.js';
import { newProgram, runProgram } from './program.js';

const program = newProgram();
registerDaemon(program);
process.exitCode = await runProgram(program);
