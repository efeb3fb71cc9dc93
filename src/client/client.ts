// The client half of the protocol, shared by the shim and the CLI: connect, write one request,
// half-close, read one reply line, done. Built-ins only: the shim's start-up time depends on it.
//
// Two transports carry that exchange, with one behaviour (test/protocol/client.test.ts runs
// both): Node's libuv pipe handle driven directly, and node:net. Loading node:net (with the
// stream machinery it pulls in) costs ~2 ms on Node 20 and ~3-4 ms on Node 24 — on Node 24 that
// alone is a sixth of a bare `node -e 0`, and the shim does nothing else that costs as much. The
// handle is what node:net itself drives, reached through process.binding (a deprecated but
// working API on Node 20, 22 and 24, used only for the shape checked in pipeBindings()); where it
// is missing, refused (--permission) or of another shape, the client uses node:net.
import type { Socket } from 'node:net';
import { getSystemErrorName } from 'node:util';
import {
  MAX_REPLY_BYTES,
  encodeLine,
  errorReply,
  type ErrorReply,
  type Reply,
  type Request,
  type WireError,
} from '../protocol/messages.js';
import { backoffDelay, CONNECT_BACKOFF } from './backoff.js';
import { sandboxedConnect } from './sandbox.js';
import { checkSocketPath, refusal } from './socket-check.js';

/** What the client says when a reply is over the limit, or the daemon hung up without one. */
export const REPLY_TOO_LONG = `reply from the keybroker daemon exceeds ${MAX_REPLY_BYTES} bytes`;
export const CLOSED_WITHOUT_REPLY = 'the keybroker daemon closed the connection without replying';

export type Transport = 'pipe-handle' | 'net';

export interface SendOptions {
  /** Give up after this long, whole exchange included. */
  timeoutMs: number;
  /** Tests only: force one transport (default: the pipe handle where available). */
  transport?: Transport;
  /**
   * The error to answer with when no reply comes within `timeoutMs` (default: "no reply from the
   * keybroker daemon on SOCKET within N ms"). The shim says more: its wait outlasts every profile's.
   */
  noReply?: WireError;
}

/**
 * Send one request and resolve with the daemon's reply. Local failures (no daemon, unsafe socket,
 * timeout, garbled reply) resolve as error replies too, so callers handle one shape.
 */
export async function sendRequest(socketPath: string, request: Request, options: SendOptions): Promise<Reply> {
  const problem = checkSocketPath(socketPath);
  if (problem?.kind === 'UNSAFE_PATH') return { v: 1, ok: false, error: { code: 'UNSAFE_PATH', ...refusal(problem) } };
  const open = await transport(options.transport);
  const deadline = Date.now() + options.timeoutMs;
  for (let attempt = 1; ; attempt++) {
    const outcome = await exchange(open, socketPath, request, noReplyError(socketPath, options), deadline);
    if (outcome !== 'EAGAIN') return outcome;
    // A full listen backlog shows as EAGAIN on a Unix socket (Linux does not queue the connect).
    // Retry briefly within the deadline: a burst of connections must not fail a good client.
    const delay = backoffDelay(attempt, CONNECT_BACKOFF);
    if (deadline - Date.now() <= delay) return unreachable(socketPath, 'EAGAIN');
    await new Promise((r) => setTimeout(r, delay));
  }
}

/** What a transport reports about one connection; nothing after close() is called. */
interface ConnectionEvents {
  data(chunk: Buffer): void;
  /** The daemon closed its side. */
  end(): void;
  /** errno name (ENOENT, ECONNREFUSED, …); `connected`: the request may have been sent. */
  error(code: string | undefined, connected: boolean): void;
}

/**
 * Connect to `socketPath`, send `line`, half-close, report what comes back; returns close(). It
 * never calls `events` before it has returned (exchange() needs close() in hand by then).
 */
type Open = (socketPath: string, line: string, events: ConnectionEvents) => () => void;

