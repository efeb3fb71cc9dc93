// `keybroker run -e VAR=PROFILE -- COMMAND`: keys in a program's environment, never in anyone's
// argv. The program keeps the terminal (stdio inherited, nothing filtered), and its exit status
// is ours. Where Node has process.execve, keybroker becomes the program (nothing left behind);
// elsewhere it waits for it, passing on the signals a terminal does not already deliver.
//
// Output goes through fs.writeSync(2): process.stderr on a terminal is a libuv tty handle, and
// whatever it does to the terminal must not be what an exec'd program inherits.
import type { ChildProcess } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import type { Command } from 'commander';
import { requestWithAutostart } from '../client/autostart.js';
import {
  buildGetRequest,
  CLIENT_REPLY_TIMEOUT_MS,
  exitCodeFor,
  renderError,
  type ConsumerInfo,
  type Reply,
} from '../protocol/messages.js';
import { resolveSocketPath } from '../client/socket-path.js';
import { CliExit } from './output.js';

/** As the shim: longer than any profile's timeout, so the daemon reports a slow source itself. */
const REQUEST_TIMEOUT_MS = CLIENT_REPLY_TIMEOUT_MS;
const ENV_NAME = /^[A-Za-z_][A-Za-z0-9_]*$/;
/** Variables that make Claude Code skip apiKeyHelper (and so lose its recovery from a 401). */
const CLAUDE_SHADOWING = new Set(['ANTHROPIC_API_KEY', 'ANTHROPIC_AUTH_TOKEN']);
/** Sent by the terminal to the whole foreground process group: the child gets them already. */
const TERMINAL_SIGNALS = ['SIGINT', 'SIGQUIT', 'SIGWINCH'] as const;
/** Sent to keybroker alone (kill, a closing terminal): passed on to the child. */
const FORWARDED_SIGNALS = ['SIGTERM', 'SIGHUP'] as const;

export interface EnvBinding {
  name: string;
  /** undefined: the profile of the working directory (the daemon's directories: map, else "default"). */
  profile: string | undefined;
}

export function parseEnvBinding(spec: string): EnvBinding | { error: string } {
  const eq = spec.indexOf('=');
  const name = eq === -1 ? spec : spec.slice(0, eq);
  const profile = eq === -1 ? undefined : spec.slice(eq + 1);
  if (!ENV_NAME.test(name))
    return { error: `-e ${spec}: "${name}" is not a variable name (letters, digits and _, not starting with a digit)` };
  if (profile === '')
    return {
      error: `-e ${spec}: no profile after "="; write -e ${name}=PROFILE, or -e ${name} for this directory's profile`,
    };
  return { name, profile };
}

export function registerRun(program: Command): void {
  program
    .command('run')
    .description('run a command with keys in its environment (never in its arguments), exit with its status')
    .option(
      '-e, --env <VAR[=PROFILE]>',
      "set VAR to PROFILE's key (repeatable); -e VAR alone uses this directory's profile",
      (v: string, acc: string[] | undefined) => [...(acc ?? []), v],
    )
    .argument('<command>', 'the program to run (after --)')
    .argument('[args...]', 'its arguments')
    .addHelpText(
      'after',
      `
Fetches every profile through the daemon (starting one if needed, as keybroker-shim does)
before COMMAND starts: a profile that fails stops here, with keybroker-shim's message and exit
status, and COMMAND never runs. The keys go only into COMMAND's environment. COMMAND keeps the
terminal (stdin, stdout and stderr are its own), and keybroker exits with its status (128+N
when a signal N killed it). Put -- before COMMAND so its own options are not taken as ours.

Examples:
  keybroker run -e ANTHROPIC_API_KEY=work -- aider
  keybroker run -e OPENAI_API_KEY=openai -e ANTHROPIC_API_KEY=work -- ./eval.sh --fast
  keybroker run -e ANTHROPIC_API_KEY -- python agent.py     (this directory's profile)

In CI: give the runner its own identity (a 1Password service account token, an AWS role, a
Vault AppRole), point a "ci" profile at the secret in your keybroker config, and run:
  keybroker run -e ANTHROPIC_API_KEY=ci -- npm test

Claude Code: do not start claude with ANTHROPIC_API_KEY set, it then ignores apiKeyHelper and
cannot recover from a rejected key; run keybroker setup claude instead.`,
    )
    .action(async (command: string, args: string[], opts: { env?: string[] }, cmd: Command) => {
      const globals = cmd.optsWithGlobals<{ socket?: string }>();
      const code = await runWithKeys({ command, args, specs: opts.env ?? [], socket: globals.socket });
      throw new CliExit(code);
    });
}

interface RunInput {
  command: string;
  args: string[];
  specs: string[];
  socket: string | undefined;
}

function say(line: string): void {
  fs.writeSync(2, `keybroker: ${line.replace(/\s*\n\s*/g, '; ')}\n`);
}

function fail(code: string, message: string): never {
  say(message);
  throw new CliExit(exitCodeFor(code));
}

