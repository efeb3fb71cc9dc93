// The socket server: one request per connection, one JSON line each way. A client can send
// anything; the daemon answers with an error or closes the connection, and keeps serving others.
import fsSync from 'node:fs';
import fs from 'node:fs/promises';
import net from 'node:net';
import type { Logger } from '../adapter.js';
import { BrokerError, describeUnknownError, resourceError } from '../errors.js';
import { MAX_REQUEST_BYTES, type Request } from '../protocol/messages.js';
import { encodeFramedReply, encodeReply, errorReplyFor, type DaemonReply } from './handler.js';
import type { PeerCredentials } from './peer-identity.js';
import { asksForFrame, decodeRequest } from './request.js';
import { listenExclusive } from './socket-dir.js';

export interface ServerOptions {
  log: Logger;
  /** `peer`: who connected, as the kernel says, when peerCredentials can tell. */
  handle(request: Request, peer: PeerCredentials | undefined): Promise<DaemonReply>;
  /** The kernel's record of a connection's peer (the hardening addon: see kernelPeer). */
  peerCredentials?: ((socket: net.Socket) => PeerCredentials | undefined) | undefined;
  maxRequestBytes?: number;
  /**
   * A connection must deliver its whole request line within this long of being accepted: an
   * absolute deadline, so a client trickling a byte at a time cannot hold a connection open.
   */
  requestDeadlineMs?: number;
  /**
   * Connections still waiting for their request line are capped; past the cap the oldest is
   * dropped, so idle connections can never starve a client with a real request.
   */
  maxPendingConnections?: number;
  /** Repeated warnings (connections dropped, accept failures) are logged at most once per this long. */
  warnEveryMs?: number;
}

/**
 * A warning that may fire thousands of times a second under a connection flood: the first is
 * logged at once, the rest are counted and logged as one line per interval, so a flood costs a
 * few log lines rather than megabytes.
 */
class RateLimitedWarning {
  #count = 0;
  #timer: NodeJS.Timeout | undefined;

  constructor(
    private readonly log: Logger,
    private readonly message: string,
    private readonly everyMs: number,
  ) {}

  hit(fields: Record<string, unknown> = {}): void {
    if (this.#timer) {
      this.#count++;
      return;
    }
    this.log.warn({ ...fields, count: 1 }, this.message);
    this.#timer = setTimeout(() => this.#flush(fields), this.everyMs);
    this.#timer.unref();
  }

  #flush(fields: Record<string, unknown>): void {
    this.#timer = undefined;
    if (this.#count === 0) return;
    const count = this.#count;
    this.#count = 0;
    this.log.warn({ ...fields, count, perMs: this.everyMs }, this.message);
    this.#timer = setTimeout(() => this.#flush(fields), this.everyMs);
    this.#timer.unref();
  }

  stop(): void {
    clearTimeout(this.#timer);
  }
}

export class BrokerServer {
  readonly #server: net.Server;
  readonly #log: Logger;
  readonly #handle: ServerOptions['handle'];
  readonly #peerCredentials: ServerOptions['peerCredentials'];
  readonly #maxRequestBytes: number;
  readonly #requestDeadlineMs: number;
  readonly #maxPending: number;
  /** Connections that have not yet sent a full request, oldest first. */
  readonly #pending = new Set<net.Socket>();
  readonly #inflight = new Set<Promise<void>>();
  #socketPath: string | undefined;
  #socketIno: number | undefined;
  #closing = false;
  readonly #dropWarning: RateLimitedWarning;
  readonly #acceptWarning: RateLimitedWarning;

