// What the daemon does to its own process so its memory (every cached key) stays its own, the way
// ssh-agent and gpg-agent do: no debugger port, no core dump. See docs/security.md for what
// remains (same-user ptrace, swap outside systemd).
import { spawnSync } from 'node:child_process';
import fs from 'node:fs';
import inspector from 'node:inspector';
import type { Logger } from '../log.js';

/**
 * Node opens its inspector on 127.0.0.1:9229, with no authentication, when it receives SIGUSR1:
 * anyone who can connect to that port can run code in the daemon and read every key. Listening
 * for the signal replaces that default. Call it before anything slow: until then a SIGUSR1 opens
 * the port.
 */
export function refuseInspectorSignal(onSignal: () => void = () => {}): void {
  process.on('SIGUSR1', onSignal);
}

/**
 * An inspector opened by --inspect (on the command line or in NODE_OPTIONS inherited from a
 * shell) is closed at once. Returns the flag that opened it, for the log, or undefined.
 */
export function closeInspector(): string | undefined {
  if (inspector.url() === undefined) return undefined;
  inspector.close();
  const flags = [...process.execArgv, ...(process.env.NODE_OPTIONS ?? '').split(/\s+/)];
  return flags.find((f) => f.startsWith('--inspect')) ?? '--inspect';
}

export interface CoreDumpResult {
  /** RLIMIT_CORE is now 0 (soft and hard). */
  coreLimitZero: boolean;
  /** /proc/self/coredump_filter is 0: a dump (through a core_pattern pipe too) leaves out memory. */
  coredumpFilterZero: boolean;
  /** Why a step failed, for the log. */
  problems: string[];
}

/**
 * Keep the keys out of core dumps. Node 20 has no setrlimit, so the limit is set from outside with
 * util-linux's prlimit on our own pid (not by starting the daemon under a wrapper: socket activation
 * checks LISTEN_PID). A core_pattern pipe (systemd-coredump, apport) is handed the dump whatever
 * the limit says, so the dump filter is cleared too: with no mapping types selected, the dump
 * holds no memory. PR_SET_DUMPABLE would also stop same-user ptrace, but needs a native addon.
 */
export function disableCoreDumps(): CoreDumpResult {
  const result: CoreDumpResult = { coreLimitZero: false, coredumpFilterZero: false, problems: [] };
  if (process.platform !== 'linux') {
    result.problems.push(
      `no way to set the core-file limit from Node on ${process.platform}: start the daemon with ulimit -c 0, or as a service (keybroker service install)`,
    );
    return result;
  }
  const prlimit = ['/usr/bin/prlimit', '/bin/prlimit'].find((p) => fs.existsSync(p)) ?? 'prlimit';
  const run = spawnSync(prlimit, ['--pid', String(process.pid), '--core=0:0'], {
    stdio: ['ignore', 'ignore', 'pipe'],
    timeout: 2_000,
    env: { PATH: process.env.PATH ?? '/usr/bin:/bin' },
  });
  if (run.error || run.status !== 0) {
    const why = run.error ? ((run.error as NodeJS.ErrnoException).code ?? 'failed') : `exit ${run.status}`;
    result.problems.push(
      `could not set the core-file limit to 0 with prlimit (${why}): install util-linux, or start the daemon with ulimit -c 0`,
    );
  }
  result.coreLimitZero = coreLimitIsZero();
  try {
    fs.writeFileSync('/proc/self/coredump_filter', '0');
    result.coredumpFilterZero = true;
  } catch (err) {
    result.problems.push(
      `could not clear /proc/self/coredump_filter (${(err as NodeJS.ErrnoException).code ?? 'error'})`,
    );
  }
  return result;
}

function coreLimitIsZero(): boolean {
  try {
    const line = fs
      .readFileSync('/proc/self/limits', 'utf8')
      .split('\n')
      .find((l) => l.startsWith('Max core file size'));
    return line !== undefined && /^Max core file size\s+0\s+0\s/.test(line);
  } catch {
    return false;
  }
}

/** All of the above, logged. */
export function hardenProcess(log: Logger): void {
  const inspectFlag = closeInspector();
  if (inspectFlag) {
    log.warn(
      { flag: inspectFlag },
      `started with ${inspectFlag}: closed the inspector (keybroker never keeps a debugger port open; unset NODE_OPTIONS before starting it)`,
    );
  }
  const core = disableCoreDumps();
  for (const problem of core.problems) log.warn(problem);
  log.debug({ coreLimitZero: core.coreLimitZero, coredumpFilterZero: core.coredumpFilterZero }, 'core dumps');
}
