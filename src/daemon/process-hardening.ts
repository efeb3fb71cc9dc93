// What the daemon does to its own process so its memory (every cached key) stays its own, the way
// ssh-agent and gpg-agent do: no debugger port, no core dump, and — with the hardening addon — no
// same-user debugger, /proc/PID/mem or /proc/PID/environ. See docs/security.md for what remains.
import { spawnSync } from 'node:child_process';
import fs from 'node:fs';
import inspector from 'node:inspector';
import type { DaemonHardening } from '../protocol/messages.js';
import type { Logger } from '../log.js';
import { errnoName, type HardeningAddon } from './hardening-addon.js';

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
 * Keep the keys out of core dumps. The hardening addon sets the limit in-process; without it
 * (Node has no setrlimit) it is set from outside with util-linux's prlimit on our own pid (not by
 * starting the daemon under a wrapper: socket activation checks LISTEN_PID). A core_pattern pipe
 * (systemd-coredump, apport) is handed the dump whatever the limit says, so the dump filter is
 * cleared too: with no mapping types selected, the dump holds no memory. That write must come
 * before PR_SET_DUMPABLE, after which the kernel refuses it.
 */
export function disableCoreDumps(addon?: HardeningAddon): CoreDumpResult {
  const result: CoreDumpResult = { coreLimitZero: false, coredumpFilterZero: false, problems: [] };
  if (addon) {
    const err = addon.setCoreLimitZero();
    if (err === 0) result.coreLimitZero = true;
    else
      result.problems.push(
        `could not set the core-file limit to 0 (${errnoName(err)}): start the daemon with ulimit -c 0`,
      );
  }
  if (process.platform !== 'linux') {
    if (!addon)
      result.problems.push(
        `no way to set the core-file limit from Node on ${process.platform}: start the daemon with ulimit -c 0, or as a service (keybroker service install)`,
      );
    return result;
  }
  if (!addon) {
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

/**
 * All of the above, logged, and then, with the addon, the step that closes same-user debuggers and
 * /proc/PID/mem and environ. Run after the daemon's re-exec with its Node options (an exec makes
 * the process dumpable again) and after the dump filter is written (see disableCoreDumps).
 * `addonProblem`: why there is no addon, for the log and status.
 */
export function hardenProcess(
  log: Logger,
  addon: HardeningAddon | undefined,
  addonProblem: string | undefined,
): DaemonHardening {
  const inspectFlag = closeInspector();
  if (inspectFlag) {
    log.warn(
      { flag: inspectFlag },
      `started with ${inspectFlag}: closed the inspector (keybroker never keeps a debugger port open; unset NODE_OPTIONS before starting it)`,
    );
  }
  const core = disableCoreDumps(addon);
  const hardening: DaemonHardening = {
    addon: addon !== undefined,
    nonDumpable: false,
    coreLimitZero: core.coreLimitZero,
    peerCredentials: addon !== undefined,
    problems: [...core.problems],
  };
  if (addon) {
    const err = addon.setNonDumpable();
    if (err === 0) hardening.nonDumpable = true;
    else
      hardening.problems.push(
        `could not make the daemon non-dumpable (${errnoName(err)}): processes running as you can read its memory`,
      );
  } else {
    hardening.problems.push(
      `${addonProblem ?? 'no hardening addon'}: processes running as you can read the daemon's memory and environment, and a client's identity is only what it claims — run: keybroker doctor`,
    );
  }
  for (const problem of hardening.problems) log.warn(problem);
  log.debug(
    {
      coreLimitZero: core.coreLimitZero,
      coredumpFilterZero: core.coredumpFilterZero,
      nonDumpable: hardening.nonDumpable,
    },
    'process hardening',
  );
  return hardening;
}