function exchange(
  open: Open,
  socketPath: string,
  request: Request,
  noReply: ErrorReply,
  deadline: number,
): Promise<Reply | 'EAGAIN'> {
  return new Promise((resolve) => {
    const chunks: Buffer[] = [];
    let size = 0;
    let settled = false;
    const finish = (reply: Reply | 'EAGAIN'): void => {
      if (settled) return;
      settled = true;
      clearTimeout(timer);
      close();
      resolve(reply);
    };
    const timer = setTimeout(() => finish(noReply), Math.max(0, deadline - Date.now()));
    const close = open(socketPath, encodeLine(request), {
      data(chunk) {
        if (settled) return;
        size += chunk.length;
        if (size > MAX_REPLY_BYTES) {
          finish(errorReply('INTERNAL', REPLY_TOO_LONG));
          return;
        }
        chunks.push(chunk);
        if (chunk.includes(0x0a)) finish(parseReply(Buffer.concat(chunks)));
      },
      end: () => finish(parseReply(Buffer.concat(chunks))),
      // Only a refused connect is safe to repeat: once connected, the request may have been served.
      error: (code, connected) => finish(connected ? unreachable(socketPath, code) : connectFailed(socketPath, code)),
    });
  });
}

async function transport(wanted: Transport | undefined): Promise<Open> {
  const handles = wanted === 'net' ? undefined : pipeBindings();
  if (handles) return pipeHandleTransport(handles);
  if (wanted === 'pipe-handle') throw new Error('the pipe-handle transport is not available on this Node');
  // process.getBuiltinModule (Node 20.16+, 22.3+) loads it synchronously in the shim's CommonJS
  // bundle and in the CLI's ES modules alike.
  const net = process.getBuiltinModule?.('node:net') ?? (await import('node:net'));
  return netTransport(net.createConnection);
}

function netTransport(createConnection: typeof import('node:net').createConnection): Open {
  return (socketPath, line, events) => {
    let connected = false;
    const socket: Socket = createConnection({ path: socketPath, allowHalfOpen: true });
    socket.on('connect', () => {
      connected = true;
      socket.end(line);
    });
    socket.on('data', (chunk: Buffer) => events.data(chunk));
    socket.on('end', () => events.end());
    socket.on('error', (err: NodeJS.ErrnoException) => events.error(err.code, connected));
    return () => socket.destroy();
  };
}

// ---- the pipe handle (what node:net drives; see the top of this file) ----

/* eslint-disable @typescript-eslint/no-explicit-any -- Node's internal handle classes have no types. */
interface PipeBindings {
  Pipe: new (type: number) => any;
  PipeConnectWrap: new () => any;
  WriteWrap: new () => any;
  ShutdownWrap: new () => any;
  socketType: number;
  /** Where a read callback finds its byte count (negative: an errno, or EOF) and offset. */
  state: Int32Array;
  kReadBytesOrError: number;
  kArrayBufferOffset: number;
}

let bindings: PipeBindings | null | undefined;

/** The handle classes, when this Node has them in the shape this file drives; else undefined. */
export function pipeBindings(): PipeBindings | undefined {
  if (bindings !== undefined) return bindings ?? undefined;
  bindings = null;
  const binding = (process as { binding?: (name: string) => any }).binding;
  if (typeof binding !== 'function') return undefined;
  // The deprecation is ours, not the user's to act on: no DEP0111 warning under
  // --pending-deprecation (checked when the warning is emitted, i.e. during the call).
  const quiet = process.noDeprecation;
  process.noDeprecation = true;
  try {
    const pipe = binding.call(process, 'pipe_wrap');
    const stream = binding.call(process, 'stream_wrap');
    const fns = [pipe.Pipe, pipe.PipeConnectWrap, stream.WriteWrap, stream.ShutdownWrap];
    const socketType: unknown = pipe.constants?.SOCKET;
    const shapeOk =
      fns.every((f) => typeof f === 'function') &&
      typeof socketType === 'number' &&
      stream.streamBaseState instanceof Int32Array &&
      typeof stream.kReadBytesOrError === 'number' &&
      typeof stream.kArrayBufferOffset === 'number' &&
      ['connect', 'writeUtf8String', 'shutdown', 'readStart', 'close'].every(
        (m) => typeof pipe.Pipe.prototype[m] === 'function',
      );
    if (shapeOk) {
      bindings = {
        Pipe: pipe.Pipe,
        PipeConnectWrap: pipe.PipeConnectWrap,
        WriteWrap: stream.WriteWrap,
        ShutdownWrap: stream.ShutdownWrap,
        socketType,
        state: stream.streamBaseState,
        kReadBytesOrError: stream.kReadBytesOrError,
        kArrayBufferOffset: stream.kArrayBufferOffset,
      };
    }
  } catch {
    // Refused (the permission model) or gone: node:net it is.
  } finally {
    process.noDeprecation = quiet;
  }
  return bindings ?? undefined;
}

