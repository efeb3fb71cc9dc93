// doctor's check of the daemon's hardening addon (src/daemon/native/hardening.c): is the daemon
// non-dumpable and does it read its clients' identity from the kernel? If not, what is missing and
// how to get it. The running daemon's own word (status) wins; without a daemon, the file says
// whether the next one will be.
import fs from 'node:fs';
import path from 'node:path';
import type { DaemonHardening } from '../protocol/messages.js';
import { collapseHome } from '../client/socket-path.js';
import type { DoctorCheck } from './doctor.js';

export interface HardeningCheckInput {
  platform: NodeJS.Platform;
  home: string;
  /** dist/native/keybroker-hardening.node of this installation (undefined: layout unknown). */
  addonFile: string | undefined;
  /** The running daemon's report, when one answered; undefined in a daemon older than the field. */
  daemon: { pid: number; hardening?: DaemonHardening | undefined } | undefined;
}

export function hardeningCheck(input: HardeningCheckInput): DoctorCheck | undefined {
  if (input.platform !== 'linux' && input.platform !== 'darwin') return undefined;
  const id = 'daemon-hardening';
  const built = input.addonFile !== undefined && fs.existsSync(input.addonFile);
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
  const what =
    "processes running as you can read the daemon's memory (every cached key) and environment, and the audit trail has only what clients claim about themselves";
  if (!built) {
    const file = input.addonFile ? collapseHome(input.addonFile, input.home) : 'the hardening addon';
    return {
      id,
      status: 'warn',
      message: `the daemon's hardening addon is not built (${file} is missing: no C compiler when keybroker was installed, or npm did not run its install script): ${what}`,
      fix: buildFix(input),
    };
  }
  if (h) {
    // Built, but the daemon running now did not get what it needed from it.
    const problem = h.problems[0] ?? 'the daemon did not load it';
    return {
      id,
      status: 'warn',
      message: `pid ${input.daemon!.pid} is not hardened: ${problem}`,
      fix: h.addon ? 'see docs/troubleshooting.md, "The daemon is not hardened"' : 'keybroker restart',
    };
  }
  if (input.daemon) {
    return {
      id,
      status: 'warn',
      message: `pid ${input.daemon.pid} does not say whether it is hardened (a daemon from before the hardening addon): ${what}`,
      fix: 'keybroker restart',
    };
  }
  return { id, status: 'ok', message: 'the hardening addon is built: the next daemon loads it' };
}

function buildFix(input: HardeningCheckInput): string {
  const compiler =
    input.platform === 'darwin' ? 'xcode-select --install' : 'Debian, Ubuntu: sudo apt install gcc libc6-dev';
  if (!input.addonFile)
    return `install a C compiler (${compiler}), then reinstall keybroker and run: keybroker restart`;
  const root = path.resolve(path.dirname(input.addonFile), '..', '..');
  return `install a C compiler (${compiler}), then run: node ${path.join(root, 'scripts', 'build-native.mjs')} --install && keybroker restart`;
}
