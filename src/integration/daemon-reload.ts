// Making a running daemon re-read its config (SIGHUP, as `keybroker reload` does) and waiting
// until it has: the status reply's reload counter moves, with or without an error.
import { sendRequest } from '../client/client.js';
import { BrokerError } from '../errors.js';
import { isErrorCode, type StatusReply, type WireError } from '../protocol/messages.js';

export const RELOAD_WAIT_MS = 10_000;
const STATUS_TIMEOUT_MS = 5_000;

export type ReloadOutcome =
  /** No daemon answers on the socket: the error says why (DAEMON_UNREACHABLE, UNSAFE_PATH …). */
  | { daemon: 'not-running'; error: WireError }
  | { daemon: 'reloaded'; pid: number; config: string; profiles: string[] }
  /** It answered and read its config again, and refused it: it keeps the previous one. */
  | { daemon: 'refused'; pid: number; config: string; error: string };

async function status(socket: string): Promise<StatusReply | WireError> {
  const reply = await sendRequest(socket, { v: 1, op: 'status' }, { timeoutMs: STATUS_TIMEOUT_MS });
  return reply.ok ? (reply as StatusReply) : reply.error;
}

/**
 * Reload the daemon on `socket`, if one runs. Throws DAEMON_UNREACHABLE when it was replaced
 * meanwhile, TIMEOUT when it did not finish within `waitMs`, INTERNAL when it cannot be signalled.
 */
export async function reloadDaemon(socket: string, waitMs = RELOAD_WAIT_MS): Promise<ReloadOutcome> {
  const before = await status(socket);
  if (!('daemon' in before)) return { daemon: 'not-running', error: before };
  const pid = before.daemon.pid;
  try {
    process.kill(pid, 'SIGHUP');
  } catch (err) {
    throw new BrokerError(
      'INTERNAL',
      `cannot signal the daemon (pid ${pid}): ${(err as NodeJS.ErrnoException).code ?? 'error'}`,
    );
  }
  const deadline = Date.now() + waitMs;
  for (;;) {
    await new Promise((r) => setTimeout(r, 50));
    const after = await status(socket);
    if (!('daemon' in after)) throw new BrokerError(isErrorCode(after.code) ? after.code : 'INTERNAL', after.message);
    if (after.daemon.pid !== pid)
      throw new BrokerError('DAEMON_UNREACHABLE', 'the daemon was replaced while reloading', {
        fix: 'run: keybroker status',
      });
    if (after.daemon.reloads > before.daemon.reloads) {
      const config = after.daemon.config;
      return after.daemon.lastReloadError
        ? { daemon: 'refused', pid, config, error: after.daemon.lastReloadError }
        : { daemon: 'reloaded', pid, config, profiles: after.profiles.map((p) => p.name) };
    }
    if (Date.now() > deadline)
      throw new BrokerError('TIMEOUT', `the daemon (pid ${pid}) did not finish reloading within ${waitMs / 1000} s`);
  }
}
