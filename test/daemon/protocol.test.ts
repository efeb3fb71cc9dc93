// The wire protocol against the real daemon on a real socket: good requests, and every kind of
// bad input — none of which may crash the daemon or hold up a good client.
import fs from 'node:fs';
import net from 'node:net';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { VERSION } from '../../src/client/build-info.js';
import { FRAME_FIELDS } from '../../src/protocol/framed-reply.js';
import { ERROR_CODES } from '../../src/protocol/messages.js';
import { startDaemon, type DaemonHandle } from '../helpers/daemon.js';
import { decodeFrame } from '../helpers/frame.js';

let d: DaemonHandle;
const KEY = 'sk-proto-4f1c2a';

beforeAll(async () => {
  d = await startDaemon({
    config: 'profiles:\n  default:\n    source: env:KB_PROTO_KEY\n',
    env: { KB_PROTO_KEY: KEY },
  });
});
afterAll(async () => {
  await d.stop();
  fs.rmSync(d.dir, { recursive: true, force: true });
});

/** Send raw bytes, optionally half-closing, and collect whatever comes back until close. */
function raw(
  data: Buffer | string,
  options: { end?: boolean; timeoutMs?: number } = {},
): Promise<{ reply: string; bytes: Buffer; closed: boolean }> {
  return new Promise((resolve) => {
    const socket = net.createConnection({ path: d.socket, allowHalfOpen: true });
    const chunks: Buffer[] = [];
    const done = (closed: boolean): void => {
      const bytes = Buffer.concat(chunks);
      resolve({ reply: bytes.toString(), bytes, closed });
    };
    const timer = setTimeout(() => {
      socket.destroy();
      done(false);
    }, options.timeoutMs ?? 5_000);
    socket.on('connect', () => {
      if (data.length > 0) socket.write(data);
      if (options.end !== false) socket.end();
    });
    socket.on('data', (c: Buffer) => chunks.push(c));
    const closed = (): void => {
      clearTimeout(timer);
      socket.destroy();
      done(true);
    };
    // 'end': the daemon closed its side (a client that keeps its own side open sees no 'close').
    socket.on('end', closed);
    socket.on('close', closed);
    socket.on('error', () => {});
  });
}

function parse(line: string): { ok: boolean; error?: { code: string; message: string } } & Record<string, unknown> {
  expect(line.endsWith('\n')).toBe(true);
  expect(line.indexOf('\n')).toBe(line.length - 1);
  return JSON.parse(line) as never;
}

async function stillServes(): Promise<void> {
  const started = Date.now();
  const reply = await d.request({ v: 1, op: 'get', profile: 'default' }, 2_000);
  expect(reply).toMatchObject({ ok: true, value: KEY });
  expect(Date.now() - started).toBeLessThan(1_000);
}

describe('requests', () => {
  it('answers get with the value, its source kind and freshness', async () => {
    const reply = parse((await raw('{"v":1,"op":"get","profile":"default"}\n')).reply);
    expect(reply).toMatchObject({ v: 1, ok: true, profile: 'default', value: KEY, stale: false, source: 'env' });
    expect(reply.expiresInMs).toBeGreaterThan(0);
  });

  it('accepts a consumer that is another agent CLI than Claude Code (consumer.agent)', async () => {
    const consumer = { pid: 9, name: 'codex', claudeCode: false, agent: 'codex', invocation: 'agent-tool' };
    const line = `${JSON.stringify({ v: 1, op: 'get', profile: 'default', consumer })}\n`;
    expect(parse((await raw(line)).reply)).toMatchObject({ ok: true, value: KEY });
  });

  it('accepts a request ended by half-close instead of a newline', async () => {
    expect(parse((await raw('{"v":1,"op":"ping"}')).reply)).toMatchObject({ ok: true, pong: true, pid: d.proc.pid });
  });

  it('answers status without any value', async () => {
    const { reply } = await raw('{"v":1,"op":"status"}\n');
    expect(reply).not.toContain(KEY);
    const status = parse(reply);
    expect(status).toMatchObject({ ok: true, daemon: { pid: d.proc.pid, socket: d.socket } });
  });

  it('answers refresh for one profile and for all', async () => {
    expect(parse((await raw('{"v":1,"op":"refresh","profile":"default"}\n')).reply)).toMatchObject({
      ok: true,
      refreshed: ['default'],
      failed: [],
    });
    expect(parse((await raw('{"v":1,"op":"refresh","all":true}\n')).reply)).toMatchObject({
      ok: true,
      refreshed: ['default'],
    });
  });

  it('names the profiles it has when asked for an unknown one', async () => {
    const reply = parse((await raw('{"v":1,"op":"get","profile":"nope"}\n')).reply);
    expect(reply.error).toEqual({
      code: 'UNKNOWN_PROFILE',
      message: `no profile "nope" in ${d.configPath} (profiles: default)`,
      transient: false,
    });
  });
});