/**
 * The steps of node:net's connect, end() and read for a pipe, without its streams: libuv
 * reports each as a negative errno (or 0), reads arrive through handle.onread with the byte
 * count in the shared state array, and EOF is the errno named EOF.
 */
function pipeHandleTransport(b: PipeBindings): Open {
  return (socketPath, line, events) => {
    const handle = new b.Pipe(b.socketType);
    let closed = false;
    const fail = (status: number, connected: boolean): void => {
      if (!closed) events.error(errnoName(status), connected);
    };
    const connect = new b.PipeConnectWrap();
    connect.address = socketPath;
    connect.oncomplete = (status: number): void => {
      if (closed) return;
      if (status < 0) return fail(status, false);
      handle.onread = (buffer: ArrayBuffer): void => {
        if (closed) return;
        const n = b.state[b.kReadBytesOrError]!;
        if (n > 0) events.data(Buffer.from(new Uint8Array(buffer, b.state[b.kArrayBufferOffset], n)));
        else if (n < 0) {
          if (errnoName(n) === 'EOF') events.end();
          else fail(n, true);
        }
      };
      const write = new b.WriteWrap();
      write.handle = handle;
      write.async = false;
      write.oncomplete = (s: number): void => {
        if (s < 0) fail(s, true);
      };
      let err: number = handle.writeUtf8String(write, line);
      if (err === 0) {
        // Half-close after the write (libuv queues it behind), as socket.end() does. Its
        // failure needs no report of its own: the read says how the exchange ended.
        const shutdown = new b.ShutdownWrap();
        shutdown.handle = handle;
        shutdown.oncomplete = (): void => {};
        handle.shutdown(shutdown);
        err = handle.readStart();
      }
      if (err < 0) fail(err, true);
    };
    const err: number = handle.connect(connect, socketPath);
    if (err < 0) queueMicrotask(() => fail(err, false));
    return () => {
      if (closed) return;
      closed = true;
      handle.close();
    };
  };
}
/* eslint-enable @typescript-eslint/no-explicit-any */

function errnoName(status: number): string | undefined {
  try {
    return getSystemErrorName(status);
  } catch {
    return undefined;
  }
}

function noReplyError(socketPath: string, options: SendOptions): ErrorReply {
  return options.noReply
    ? { v: 1, ok: false, error: options.noReply }
    : errorReply('TIMEOUT', `no reply from the keybroker daemon on ${socketPath} within ${options.timeoutMs} ms`, {
        transient: true,
      });
}

/**
 * The connect failed: EAGAIN is retried; inside a sandbox (the kernel said EPERM, or the
 * environment says so) there is no daemon to reach or start, by design; else nothing answers there.
 */
function connectFailed(socketPath: string, errno: string | undefined): Reply | 'EAGAIN' {
  if (errno === 'EAGAIN') return 'EAGAIN';
  const sandboxed = sandboxedConnect(errno);
  return sandboxed ? { v: 1, ok: false, error: sandboxed } : unreachable(socketPath, errno);
}

function unreachable(socketPath: string, errno: string | undefined): Reply {
  return errorReply('DAEMON_UNREACHABLE', unreachableMessage(socketPath, errno), { transient: true });
}

/** Why nothing answered on `socketPath`, from the errno name of the failure. */
export function unreachableMessage(socketPath: string, errno: string | undefined): string {
  const why =
    errno === 'ENOENT'
      ? 'no socket there'
      : errno === 'ECONNREFUSED'
        ? 'socket present but nothing is listening'
        : errno === 'EACCES'
          ? 'permission denied'
          : errno === 'EAGAIN'
            ? 'its connection queue stayed full'
            : errno === 'ECONNRESET' || errno === 'EPIPE'
              ? 'the daemon closed the connection'
              : (errno ?? 'connection failed');
  return `keybroker daemon not reachable on ${socketPath} (${why})`;
}

function parseReply(raw: Buffer): Reply {
  const newline = raw.indexOf(0x0a);
  const line = (newline === -1 ? raw : raw.subarray(0, newline)).toString('utf8');
  if (line.length === 0) return errorReply('DAEMON_UNREACHABLE', CLOSED_WITHOUT_REPLY, { transient: true });
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
