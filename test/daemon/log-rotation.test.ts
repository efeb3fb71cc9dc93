// An autostarted daemon's daemon.log stays bounded while it runs: a flood of bad requests (each
// logged at debug level) against a real daemon with a small injected limit leaves daemon.log and
// one daemon.log.1, each within the limit, and a daemon that still answers.
import fs from 'node:fs';
import net from 'node:net';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { LOG_MAX_BYTES_ENV } from '../../src/daemon/log-file.js';
import { sendRequest } from '../../src/client/client.js';
import { run, SHIM, workspace, shellQuote } from '../helpers/daemon.js';

const LIMIT = 8 * 1024;
const { env } = workspace({
  prefix: 'kb-logrot-',
  autostart: true,
  config: 'profiles:\n  default:\n    source: env:KB_ROT_KEY\n',
  env: { KEYBROKER_LOG_LEVEL: 'debug', [LOG_MAX_BYTES_ENV]: String(LIMIT), KB_ROT_KEY: 'sk-rot-5f1e2d' },
});
const socket = env.KEYBROKER_SOCKET!;
const logFile = path.join(path.dirname(socket), 'daemon.log');

/** One connection that sends a line the daemon refuses (and logs). */
function badRequest(): Promise<void> {
  return new Promise((resolve) => {
    const c = net.createConnection({ path: socket }, () => c.end('not a request\n'));
    c.on('data', () => {});
    c.on('close', () => resolve());
    c.on('error', () => resolve());
  });
}

describe('daemon.log rotation', () => {
  it('keeps daemon.log and one daemon.log.1 within the limit under a flood', async () => {
    const first = await run('/bin/sh', ['-c', shellQuote(SHIM)], { env });
    expect(first.code).toBe(0);
    const startSize = fs.statSync(logFile).size;
    // 400 refused requests, each a debug line of well over 100 bytes: several times the limit.
    for (let round = 0; round < 20; round++) await Promise.all(Array.from({ length: 20 }, badRequest));
    const files = fs.readdirSync(path.dirname(socket)).filter((f) => f.startsWith('daemon.log'));
    expect(files.sort()).toEqual(['daemon.log', 'daemon.log.1']);
    expect(fs.statSync(logFile).size).toBeLessThanOrEqual(LIMIT);
    expect(fs.statSync(`${logFile}.1`).size).toBeLessThanOrEqual(LIMIT);
    expect(fs.statSync(logFile).size).toBeGreaterThan(0);
    expect(startSize).toBeLessThanOrEqual(LIMIT);
    // Whole JSON lines on both sides of a rotation, and a daemon that carries on.
    for (const f of [logFile, `${logFile}.1`])
      for (const line of fs.readFileSync(f, 'utf8').trimEnd().split('\n')) expect(() => JSON.parse(line)).not.toThrow();
    expect((await sendRequest(socket, { v: 1, op: 'ping' }, { timeoutMs: 2000 })).ok).toBe(true);
  });
});
