// The CLI's way to the daemon: same protocol client as the shim, with messages that say what to do.
import { sendRequest } from '../protocol/client.js';
import type { Reply, Request } from '../protocol/messages.js';
import { resolveSocketPath } from '../protocol/socket-path.js';
import { die } from './output.js';

export interface ClientOptions {
  socket?: string | undefined;
}

export async function callDaemon<T extends Reply>(options: ClientOptions, request: Request, timeoutMs = 15_000): Promise<Exclude<T, { ok: false }>> {
  const socket = resolveSocketPath({ flag: options.socket });
  const reply = await sendRequest(socket.path, request, { timeoutMs });
  if (!reply.ok) {
    if (reply.error.code === 'DAEMON_UNREACHABLE') {
      die(
        'DAEMON_UNREACHABLE',
        `${reply.error.message} — start it with: keybroker daemon (or install the service: keybroker service install)` +
          (socket.from === 'default' ? '' : `; socket chosen by ${socket.from}`),
      );
    }
    die(reply.error.code, reply.error.message);
  }
  return reply as Exclude<T, { ok: false }>;
}