describe('framed replies (what the native shim asks for)', () => {
  it('answers a framed get with the value and the daemon identity, as length-prefixed fields', async () => {
    const { bytes, closed } = await raw('{"v":1,"op":"get","profile":"default","framed":true}\n');
    expect(closed).toBe(true);
    const frame = decodeFrame(bytes);
    expect(frame).toMatchObject({ value: KEY, 'daemon.pid': String(d.proc.pid), 'daemon.version': VERSION });
    expect(Object.keys(frame).every((k) => (FRAME_FIELDS as readonly string[]).includes(k))).toBe(true);
    expect(frame['warning.message']).toBeUndefined();
  });

  it('answers a framed get that fails with the error code, its exit status and message', async () => {
    const frame = decodeFrame((await raw('{"v":1,"op":"get","profile":"nope","framed":true}\n')).bytes);
    expect(frame['error.code']).toBe('UNKNOWN_PROFILE');
    expect(frame['error.status']).toBe(String(ERROR_CODES.UNKNOWN_PROFILE));
    expect(frame['error.message']).toBeTruthy();
    expect(frame.value).toBeUndefined();
  });

  it('frames the refusal of a request that asked for a frame, so a newer client can read it', async () => {
    const frame = decodeFrame((await raw('{"v":1,"op":"get","framed":true,"future":1}\n')).bytes);
    expect(frame['error.code']).toBe('BAD_REQUEST');
    expect(frame['error.status']).toBe(String(ERROR_CODES.BAD_REQUEST));
    await stillServes();
  });

  it.each([
    ['framed: false', '{"v":1,"op":"get","profile":"default","framed":false}\n'],
    ['a line that is not JSON', '{"framed":true\n'],
  ])('answers in JSON otherwise (%s)', async (_what, line) => {
    expect(parse((await raw(line)).reply)).toHaveProperty('ok');
  });
});