  constructor(options: ServerOptions) {
    this.#log = options.log;
    this.#handle = options.handle;
    this.#peerCredentials = options.peerCredentials;
    this.#maxRequestBytes = options.maxRequestBytes ?? MAX_REQUEST_BYTES;
    this.#requestDeadlineMs = options.requestDeadlineMs ?? 5_000;
    this.#maxPending = options.maxPendingConnections ?? 256;
    const warnEveryMs = options.warnEveryMs ?? 10_000;
    this.#dropWarning = new RateLimitedWarning(
      this.#log,
      'too many connections waiting for a request: dropped the oldest',
      warnEveryMs,
    );
    this.#acceptWarning = new RateLimitedWarning(this.#log, 'socket server error', warnEveryMs);
    this.#server = net.createServer({ allowHalfOpen: true }, (socket) => this.#accept(socket));
    // Accept errors (EMFILE under a connection flood) must not take the daemon down.
    this.#server.on('error', (err) => {
      const known = resourceError(err);
      this.#acceptWarning.hit(
        known ? { code: known.code, reason: known.message, fix: known.fix } : { err: describeUnknownError(err) },
      );
    });
  }

  /**
   * Listen on a path: private, 0600, never stealing a live daemon's socket. `announce` runs as
   * soon as the socket listens, before any connection can be served (same tick, synchronously):
   * whoever sees the daemon answer can already read its "listening" log line, and the socket
   * cannot be removed between bind and our record of it.
   */
  async listen(socketPath: string, announce: () => void = () => {}): Promise<void> {
    await listenExclusive(this.#server, socketPath, () => {
      fsSync.chmodSync(socketPath, 0o600);
      this.#socketIno = fsSync.statSync(socketPath).ino;
      this.#socketPath = socketPath;
      announce();
    });
  }

  /** Serve a listening socket inherited from a service manager (systemd socket activation). */
  listenFd(fd: number, announce: () => void = () => {}): Promise<void> {
    return new Promise((resolve, reject) => {
      this.#server.once('error', reject);
      this.#server.listen({ fd }, () => {
        this.#server.off('error', reject);
        announce();
        resolve();
      });
    });
  }

  /** Whether the socket file we bound is still there and still ours, as a message when it is not. */
  async socketFileProblem(): Promise<string | undefined> {
    if (!this.#socketPath || this.#closing) return undefined;
    const st = await fs.lstat(this.#socketPath).catch(() => undefined);
    if (!st) return `socket ${this.#socketPath} was removed`;
    if (!st.isSocket() || st.ino !== this.#socketIno) return `socket ${this.#socketPath} was replaced`;
    return undefined;
  }

  /** Stop accepting, let in-flight replies finish (up to graceMs), remove our socket file. */
  async close(graceMs = 5_000): Promise<void> {
    if (this.#closing) return;
    this.#closing = true;
    this.#dropWarning.stop();
    this.#acceptWarning.stop();
    const closed = new Promise<void>((resolve) => this.#server.close(() => resolve()));
    for (const socket of this.#pending) socket.destroy();
    this.#pending.clear();
    const inflight = Promise.allSettled([...this.#inflight]);
    await Promise.race([inflight, sleep(graceMs)]);
    await Promise.race([closed, sleep(100)]);
    await this.#removeSocketFile();
  }

  async #removeSocketFile(): Promise<void> {
    if (!this.#socketPath) return;
    // Only remove the file if it is still ours: a newer daemon may have replaced it.
    const st = await fs.stat(this.#socketPath).catch(() => undefined);
    if (st && st.ino === this.#socketIno) await fs.rm(this.#socketPath, { force: true });
  }

  #accept(socket: net.Socket): void {
    if (this.#closing) {
      this.#reply(
        socket,
        errorReplyFor(new BrokerError('SHUTTING_DOWN', 'the keybroker daemon is stopping'), undefined),
      );
      return;
    }
    if (this.#pending.size >= this.#maxPending) {
      const oldest = this.#pending.values().next().value;
      if (oldest) {
        this.#pending.delete(oldest);
        oldest.destroy();
        this.#dropWarning.hit({ maxPending: this.#maxPending });
      }
    }
    this.#pending.add(socket);
    this.#log.trace({ pending: this.#pending.size }, 'connection');
    const chunks: Buffer[] = [];
    let size = 0;
    let done = false;
    const deadline = setTimeout(() => {
      if (!done) fail('BAD_REQUEST', `no complete request line within ${this.#requestDeadlineMs} ms`);
    }, this.#requestDeadlineMs);

    const finish = (): void => {
      done = true;
      this.#pending.delete(socket);
      clearTimeout(deadline);
      socket.removeListener('data', onData);
      socket.removeListener('end', onEnd);
      socket.pause();
    };
    const fail = (code: 'BAD_REQUEST', message: string): void => {
      finish();
      this.#log.debug({ code, message }, 'bad request');
      this.#reply(socket, errorReplyFor(new BrokerError(code, message), undefined));
    };
    const onData = (chunk: Buffer): void => {
      if (done) return;
      const newline = chunk.indexOf(0x0a);
      const part = newline === -1 ? chunk : chunk.subarray(0, newline);
      size += part.length;
      if (size > this.#maxRequestBytes) {
        fail('BAD_REQUEST', `request exceeds ${this.#maxRequestBytes} bytes`);
        return;
      }
      chunks.push(part);
      if (newline !== -1) {
        finish();
        this.#serve(socket, Buffer.concat(chunks, size));
      }
    };
    const onEnd = (): void => {
      if (done) return;
      if (size === 0) {
        finish();
        socket.end();
        return;
      }
      // A request closed by half-close without a newline is still a request.
      finish();
      this.#serve(socket, Buffer.concat(chunks, size));
    };

    socket.on('data', onData);
    socket.on('end', onEnd);
    // A connection dropped from the pending set or reset by its client takes its timer with it.
    socket.once('close', () => clearTimeout(deadline));
    socket.on('error', (err) => {
      this.#pending.delete(socket);
      this.#log.debug({ err }, 'client connection error');
    });
  }

  #serve(socket: net.Socket, line: Buffer): void {
    const work = (async () => {
      let request: Request | undefined;
      let reply: DaemonReply;
      try {
        request = decodeRequest(line);
        reply = await this.#handle(request, this.#peerOf(socket));
      } catch (err) {
        const profile = request && 'profile' in request ? request.profile : undefined;
        if (err instanceof BrokerError) {
          reply = errorReplyFor(err, profile);
        } else {
          this.#log.error(describeUnknownError(err), 'request handler failed');
          reply = errorReplyFor(new BrokerError('INTERNAL', 'internal error (see the daemon log)'), profile);
        }
      }
      this.#log.debug(
        { op: request?.op, profile: request && 'profile' in request ? request.profile : undefined, ok: reply.ok },
        'request',
      );
      // At trace level the whole reply is logged; its value is a SecretValue and prints redacted.
      this.#log.trace({ reply }, 'reply');
      const framed = request ? request.op === 'get' && request.framed === true : asksForFrame(line);
      this.#reply(socket, reply, framed);
    })();
    this.#inflight.add(work);
    void work.finally(() => this.#inflight.delete(work));
  }

  /**
   * Read while the client waits for its reply: the credentials are those the kernel took at
   * connect(), and its /proc entries are still there to check a claim against.
   */
  #peerOf(socket: net.Socket): PeerCredentials | undefined {
    return this.#peerCredentials?.(socket);
  }

  /** `framed`: the request asked for a frame (../protocol/framed-reply.ts), which a get's reply has. */
  #reply(socket: net.Socket, reply: DaemonReply, framed = false): void {
    if (socket.destroyed) return;
    // One reply per connection: once it is handed to the kernel, the connection is done (the
    // peer still reads what was written). A client that never reads it is dropped on a timer.
    socket.setTimeout(this.#requestDeadlineMs, () => socket.destroy());
    socket.end((framed && encodeFramedReply(reply)) || encodeReply(reply), () => socket.destroy());
  }
}

const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms).unref());
