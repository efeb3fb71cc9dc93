// The client's exchange over both transports it has — Node's pipe handle (the default, for the
// shim's start-up time) and node:net (where the handle is unavailable) — against real Unix
// socket servers: the same replies, the same failures, the same error codes.
import fs from 'node:fs';
import net from 'node:net';
import path from 'node:path';
import { beforeAll, describe, expect, it } from 'vitest';
import { pipeBindings, sendRequest, type Transport } from '../../src/client/client.js';
import { MAX_REPLY_BYTES, noAnswerError, type Request } from '../../src/protocol/messages.js';
import { baseEnv, privateTempDir, run, SHIM } from '../helpers/daemon.js';

const REQUEST: Request = { v: 1, op: 'ping' };
let dir: string;
let n = 0;

beforeAll(() => {
  dir = privateTempDir('kb-client-');
});

/** A server in its own private directory that runs `serve` for each connection. */
async function server(
  serve: (socket: net.Socket, request: Promise<string>) => void,
): Promise<{ path: string; seen: string[]; close: () => Promise<void> }> {
  const sub = path.join(dir, `s${n++}`);
  fs.mkdirSync(sub, { mode: 0o700 });
  const socketPath = path.join(sub, 'kb.sock');
  const seen: string[] = [];
  const open = new Set<net.Socket>();
  const srv = net.createServer({ allowHalfOpen: true }, (socket) => {
    open.add(socket);
    socket.on('close', () => open.delete(socket));
    let text = '';
    // Resolves when the client half-closes: the whole request, as sent.
    const request = new Promise<string>((resolve) => {
      socket.on('data', (c: Buffer) => (text += c.toString()));
      socket.on('end', () => {
        seen.push(text);
        resolve(text);
      });
    });
    socket.on('error', () => {});
    serve(socket, request);
  });
  await new Promise<void>((resolve) => srv.listen(socketPath, resolve));
  const close = (): Promise<void> =>
    new Promise((resolve) => {
      srv.close(() => resolve());
      // Half-open connections (the client gone, this side not ended) would hold close() forever.
      for (const socket of open) socket.destroy();
    });
  return { path: socketPath, seen, close };
}

const TRANSPORTS: Transport[] = ['pipe-handle', 'net'];