describe('bad input', () => {
  const cases: Array<[string, Buffer | string, RegExp]> = [
    ['invalid JSON', '{"v":1,"op":\n', /not valid JSON/],
    [
      'invalid UTF-8',
      Buffer.concat([Buffer.from('{"v":1,"op":"get","profile":"'), Buffer.from([0xc3, 0x28]), Buffer.from('"}\n')]),
      /not valid UTF-8/,
    ],
    ['a JSON array', '[1,2]\n', /must be a JSON object/],
    ['a missing version', '{"op":"ping"}\n', /unsupported protocol version null/],
    ['a future version', '{"v":2,"op":"ping"}\n', /unsupported protocol version 2/],
    ['an unknown op', '{"v":1,"op":"delete"}\n', /unknown op "delete": use one of get, refresh, forget, status, ping/],
    ['an unknown field', '{"v":1,"op":"ping","sudo":true}\n', /unknown field "sudo"/],
    ['a field of the wrong type', '{"v":1,"op":"get","profile":7}\n', /profile/],
    [
      'a malformed consumer',
      '{"v":1,"op":"get","profile":"default","consumer":{"pid":-1,"claudeCode":true}}\n',
      /consumer\.pid/,
    ],
    [
      'an agent it does not know',
      '{"v":1,"op":"get","profile":"default","consumer":{"pid":9,"claudeCode":false,"agent":"gemini"}}\n',
      /consumer\.agent/,
    ],
    ['refresh without a target', '{"v":1,"op":"refresh"}\n', /needs a profile or "all"/],
    ['binary garbage', Buffer.from([0, 1, 2, 0xff, 0xfe, 10]), /not valid UTF-8|not valid JSON/],
  ];
  it.each(cases)('answers %s with BAD_REQUEST and keeps serving', async (_name, data, message) => {
    const { reply, closed } = await raw(data);
    const parsed = parse(reply);
    expect(parsed.ok).toBe(false);
    expect(parsed.error?.code).toBe('BAD_REQUEST');
    expect(parsed.error?.message).toMatch(message);
    expect(closed).toBe(true);
    await stillServes();
  });

  it('refuses a request over 64 KiB without reading it all', async () => {
    const huge = `{"v":1,"op":"get","profile":"${'a'.repeat(70 * 1024)}"}\n`;
    const { reply } = await raw(huge);
    expect(parse(reply).error).toMatchObject({ code: 'BAD_REQUEST', message: 'request exceeds 65536 bytes' });
    await stillServes();
  });

  it('closes a connection that never sends a newline, after the idle timeout', async () => {
    const started = Date.now();
    const { reply, closed } = await raw('{"v":1,"op":"ping"', { end: false, timeoutMs: 10_000 });
    expect(closed).toBe(true);
    expect(parse(reply).error?.message).toMatch(/no complete request line within 5000 ms/);
    expect(Date.now() - started).toBeGreaterThanOrEqual(4_500);
  });

  it('cuts off a client that trickles its request a byte at a time: 5 s from accept, not from the last byte', async () => {
    const started = Date.now();
    const result = await new Promise<{ reply: string; closedAfterMs: number | undefined }>((resolve) => {
      const socket = net.createConnection({ path: d.socket, allowHalfOpen: true });
      const line = '{"v":1,"op":"ping"}'.padEnd(40, ' ');
      let sent = 0;
      let reply = '';
      // One byte a second, far below any inactivity timeout; the request is never complete.
      const trickle = setInterval(() => {
        if (sent < line.length - 1) socket.write(line[sent++]!);
      }, 1_000);
      const finish = (closedAfterMs: number | undefined): void => {
        clearInterval(trickle);
        clearTimeout(giveUp);
        socket.destroy();
        resolve({ reply, closedAfterMs });
      };
      const giveUp = setTimeout(() => finish(undefined), 12_000);
      socket.on('data', (c: Buffer) => (reply += c.toString()));
      socket.on('end', () => finish(Date.now() - started));
      socket.on('close', () => finish(Date.now() - started));
      socket.on('error', () => {});
    });
    expect(result.closedAfterMs).toBeDefined();
    expect(result.closedAfterMs!).toBeGreaterThanOrEqual(4_500);
    expect(result.closedAfterMs!).toBeLessThan(8_000);
    expect(parse(result.reply).error?.code).toBe('BAD_REQUEST');
    await stillServes();
  });

  it('still answers a good request at once while hundreds of idle connections are open', async () => {
    const idle: net.Socket[] = [];
    await Promise.all(
      Array.from(
        { length: 300 },
        () =>
          new Promise<void>((resolve) => {
            const s = net.createConnection({ path: d.socket }, () => resolve());
            s.on('error', () => resolve());
            idle.push(s);
          }),
      ),
    );
    try {
      await stillServes();
      // (The shim `setup claude` writes: native where built, ~5 ms of CPU against ~0.15 s.)
      const shim = await d.shim('');
      expect(shim).toMatchObject({ code: 0, stdout: `${KEY}\n` });
    } finally {
      for (const s of idle) s.destroy();
    }
    await stillServes();
  });

  it('ignores what a client sends after its request line', async () => {
    const { reply } = await raw('{"v":1,"op":"ping"}\n{"v":1,"op":"status"}\n');
    expect(reply.trim().split('\n')).toHaveLength(1);
    expect(parse(reply)).toMatchObject({ pong: true });
  });

  it('survives clients that disconnect before their reply', async () => {
    for (let i = 0; i < 50; i++) {
      const s = net.createConnection({ path: d.socket }, () => {
        s.write('{"v":1,"op":"status"}\n');
        s.destroy();
      });
      s.on('error', () => {});
    }
    await new Promise((r) => setTimeout(r, 200));
    await stillServes();
    expect(d.proc.exitCode).toBeNull();
  });

  it('logs bad requests without echoing them', async () => {
    // Its own bad request, with a field name found nowhere else, so no other test's traffic counts.
    const field = `sudo-${process.pid}-${Date.now()}`;
    const refusals = (): number =>
      d
        .log()
        .split('\n')
        .filter((l) => l.includes('"ok":false')).length;
    const before = refusals();
    const { reply } = await raw(`{"v":1,"op":"ping","${field}":true}\n`);
    expect(parse(reply).error?.code).toBe('BAD_REQUEST');
    const deadline = Date.now() + 5_000;
    while (refusals() === before) {
      if (Date.now() > deadline) throw new Error('the daemon did not log the refused request');
      await new Promise((r) => setTimeout(r, 10));
    }
    expect(d.log()).not.toContain(field);
    expect(fs.existsSync(path.join(d.dir, 'sock'))).toBe(true);
  });
});
