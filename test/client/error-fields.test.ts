// Errors as data on the client's side: what the client itself refuses or reports — an unsafe
// socket, an unsafe autostart log, a daemon of another build that refused the request — carries
// its fix as a field of its own, as the daemon's errors do (test/daemon/error-fields.test.ts), for
// renderError to put at the end of the line. Driven against real sockets and directories.
import fs from 'node:fs';
import path from 'node:path';
import { beforeAll, describe, expect, it } from 'vitest';
import { requestWithAutostart } from '../../src/client/autostart.js';
import { restartCommand } from '../../src/client/build-info.js';
import { sendRequest } from '../../src/client/client.js';
import type { Reply, WireError } from '../../src/protocol/messages.js';
import { privateTempDir } from '../helpers/daemon.js';
import { recordingServer } from '../helpers/stand-in-daemon.js';

let root: string;
let n = 0;
beforeAll(() => {
  root = privateTempDir('kb-cfields-');
});

/** A fresh private directory for one case. */
function caseDir(): string {
  const dir = path.join(root, `c${n++}`);
  fs.mkdirSync(dir, { mode: 0o700 });
  return dir;
}

function errorOf(reply: Reply): WireError {
  if (reply.ok) throw new Error('expected an error reply');
  return reply.error;
}

const GET = { v: 1, op: 'get', profile: 'work' } as const;
const options = { cli: '/nonexistent/main.js', timeoutMs: 2_000, startedAt: Date.now(), env: {} };

describe("the client's own errors carry their fix as a field", () => {
  it('a socket directory others can enter: refused, with the chmod as the fix', async () => {
    const dir = path.join(caseDir(), 's');
    fs.mkdirSync(dir);
    fs.chmodSync(dir, 0o755);
    const error = errorOf(await sendRequest(path.join(dir, 'kb.sock'), GET, { timeoutMs: 2_000 }));
    expect(error).toMatchObject({ code: 'UNSAFE_PATH', fix: `run: chmod 700 ${dir}` });
    expect(error.message).not.toContain(error.fix);
  });

  it('a file in place of the socket: refused, with its removal as the fix', async () => {
    const socket = path.join(caseDir(), 'kb.sock');
    fs.writeFileSync(socket, '');
    const error = errorOf(await sendRequest(socket, GET, { timeoutMs: 2_000 }));
    expect(error).toMatchObject({ code: 'UNSAFE_PATH', fix: `run: rm ${socket}` });
    expect(error.message).not.toContain(error.fix);
  });

  it('a symbolic link planted as the daemon log: autostart refuses, with its removal as the fix', async () => {
    const dir = caseDir();
    const log = path.join(dir, 'daemon.log');
    fs.symlinkSync(path.join(dir, 'elsewhere'), log);
    const error = errorOf(await requestWithAutostart(path.join(dir, 'kb.sock'), GET, options));
    expect(error).toMatchObject({ code: 'UNSAFE_PATH', fix: `run: rm ${log}` });
    expect(error.message).not.toContain(error.fix);
    expect(fs.existsSync(path.join(dir, 'elsewhere'))).toBe(false);
  });

  it('a refusal from a daemon of another build: the command that restarts that daemon as the fix', async () => {
    const socket = path.join(caseDir(), 'kb.sock');
    const server = await recordingServer(socket, (line) =>
      line.includes('"ping"')
        ? { ok: true, pong: true, pid: 4242, version: '0.0.1', startedBy: 'systemd' }
        : { ok: false, error: { code: 'BAD_REQUEST', message: 'unknown field "x"' } },
    );
    try {
      const error = errorOf(await requestWithAutostart(socket, GET, options));
      expect(error).toMatchObject({ code: 'BAD_REQUEST', fix: `run: ${restartCommand('systemd')}` });
      expect(error.message).not.toContain(error.fix);
      expect(server.requests).toHaveLength(2);
    } finally {
      await server.close();
    }
  });
});
