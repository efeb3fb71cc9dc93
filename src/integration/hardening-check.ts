// doctor's check of the daemon's hardening addon (src/daemon/native/hardening.c): is the daemon
// non-dumpable and does it read its clients' identity from the kernel? If not, what is missing and
// how to get it. The running daemon's own word (status) wins; without a daemon, the file says
// whether the next one will be. The addon is built by the same script and command as the native
// shim (native-shim.ts), so the fix is the same.
import fs from 'node:fs';
import type { DaemonHardening } from '../protocol/messages.js';
import { collapseHome } from '../client/socket-path.js';
import type { DoctorCheck } from './doctor.js';
import { compilerHint, type NativeShimState } from './native-shim.js';

export interface HardeningCheckInput {
  platform: NodeJS.Platform;
  home: string;
  /** dist/native/keybroker-hardening.node of this installation (undefined: layout unknown). */
  addonFile: string | undefined;
  /** Compiler and build command of this installation (native-shim.ts). */
  build: Pick<NativeShimState, 'compiler' | 'compilerName' | 'command'> | undefined;
  /** The running daemon's report, when one answered; undefined in a daemon older than the field. */
  daemon: { pid: number; hardening?: DaemonHardening | undefined } | undefined;
}

const LEFT_OPEN =
  "processes running as you can read the daemon's memory (every cached key) and environment, and the audit trail has only what clients claim about themselves";

export function hardeningCheck(input: HardeningCheckInput): DoctorCheck | undefined {
  if (input.platform !== 'linux' && input.platform !== 'darwin') return undefined;
  const id = 'daemon-hardening';
  const h = input.daemon?.hardening;
  if (h && h.addon && h.nonDumpable && h.peerCredentials) {
    const closed =
      input.platform === 'linux'
        ? 'no debugger, /proc/PID/mem or /proc/PID/environ for processes running as you'
        : 'no debugger for processes running as you';
    return {
      id,
      status: 'ok',
      message: `pid ${input.daemon!.pid} is hardened: ${closed}, and it reads each client's identity from the kernel`,
    };
  }
  if (h?.addon) {
    // Loaded, but the kernel refused a step (a seccomp filter in a container, say).
    return {
      id,
      status: 'warn',
      message: `pid ${input.daemon!.pid} is not fully hardened: ${h.problems[0] ?? 'a step failed'}`,
      fix: 'see docs/troubleshooting.md#the-daemon-is-not-hardened',
    };
  }
  if (input.addonFile === undefined) {
    if (!h) return undefined;
    return { id, status: 'warn', message: `pid ${input.daemon!.pid} is not hardened: ${h.problems[0] ?? LEFT_OPEN}` };
  }
  const shown = collapseHome(input.addonFile, input.home);
  if (!fs.existsSync(input.addonFile)) return notBuilt(input, shown);
  if (h) {
    // Built, and the daemon running now did not load it: older than the build, or it could not.
    return {
      id,
      status: 'warn',
      message: `pid ${input.daemon!.pid} runs without the hardening addon, which is built (${shown}): ${h.problems[0] ?? LEFT_OPEN}`,
      fix: 'keybroker restart',
    };
  }
  if (input.daemon) {
    return {
      id,
      status: 'warn',
      message: `pid ${input.daemon.pid} does not say whether it is hardened (a daemon from before the hardening addon): ${LEFT_OPEN}`,
      fix: 'keybroker restart',
    };
  }
  return { id, status: 'ok', message: `the hardening addon is built (${shown}): the next daemon loads it` };
}

function notBuilt(input: HardeningCheckInput, shown: string): DoctorCheck {
  const build = input.build?.command ?? 'keybroker build-native';
  const missing = `the daemon's hardening addon is not built (${shown}): ${LEFT_OPEN}`;
  const then = input.daemon ? `${build}, then: keybroker restart` : build;
  if (input.build && !input.build.compiler)
    return {
      id: 'daemon-hardening',
      status: 'warn',
      message: `${missing}; no C compiler (${input.build.compilerName}) is on PATH`,
      fix: `install a C compiler (${compilerHint(input.platform)}), then run: ${then}`,
    };
  return {
    id: 'daemon-hardening',
    status: 'warn',
    message: `${missing}; npm did not run keybroker's install script, or it could not build it`,
    fix: `run: ${then}`,
  };
}
