// Who is on the other end of a connection, as the kernel says, and whether a client's claim about
// its consumer holds. The shim names its consumer (the Claude Code process, its grandparent); the
// kernel names the peer (the shim itself, a new process every call). A claim is confirmed when the
// consumer's pid is the peer or one of the peer's ancestors — with the same start time, so a pid
// reused since does not pass. That is all the kernel can vouch for: a process can choose its
// environment and arguments, not its parent. See docs/security.md#what-kernel-identity-adds.
import type net from 'node:net';
import type { ConsumerRelation } from '../audit/audit-record.js';
import type { ConsumerInfo } from '../protocol/messages.js';
import type { HardeningAddon } from './hardening-addon.js';

export interface PeerCredentials {
  pid: number;
  uid: number;
  /** The file the peer runs, when asked for and readable. */
  exe?: string;
}

/**
 * The kernel's record of who is on the other end of a connected Unix socket (SO_PEERCRED /
 * LOCAL_PEERPID, taken at connect()): the daemon asks it of a client, `keybroker stop` of the
 * daemon it is about to signal. Undefined when the kernel has none to give: the connection is
 * closed, or the peer is in a PID namespace we cannot see into (a container, a sandbox: pid 0).
 */
export function kernelPeer(addon: HardeningAddon, socket: net.Socket): PeerCredentials | undefined {
  // net.Socket has no public way to its descriptor; the handle's fd is libuv's (-1 once closed).
  const fd = (socket as unknown as { _handle?: { fd?: number } | null })._handle?.fd;
  if (fd === undefined || fd < 0) return undefined;
  const creds = addon.peerCredentials(fd);
  if (typeof creds === 'number' || creds[0] <= 0) return undefined;
  return { pid: creds[0], uid: creds[1] };
}

/** Deep enough for shim → sh → claude → a shell → a terminal → a session manager → init, twice. */
const MAX_ANCESTRY = 32;
/**
 * How long a process's executable, once read, is taken as known: reading /proc/PID/exe is one of
 * the dearest calls on a request's path, and a client that makes many requests (a script on the
 * raw socket, a load test) would pay it on each. A new process (every shim call) is always read.
 */
export const EXECUTABLE_CACHE_MS = 1_000;
const EXECUTABLE_CACHE_MAX = 256;

export class PeerIdentifier {
  readonly #addon: HardeningAddon;
  readonly #now: () => number;
  readonly #executables = new Map<number, { exe: string | undefined; at: number }>();

  constructor(addon: HardeningAddon, now: () => number = Date.now) {
    this.#addon = addon;
    this.#now = now;
  }

  /**
   * The kernel's record of who connected on `socket`, or undefined when it has none to give.
   * `withExecutable`: also the file it runs (only the audit trail needs it).
   */
  credentials(socket: net.Socket, withExecutable: boolean): PeerCredentials | undefined {
    const peer = kernelPeer(this.#addon, socket);
    if (!peer || !withExecutable) return peer;
    const exe = this.#executable(peer.pid);
    return exe === undefined ? peer : { ...peer, exe };
  }

  /**
   * Read at most once a second per pid. The cost of that: a process that replaces itself (exec)
   * and connects again within the second is recorded with the file it ran before. A pid reused
   * within the second would need the whole pid space to wrap in that time.
   */
  #executable(pid: number): string | undefined {
    const t = this.#now();
    const known = this.#executables.get(pid);
    if (known && t - known.at < EXECUTABLE_CACHE_MS) return known.exe;
    const exe = this.#addon.executablePath(pid);
    if (this.#executables.size >= EXECUTABLE_CACHE_MAX) this.#executables.clear();
    const entry = { exe: typeof exe === 'string' ? exe : undefined, at: t };
    this.#executables.set(pid, entry);
    return entry.exe;
  }

  /** Is the claimed consumer the peer, one of its ancestors, neither, or can that not be told? */
  relate(peer: PeerCredentials, claim: ConsumerInfo): ConsumerRelation {
    if (claim.pid === peer.pid) return 'peer';
    const chain = this.#addon.ancestry(peer.pid, claim.pid, MAX_ANCESTRY);
    // The peer has gone (a client that did not wait for its reply): nothing to check against.
    if (typeof chain === 'number') return 'unknown';
    for (let i = 2; i < chain.length; i += 2) {
      if (chain[i] !== claim.pid) continue;
      return claim.start === undefined || claim.start === String(chain[i + 1]) ? 'ancestor' : 'unrelated';
    }
    return 'unrelated';
  }
}