async function runWithKeys(input: RunInput): Promise<number> {
  const startedAt = Date.now();
  const bindings: EnvBinding[] = [];
  for (const spec of input.specs) {
    const parsed = parseEnvBinding(spec);
    if ('error' in parsed) fail('USAGE', `${parsed.error} (see keybroker run --help)`);
    if (bindings.some((b) => b.name === parsed.name))
      fail('USAGE', `-e ${parsed.name} is given twice (see keybroker run --help)`);
    bindings.push(parsed);
  }
  if (bindings.length === 0) fail('USAGE', 'give at least one -e VAR=PROFILE (see keybroker run --help)');

  const env: NodeJS.ProcessEnv = { ...process.env };
  const file = await resolveCommand(input.command, env.PATH);
  const execve = (process as { execve?: unknown }).execve;
  const willExec = typeof execve === 'function';

  const socketPath = resolveSocketPath({ flag: input.socket }).path;
  const cli = fileURLToPath(new URL('./main.js', import.meta.url));
  const consumer: ConsumerInfo = { pid: process.pid, name: path.basename(input.command), claudeCode: false };
  // Like the shim, always with the working directory: without a profile the daemon picks the
  // directory's (its directories: map, else "default"), and the audit trail records where.
  const cwd = workingDirectory();
  const replies = await Promise.all(
    bindings.map((b) =>
      requestWithAutostart(socketPath, buildGetRequest({ profile: b.profile, cwd, consumer }), {
        cli,
        timeoutMs: REQUEST_TIMEOUT_MS,
        startedAt,
        orphan: willExec,
      }),
    ),
  );
  replies.forEach((reply: Reply, i) => {
    if (!reply.ok) fail(reply.error.code, renderError(reply.error));
    if (!('value' in reply) || typeof reply.value !== 'string') fail('INTERNAL', 'the daemon answered without a value');
    if (reply.stale && reply.warning)
      say(`warning: serving a cached value past its TTL: ${renderError(reply.warning)}`);
    env[bindings[i]!.name] = reply.value;
  });

  if (path.basename(input.command) === 'claude') {
    const shadowing = bindings.filter((b) => CLAUDE_SHADOWING.has(b.name));
    if (shadowing.length > 0) {
      const profile = shadowing[0]!.profile;
      say(
        `warning: with ${shadowing.map((b) => b.name).join(' and ')} set, Claude Code does not use apiKeyHelper and cannot replace a rejected (401) key mid-session; instead run: keybroker setup claude${profile ? ` --profile ${profile}` : ''}, then start claude on its own`,
      );
    }
  }

  if (willExec) execCommand(execve as ExecveFn, file, [input.command, ...input.args], env);
  return spawnAndWait(file, input.command, input.args, env);
}

/** A deleted working directory has no path to send; the daemon then uses "default". */
function workingDirectory(): string | undefined {
  try {
    return process.cwd();
  } catch {
    return undefined;
  }
}

/** PATH lookup as a shell does it (execve(2) does not search PATH); not found is 127, as in a shell. */
async function resolveCommand(command: string, pathVar: string | undefined): Promise<string> {
  if (command.includes('/')) return command;
  const { findOnPath } = await import('../integration/service-manager.js');
  const found = await findOnPath(command, pathVar);
  if (!found) {
    say(`${command}: command not found on PATH`);
    throw new CliExit(127);
  }
  return found;
}

type ExecveFn = (file: string, args: string[], env: NodeJS.ProcessEnv) => never;

function execCommand(execve: ExecveFn, file: string, argv: string[], env: NodeJS.ProcessEnv): never {
  // Node ignores SIGPIPE and SIGXFSZ, and an ignored signal stays ignored across exec: a
  // program at the head of a pipe would then not die when the reader goes. A handler, unlike
  // SIG_IGN, is reset to the default by exec, so installing one restores the default.
  for (const sig of ['SIGPIPE', 'SIGXFSZ'] as const) process.on(sig, () => {});
  const definedEnv = Object.fromEntries(Object.entries(env).filter((e): e is [string, string] => e[1] !== undefined));
  try {
    execve(file, argv, definedEnv);
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    say(`cannot run ${argv[0]}: ${code ?? 'exec failed'}`);
    throw new CliExit(code === 'ENOENT' ? 127 : 126);
  }
  throw new CliExit(126);
}

async function spawnAndWait(file: string, argv0: string, args: string[], env: NodeJS.ProcessEnv): Promise<number> {
  const { spawn } = await import('node:child_process');
  const ignore = (): void => {};
  for (const sig of TERMINAL_SIGNALS) process.on(sig, ignore);
  // Caught before the command starts: it may be running (and say it is ready) before spawn()
  // returns, and a SIGTERM or SIGHUP that came before our handlers would have ended keybroker
  // instead of reaching the command. A handler runs on a later tick, once the child is set.
  const running: { child?: ChildProcess } = {};
  const forward = (sig: NodeJS.Signals) => (): void => {
    running.child?.kill(sig);
  };
  for (const sig of FORWARDED_SIGNALS) process.on(sig, forward(sig));
  const child = spawn(file, args, { stdio: 'inherit', env, argv0 });
  running.child = child;
  return new Promise<number>((resolve) => {
    child.on('error', (err: NodeJS.ErrnoException) => {
      say(`cannot run ${argv0}: ${err.code ?? 'spawn failed'}`);
      resolve(err.code === 'ENOENT' ? 127 : 126);
    });
    child.on('exit', (code, signal) => {
      resolve(code ?? 128 + (signal ? (os.constants.signals[signal] ?? 0) : 0));
    });
  });
}
