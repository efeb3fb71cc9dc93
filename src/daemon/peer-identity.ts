// Who is on the other end of a connection, as the kernel says, and whether a client's claim about
// its consumer holds. The shim names its consumer (the Claude Code process, its grandparent); the
// kernel names the peer (the shim itself, a new process every call). A claim is confirmed when the
// consumer's pid is the peer or one of the peer's ancestors — with the same start time, so a pid
// reused since does not pass. That is all the kernel can vouch for: a process can choose its
// environment and arguments, not its parent. See docs/security.md, "What kernel identity adds".
import type { ConsumerRelation } from '../audit/audit-record.js';
import type { ConsumerInfo } from '../protocol/messages.js';
import type { HardeningAddon } from './hardening-addon.js';

export interface PeerCredentials {
  pid: number;
  uid: number;
  /** The file the peer runs, when asked for and readable. */
  exe?: string;
}

/** Deep enough for shim → sh → claude → a shell → a terminal → a session manager → init, twice. */
const MAX_ANCESTRY = 32;

export class PeerIdentifier {
  readonly #addon: HardeningAddon;

  constructor(addon: HardeningAddon) {
    this.#addon = addon;
  }

  /**
   * The kernel's record of who connected on `fd`, or undefined when it has none to give.
   * `withExecutable`: also the file it runs (a readlink; only the audit trail needs it).
   */
  credentials(fd: number | undefined, withExecutable: boolean): PeerCredentials | undefined {
    if (fd === undefined || fd < 0) return undefined;
    const creds = this.#addon.peerCredentials(fd, withExecutable);
    // pid 0: the peer is in a PID namespace we cannot see into (a container, a sandbox).
    if (typeof creds === 'number' || creds[0] <= 0) return undefined;
    return creds[2] === undefined ? { pid: creds[0], uid: creds[1] } : { pid: creds[0], uid: creds[1], exe: creds[2] };
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
