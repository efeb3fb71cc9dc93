// A stand-in daemon for the shim tests: it records each request line and answers as the daemon
// does, through the daemon's own encoders — a frame to a request that asks for one (what the native
// shim sends), JSON otherwise — or with whatever bytes a test gives it.
import fs from 'node:fs';
import net from 'node:net';
import path from 'node:path';
import { encodeFramedReply, type DaemonReply } from '../../src/daemon/handler.js';
import { SecretValue } from '../../src/secret.js';

export interface Recorder {
  /** Each connection's request line, as bytes (latin1 keeps every byte). */
  requests: string[];
  close(): Promise<void>;
}

/**
 * What the stand-in daemon answers: a reply object (a frame or JSON, as the request asked), bytes
 * as they are, null to hang up; the same to every request, or by request line.
 */
export type Reply = Buffer | null | Record<string, unknown>;
export type Answer = Reply | ((line: string) => Reply);

export const asksForFrame = (line: string): boolean => line.endsWith(',"framed":true}');
/** A get line as the native shim sends it: the Node shim's, asking for a frame. */
export const framed = (line: string): string =>
  line.includes('"op":"get"') ? line.replace(/}$/, ',"framed":true}') : line;

/** A reply object as the daemon writes it: through encodeFramedReply when the request asked. */
function encode(line: string, reply: Record<string, unknown>): Buffer {
  if (asksForFrame(line)) {
    const withSecret =
      typeof reply.value === 'string' ? { ...reply, value: SecretValue.fromString(reply.value) } : reply;
    const frame = encodeFramedReply({ v: 1, ...withSecret } as unknown as DaemonReply);
    if (frame) return frame;
  }
  return Buffer.from(`${JSON.stringify({ v: 1, ...reply })}\n`);
}

/** A stand-in daemon: records request lines and answers each with `answer`. */
export async function recordingServer(socketPath: string, answer: Answer): Promise<Recorder> {
  fs.mkdirSync(path.dirname(socketPath), { recursive: true, mode: 0o700 });
  const requests: string[] = [];
  const server = net.createServer({ allowHalfOpen: true }, (conn) => {
    let got = Buffer.alloc(0);
    let answered = false;
    conn.on('error', () => {});
    conn.on('data', (d: Buffer) => {
      got = Buffer.concat([got, d]);
      const nl = got.indexOf(0x0a);
      if (nl === -1 || answered) return;
      answered = true;
      const line = got.subarray(0, nl).toString('latin1');
      requests.push(line);
      const reply = typeof answer === 'function' ? answer(line) : answer;
      if (reply === null) conn.destroy();
      else conn.end(Buffer.isBuffer(reply) ? reply : encode(line, reply));
    });
  });
  await new Promise<void>((resolve) => server.listen(socketPath, resolve));
  return { requests, close: () => new Promise((resolve) => server.close(() => resolve())) };
}
