// The socket's private directory and the rules for taking the socket path (after git's
// credential-cache daemon): the directory is created 0700 before binding and refused when others
// can reach it; a stale socket left by a crash is replaced; a live daemon's socket never is.
import fs from 'node:fs/promises';
import net from 'node:net';
import { BrokerError } from '../errors.js';
import { sendRequest } from '../client/client.js';
import { MAX_SOCKET_PATH_BYTES } from '../client/socket-path.js';

export function checkSocketPathLength(socketPath: string): void {
  if (Buffer.byteLength(socketPath) > MAX_SOCKET_PATH_BYTES) {
    throw new BrokerError(
      'UNSAFE_PATH',
      `socket path ${socketPath} is longer than ${MAX_SOCKET_PATH_BYTES} bytes, the limit for Unix sockets; choose a shorter --socket`,
    );
  }
}

/** Is a daemon answering on this socket? */
export function probeLive(socketPath: string, timeoutMs = 1000): Promise<boolean> {
  return new Promise((resolve) => {
    const socket = net.createConnection({ path: socketPath });
    const done = (live: boolean): void => {
      clearTimeout(timer);
      socket.destroy();
      resolve(live);
    };
    // A listener that accepts but hangs is still a live daemon: never steal its socket.
    const timer = setTimeout(() => done(true), timeoutMs);
    socket.on('connect', () => done(true));
    // Only "nobody listens" (ECONNREFUSED) and "nothing there" (ENOENT) mean stale. A full backlog
    // (EAGAIN) is a busy live daemon, and anything else we cannot judge: leave the socket alone.
    socket.on('error', (err: NodeJS.ErrnoException) => done(err.code !== 'ECONNREFUSED' && err.code !== 'ENOENT'));
  });
}

/**
 * Listen on socketPath, replacing a stale socket but never a live one. The decision to unlink is
 * taken under a lock (an exclusive mkdir) held until we listen, so two daemons starting together
 * cannot both unlink and bind.
 */
export async function listenExclusive(
  server: net.Server,
  socketPath: string,
  onListening: () => void = () => {},
): Promise<void> {
  const lock = `${socketPath}.lock`;
  const deadline = Date.now() + 5000;
  for (;;) {
    if (await acquireLock(lock)) break;
    if (Date.now() > deadline)
      throw new BrokerError(
        'ALREADY_RUNNING',
        `another keybroker is starting on ${socketPath} (lock ${lock}); if none is, remove the lock`,
      );
    await sleep(25);
  }
  try {
    if (await probeLive(socketPath)) throw await alreadyRunning(socketPath);
    await fs.rm(socketPath, { force: true });
    await listenOn(server, socketPath, onListening);
  } finally {
    await fs.rm(lock, { recursive: true, force: true });
  }
}

/** ALREADY_RUNNING, naming the pid the live daemon gives (a ping) and how to stop it. */
async function alreadyRunning(socketPath: string): Promise<BrokerError> {
  const reply = await sendRequest(socketPath, { v: 1, op: 'ping' }, { timeoutMs: 1000 });
  const pid = reply.ok && 'pong' in reply ? ` (pid ${reply.pid})` : '';
  return new BrokerError('ALREADY_RUNNING', `a keybroker daemon${pid} is already listening on ${socketPath}`, {
    fix: 'stop it first with: keybroker stop',
  });
}

async function acquireLock(lock: string): Promise<boolean> {
  try {
    await fs.mkdir(lock, { mode: 0o700 });
    return true;
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== 'EEXIST') throw err;
    // A lock left by a daemon that died while starting.
    const st = await fs.stat(lock).catch(() => undefined);
    if (st && Date.now() - st.mtimeMs > 10_000) await fs.rm(lock, { recursive: true, force: true });
    return false;
  }
}

function listenOn(server: net.Server, socketPath: string, hook: () => void): Promise<void> {
  return new Promise((resolve, reject) => {
    const onError = (err: NodeJS.ErrnoException): void => {
      server.off('listening', onListening);
      reject(new BrokerError('UNSAFE_PATH', `cannot listen on ${socketPath} (${err.code ?? err.message})`));
    };
    const onListening = (): void => {
      server.off('error', onError);
      try {
        hook();
      } catch (err) {
        server.close();
        reject(
          new BrokerError(
            'UNSAFE_PATH',
            `cannot set up ${socketPath} after binding it (${(err as NodeJS.ErrnoException).code ?? 'error'})`,
          ),
        );
        return;
      }
      resolve();
    };
    server.once('error', onError);
    server.once('listening', onListening);
    // Created 0600 from the start; the chmod after is for platforms that ignore umask on bind.
    const previous = process.umask(0o177);
    try {
      server.listen(socketPath);
    } finally {
      process.umask(previous);
    }
  });
}

const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));