describe.each(TRANSPORTS)('transport %s', (transport) => {
  const send = (socketPath: string, timeoutMs = 5_000) => sendRequest(socketPath, REQUEST, { timeoutMs, transport });

  it('sends the request line, half-closes, and reads a reply that arrives in pieces', async () => {
    const s = await server((socket, request) => {
      void request.then(async () => {
        socket.write('{"v":1,"ok":true,');
        await new Promise((r) => setTimeout(r, 30));
        socket.end('"pong":true}\n');
      });
    });
    expect(await send(s.path)).toEqual({ v: 1, ok: true, pong: true });
    expect(s.seen).toEqual([`${JSON.stringify(REQUEST)}\n`]);
    await s.close();
  });

  it('takes the first line and stops reading there, without waiting for the close', async () => {
    const s = await server((socket) => socket.write('{"ok":true,"a":1}\n{"ok":true,"a":2}\n'));
    expect(await send(s.path, 2_000)).toEqual({ ok: true, a: 1 });
    await s.close();
  });

  it('reads a reply ended by the close instead of a newline', async () => {
    const s = await server((socket, request) => void request.then(() => socket.end('{"ok":true,"a":3}')));
    expect(await send(s.path)).toEqual({ ok: true, a: 3 });
    await s.close();
  });

  it('a reply of MAX_REPLY_BYTES and more is refused as INTERNAL, without waiting for its end', async () => {
    const s = await server((socket) => socket.write(Buffer.alloc(MAX_REPLY_BYTES + 1, 0x61)));
    const reply = await send(s.path);
    expect(reply.ok ? undefined : reply.error.code).toBe('INTERNAL');
    await s.close();
  });

  it.each([
    ['not JSON', 'sk-secret-not-json\n'],
    ['an unknown shape', '{"ok":"yes"}\n'],
  ])('a reply that is %s is INTERNAL and its text is not echoed', async (_what, text) => {
    const s = await server((socket, request) => void request.then(() => socket.end(text)));
    const reply = await send(s.path);
    expect(reply.ok ? undefined : reply.error.code).toBe('INTERNAL');
    expect(JSON.stringify(reply)).not.toContain('sk-secret');
    await s.close();
  });

  it('a close without a reply is DAEMON_UNREACHABLE', async () => {
    const s = await server((socket, request) => void request.then(() => socket.end()));
    const reply = await send(s.path);
    expect(reply.ok ? undefined : reply.error.code).toBe('DAEMON_UNREACHABLE');
    await s.close();
  });

  it('a server that never answers: TIMEOUT at the deadline', async () => {
    const s = await server(() => {});
    const started = Date.now();
    const reply = await send(s.path, 300);
    expect(reply.ok ? undefined : reply.error.code).toBe('TIMEOUT');
    expect(Date.now() - started).toBeLessThan(5_000);
    await s.close();
  });

  it('no reply within the wait: the caller’s own error for it, as data (the shim’s no-answer error)', async () => {
    const s = await server(() => {});
    const noReply = noAnswerError();
    const reply = await sendRequest(s.path, REQUEST, { timeoutMs: 300, transport, noReply });
    expect(reply).toEqual({ v: 1, ok: false, error: noReply });
    // Without one: TIMEOUT, with no fix of the shim's.
    const plain = await send(s.path, 300);
    expect(plain.ok ? undefined : plain.error).toMatchObject({ code: 'TIMEOUT', transient: true });
    expect(plain.ok ? undefined : plain.error.fix).toBeUndefined();
    await s.close();
  });

  it('no socket (ENOENT) and a socket nobody listens on (ECONNREFUSED): DAEMON_UNREACHABLE', async () => {
    const s = await server(() => {});
    // A second name for the socket outlives the server's unlink on close: a stale socket.
    const stale = path.join(path.dirname(s.path), 'stale.sock');
    fs.linkSync(s.path, stale);
    await s.close();
    for (const p of [s.path, stale]) {
      const reply = await send(p);
      expect(reply.ok ? undefined : reply.error.code).toBe('DAEMON_UNREACHABLE');
    }
  });

  it('many exchanges in a row leave nothing open', async () => {
    const s = await server((socket, request) => void request.then(() => socket.end('{"ok":true}\n')));
    for (let i = 0; i < 50; i++) expect((await send(s.path)).ok).toBe(true);
    expect(s.seen).toHaveLength(50);
    await s.close();
  });
});

describe('which transport', () => {
  it('the pipe handle is there on the Node versions CI runs (else the shim pays for node:net)', () => {
    expect(pipeBindings()).toBeDefined();
  });

  it("a shim under Node's permission model, where process.binding is refused, answers through node:net", async () => {
    const s = await server(
      (socket, request) =>
        void request.then(() => socket.end('{"v":1,"ok":true,"profile":"work","value":"sk-perm-1","stale":false}\n')),
    );
    const flag = process.allowedNodeEnvironmentFlags.has('--permission') ? '--permission' : '--experimental-permission';
    const probe = await run(process.execPath, [
      flag,
      '--allow-fs-read=*',
      '-e',
      "try { process.binding('pipe_wrap'); console.log('allowed') } catch (e) { console.log(e.code) }",
    ]);
    expect(probe.stdout.trim()).toBe('ERR_ACCESS_DENIED');
    const env = baseEnv(path.dirname(s.path), { KEYBROKER_SOCKET: s.path });
    const r = await run(process.execPath, [flag, '--allow-fs-read=*', SHIM, 'work'], { env });
    expect({ code: r.code, stdout: r.stdout }).toEqual({ code: 0, stdout: 'sk-perm-1\n' });
    await s.close();
  });

  it('no DEP0111 warning from the shim under --pending-deprecation', async () => {
    const s = await server(
      (socket, request) =>
        void request.then(() => socket.end('{"v":1,"ok":true,"profile":"work","value":"sk-dep-1","stale":false}\n')),
    );
    const env = baseEnv(path.dirname(s.path), { KEYBROKER_SOCKET: s.path, NODE_OPTIONS: '--pending-deprecation' });
    const r = await run(process.execPath, [SHIM, 'work'], { env });
    expect(r).toMatchObject({ code: 0, stdout: 'sk-dep-1\n', stderr: '' });
    await s.close();
  });
});
