// The client half of the protocol, shared by the shim and the CLI: connect, write one request,
// half-close, read one reply line, done. Built-ins only: the shim's start-up time depends on it.
import net from 'node:net';
import { MAX_REPLY_BYTES, encodeLine, errorReply, type Reply, type Request } from './messages.js';
import { backoffDelay, CONNECT_BACKOFF } from './backoff.js';
import { checkSocketPath, describeProblem } from './socket-check.js';

export interface SendOptions {
  /** Give up after this long, whole exchange included. */
  timeoutMs: number;
}

/**
 * Send one request and resolve with the daemon's reply. Local failures (no daemon, unsafe socket,
 * timeout, garbled reply) resolve as error replies too, so callers handle one shape.
 */
export async function sendRequest(socketPath: string, request: Request, options: SendOptions): Promise<Reply> {
  const problem = checkSocketPath(socketPath);
  if (problem?.kind === 'UNSAFE_PATH') return errorReply('UNSAFE_PATH', `refusing to connect: ${describeProblem(problem)}`);
  const deadline = Date.now() + options.timeoutMs;
  for (let attempt = 1; ; attempt++) {
    const outcome = await exchange(socketPath, request, options.timeoutMs, deadline);
    if (outcome !== 'EAGAIN') return outcome;
    // A full listen backlog shows as EAGAIN on a Unix socket (Linux does not queue the connect).
    // Retry briefly within the deadline: a burst of connections must not fail a good client.
    const delay = backoffDelay(attempt, CONNECT_BACKOFF);
    if (deadline - Date.now() <= delay) return unreachable(socketPath, 'EAGAIN');
    await new Promise((r) => setTimeout(r, delay));
  }
}

function exchange(socketPath: string, request: Request, timeoutMs: number, deadline: number): Promise<Reply | 'EAGAIN'> {
  return new Promise((resolve) => {
    const chunks: Buffer[] = [];
    let size = 0;
    let settled = false;
    let connected = false;
    const finish = (reply: Reply | 'EAGAIN'): void => {
      if (settled) return;
      settled = true;
      clearTimeout(timer);
      socket.destroy();
      resolve(reply);
    };
    const socket = net.createConnection({ path: socketPath, allowHalfOpen: true });
    const timer = setTimeout(() => {
      finish(errorReply('TIMEOUT', `no reply from the keybroker daemon on ${socketPath} within ${timeoutMs} ms`, true));
    }, Math.max(0, deadline - Date.now()));

    socket.on('connect', () => {
      connected = true;
      socket.end(encodeLine(request));
    });
    socket.on('data', (chunk: Buffer) => {
      size += chunk.length;
      if (size > MAX_REPLY_BYTES) {
        finish(errorReply('INTERNAL', `reply from the keybroker daemon exceeds ${MAX_REPLY_BYTES} bytes`));
        return;
      }
      chunks.push(chunk);
      if (chunk.includes(0x0a)) finish(parseReply(Buffer.concat(chunks)));
    });
    socket.on('end', () => finish(parseReply(Buffer.concat(chunks))));
    socket.on('error', (err: NodeJS.ErrnoException) => {
      // Only a refused connect is safe to repeat: once connected, the request may have been served.
      if (!connected && err.code === 'EAGAIN') finish('EAGAIN');
      else finish(unreachable(socketPath, err.code));
    });
  });
}

function unreachable(socketPath: string, errno: string | undefined): Reply {
  const why =
    errno === 'ENOENT' ? 'no socket there' :
    errno === 'ECONNREFUSED' ? 'socket present but nothing is listening' :
    errno === 'EACCES' ? 'permission denied' :
    errno === 'EAGAIN' ? 'its connection queue stayed full' :
    errno === 'ECONNRESET' || errno === 'EPIPE' ? 'the daemon closed the connection' :
    errno ?? 'connection failed';
  return errorReply('DAEMON_UNREACHABLE', `keybroker daemon not reachable on ${socketPath} (${why})`, true);
}

function parseReply(raw: Buffer): Reply {
  const newline = raw.indexOf(0x0a);
  const line = (newline === -1 ? raw : raw.subarray(0, newline)).toString('utf8');
  if (line.length === 0) return errorReply('DAEMON_UNREACHABLE', 'the keybroker daemon closed the connection without replying', true);
  let parsed: unknown;
  try {
    parsed = JSON.parse(line);
  } catch {
    // Never echo the reply: it may hold a secret.
    return errorReply('INTERNAL', 'the keybroker daemon sent a reply that is not JSON');
  }
  if (!isReplyShape(parsed)) return errorReply('INTERNAL', 'the keybroker daemon sent a reply of an unknown shape');
  return parsed;
}

function isReplyShape(value: unknown): value is Reply {
  if (typeof value !== 'object' || value === null) return false;
  const v = value as Record<string, unknown>;
  if (v.ok === true) return true;
  if (v.ok !== false || typeof v.error !== 'object' || v.error === null) return false;
  const e = v.error as Record<string, unknown>;
  return typeof e.code === 'string' && typeof e.message === 'string';
}
