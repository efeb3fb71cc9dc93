// The CLI's way to the daemon: same protocol client as the shim, with messages that say what to do.
import os from 'node:os';
import { sendRequest } from '../client/client.js';
import { BUILD_ID, isOtherBuild, otherBuild, VERSION } from '../client/build-info.js';
import {
  CLIENT_REPLY_TIMEOUT_MS,
  renderError,
  type DaemonIdentity,
  type Reply,
  type Request,
} from '../protocol/messages.js';
import { resolveSocketPath } from '../client/socket-path.js';
import { die } from './output.js';

export interface ClientOptions {
  socket?: string | undefined;
}

let warnedOtherBuild = false;

/**
 * After an upgrade the daemon still running is the old build: say so once per command, with the
 * command that restarts it. Every successful reply says which daemon answered.
 */
function noticeOtherBuild(reply: Reply): void {
  if (warnedOtherBuild || !reply.ok) return;
  const daemon: DaemonIdentity | undefined = 'pong' in reply ? reply : 'daemon' in reply ? reply.daemon : undefined;
  if (!daemon || typeof daemon.version !== 'string') return;
  const client = { version: VERSION, build: BUILD_ID };
  if (!isOtherBuild(client, daemon)) return;
  warnedOtherBuild = true;
  process.stderr.write(`keybroker: warning: ${renderError(otherBuild(client, daemon, process.getuid?.()))}\n`);
}

export async function callDaemon<T extends Reply>(
  options: ClientOptions,
  request: Request,
  timeoutMs = CLIENT_REPLY_TIMEOUT_MS,
): Promise<Exclude<T, { ok: false }>> {
  const socket = resolveSocketPath({ flag: options.socket });
  const reply = await sendRequest(socket.path, request, { timeoutMs });
  if (!reply.ok) {
    if (reply.error.code === 'DAEMON_UNREACHABLE') {
      const chosen = socket.from === 'default' ? '' : `; socket chosen by ${socket.from}`;
      const { startAdvice, startSituation } = await import('../integration/service-manager.js');
      const situation = await startSituation({
        platform: process.platform,
        home: os.homedir(),
        env: process.env,
        uid: process.getuid?.() ?? 0,
      });
      die('DAEMON_UNREACHABLE', renderError({ ...reply.error, fix: `${startAdvice(situation)}${chosen}` }));
    }
    die(reply.error.code, renderError(reply.error));
  }
  noticeOtherBuild(reply);
  return reply as Exclude<T, { ok: false }>;
}
