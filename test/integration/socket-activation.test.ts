// Socket activation as systemd does it: the built daemon inherits a listening Unix socket as fd 3,
// with LISTEN_FDS=1 and LISTEN_PID set to its own pid (sh sets LISTEN_PID=$$, then execs node, so
// the pid matches), and serves on it instead of binding its own.
import { spawn, type ChildProcess } from 'node:child_process';
import fs from 'node:fs';
import net from 'node:net';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { sendRequest } from '../../src/client/client.js';
import type { GetReply, StatusReply } from '../../src/protocol/messages.js';
import { killWhenDone } from '../helpers/cleanup.js';
import { baseEnv, CLI, privateTempDir, run, SHIMS, waitFor, shellQuote } from '../helpers/daemon.js';

interface Activated {
  dir: string;
  socket: string;
  ownSocket: string;
  child: ChildProcess;
  exited: Promise<number | null>;
  log(): string;
  env: NodeJS.ProcessEnv;
}

/**
 * Bind a listening socket here, hand it to the daemon as fd 3, then let go of it: the parent
 * renames the path before closing its copy (closing a listening Unix socket in Node unlinks the
 * path it was bound to), so only the daemon holds the socket, reachable at `socket`.
 */
async function activate(listenPid: string): Promise<Activated> {
  const dir = privateTempDir('kb-sa-');
  const sockDir = path.join(dir, 'activated');
  fs.mkdirSync(sockDir, { mode: 0o700 });
  const bound = path.join(sockDir, 'bound.sock');
  const socket = path.join(sockDir, 'keybroker.sock');
  const ownSocket = path.join(dir, 'own', 'kb.sock');
  const config = path.join(dir, 'config.yaml');
  fs.writeFileSync(
    config,
    [
      'profiles:',
      '  key:',
      '    source: env:KB_SA_KEY',
      '  fds:',
      '    source: exec:printf "%s-%s" "${LISTEN_FDS:-unset}" "${LISTEN_PID:-unset}"',
      '',
    ].join('\n'),
    { mode: 0o600 },
  );
  const server = net.createServer();
  await new Promise<void>((resolve) => server.listen(bound, resolve));
  const fd = (server as unknown as { _handle: { fd: number } })._handle.fd;
  expect(fd).toBeGreaterThan(2);
  const env = baseEnv(dir, { KEYBROKER_SOCKET: ownSocket, KEYBROKER_CONFIG: config, KB_SA_KEY: 'sk-activated-7e1' });
  const child = spawn(
    '/bin/sh',
    [
      '-c',
      `LISTEN_PID=${listenPid} LISTEN_FDS=1 exec "$0" "$@"`,
      process.execPath,
      CLI,
      'daemon',
      '--log-level',
      'debug',
    ],
    {
      env,
      cwd: dir,
      stdio: ['ignore', 'pipe', 'pipe', fd],
    },
  );
  let log = '';
  child.stdout!.on('data', (d: Buffer) => (log += d.toString()));
  child.stderr!.on('data', (d: Buffer) => (log += d.toString()));
  const exited = new Promise<number | null>((resolve) => child.on('exit', (code) => resolve(code)));
  killWhenDone(child, 'SIGKILL');
  fs.renameSync(bound, socket);
  await new Promise<void>((resolve) => server.close(() => resolve()));
  return { dir, socket, ownSocket, child, exited, log: () => log, env };
}

async function answers(socket: string): Promise<boolean> {
  return (await sendRequest(socket, { v: 1, op: 'ping' }, { timeoutMs: 500 })).ok;
}

describe('socket activation', () => {
  it('serves on the inherited fd 3 and binds nothing of its own', async () => {
    const a = await activate('$$');
    await waitFor(() => answers(a.socket), 10_000, 'the activated daemon to answer');
    expect(fs.existsSync(a.ownSocket)).toBe(false);
    await waitFor(() => a.log().includes('"msg":"listening"'), 5_000, 'the listening log line');
    expect(a.log()).toContain('"inheritedFd":true');

    const reply = (await sendRequest(a.socket, { v: 1, op: 'get', profile: 'key' }, { timeoutMs: 5_000 })) as GetReply;
    expect(reply).toMatchObject({ ok: true, value: 'sk-activated-7e1' });
    const status = (await sendRequest(a.socket, { v: 1, op: 'status' }, { timeoutMs: 5_000 })) as StatusReply;
    expect(status.daemon.pid).toBe(a.child.pid);

    // Each shim, run the way Claude Code runs apiKeyHelper, reaches it on the activated socket.
    for (const { path: shimPath } of SHIMS.filter((s) => s.skip === undefined)) {
      const shim = await run('/bin/sh', ['-c', `${shellQuote(shimPath)} key`], {
        env: { ...a.env, KEYBROKER_SOCKET: a.socket },
      });
      expect(shim.stdout).toBe('sk-activated-7e1\n');
      expect(shim.code).toBe(0);
    }
  });

  it('keeps LISTEN_FDS and LISTEN_PID from the commands its exec: sources run', async () => {
    const a = await activate('$$');
    await waitFor(() => answers(a.socket), 10_000, 'the activated daemon to answer');
    const reply = (await sendRequest(a.socket, { v: 1, op: 'get', profile: 'fds' }, { timeoutMs: 5_000 })) as GetReply;
    expect(reply).toMatchObject({ ok: true, value: 'unset-unset' });
  });

  it('leaves the socket in place on SIGTERM: it belongs to the service manager', async () => {
    const a = await activate('$$');
    await waitFor(() => answers(a.socket), 10_000, 'the activated daemon to answer');
    a.child.kill('SIGTERM');
    expect(await a.exited).toBe(0);
    expect(fs.statSync(a.socket).isSocket()).toBe(true);
  });

  it('ignores fd 3 when LISTEN_PID names another process, and binds its own socket', async () => {
    const a = await activate('1');
    await waitFor(() => answers(a.ownSocket), 10_000, 'the daemon to answer on its own socket');
    // The socket answers from bind on; the "listening" line follows its chmod and stat.
    await waitFor(() => a.log().includes('"msg":"listening"'), 5_000, 'the listening log line');
    expect(a.log()).toContain('"inheritedFd":false');
    const reply = (await sendRequest(
      a.ownSocket,
      { v: 1, op: 'get', profile: 'key' },
      { timeoutMs: 5_000 },
    )) as GetReply;
    expect(reply.value).toBe('sk-activated-7e1');
  });
});
