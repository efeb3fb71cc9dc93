// A gateway token (JWT) with an 8-second life under a 1-hour TTL, through the real daemon and shim:
// it is refreshed ahead of its exp and never handed out expired. Real time, bounded: an exec:
// source mints a fresh JWT (exp = now + 8 s) on each fetch; a client reads it over the daemon's
// socket for ~10 s (in this process: what is tested is when the daemon refreshes, and a shim per
// read would cost a Node start each), and the shim reads the expired one.
import fs from 'node:fs';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { GetReply, StatusReply } from '../../src/protocol/messages.js';
import { startDaemon, type DaemonHandle } from '../helpers/daemon.js';
import { mintScript } from '../helpers/jwt.js';

const LIFETIME_S = 8;
const READ_FOR_MS = 10_000;

let d: DaemonHandle;
let minted: string;
let broken: string;

beforeAll(async () => {
  const dir = fs.mkdtempSync('/tmp/kb-jwt-');
  fs.chmodSync(dir, 0o700);
  minted = path.join(dir, 'minted.log');
  fs.writeFileSync(path.join(dir, 'mint.cjs'), mintScript(LIFETIME_S, minted));
  // A 2 s token from a source that starts failing once the file `broken` exists.
  broken = path.join(dir, 'broken');
  fs.writeFileSync(
    path.join(dir, 'mint-short.cjs'),
    `if (require('node:fs').existsSync(${JSON.stringify(broken)})) { console.error('gateway down'); process.exit(1); }\n${mintScript(2, path.join(dir, 'short.log'))}`,
  );
  d = await startDaemon({
    dir,
    logLevel: 'trace',
    config: [
      'profiles:',
      '  gateway:',
      `    source: exec:${process.execPath} ./mint.cjs`,
      '    ttl: 1h',
      '    maxStale: 1h',
      '  short:',
      `    source: exec:${process.execPath} ./mint-short.cjs`,
      '    ttl: 1h',
      '    maxStale: 1h',
    ].join('\n'),
  });
});
afterAll(async () => {
  await d.stop();
  fs.rmSync(d.dir, { recursive: true, force: true });
});

const expOf = (token: string): number =>
  (JSON.parse(Buffer.from(token.split('.')[1]!, 'base64url').toString()) as { exp: number }).exp * 1000;

describe('a JWT with an 8 s life under a 1 h TTL', () => {
  it('is refreshed before it expires and never served expired', async () => {
    const served: Array<{ token: string; at: number }> = [];
    const started = Date.now();
    while (Date.now() - started < READ_FOR_MS) {
      const r = await d.request({ v: 1, op: 'get', profile: 'gateway' });
      // Taken after the reply arrived: later than the daemon served it, so a stricter check.
      const at = Date.now();
      expect(r).toMatchObject({ ok: true });
      served.push({ token: (r as GetReply).value, at });
      await new Promise((resolve) => setTimeout(resolve, 150));
    }
    for (const s of served) expect(expOf(s.token)).toBeGreaterThan(s.at);

    const tokens = [...new Set(served.map((s) => s.token))];
    expect(tokens.length).toBeGreaterThanOrEqual(2);
    // Each new token was first served while the one before it was still valid: no gap, no wait.
    for (let i = 1; i < tokens.length; i++) {
      const firstServed = served.find((s) => s.token === tokens[i])!.at;
      expect(firstServed).toBeLessThan(expOf(tokens[i - 1]!));
    }
    const log = d.log();
    expect(log).toMatch(/"reason":"refresh-ahead"[^\n]*"expiryFrom":"jwt"[^\n]*"msg":"fetched"/);
    // Bounded: about one fetch per token lifetime (refresh-ahead at ~75% of ~7 s), not one per read.
    const fetches = fs.readFileSync(minted, 'utf8').trim().split('\n').length;
    expect(fetches).toBeLessThanOrEqual(Math.ceil(READ_FOR_MS / 4_000) + 1);
    expect(served.length).toBeGreaterThan(fetches * 3);

    // Status says how long the value itself has left, next to how long it stays fresh.
    const status = (await d.request({ v: 1, op: 'status' })) as StatusReply;
    const p = status.profiles.find((x) => x.name === 'gateway')!;
    expect(p.valueExpiresInMs).toBeGreaterThan(0);
    expect(p.valueExpiresInMs).toBeLessThanOrEqual(LIFETIME_S * 1000);
    expect(p.expiresInMs).toBeLessThan(p.valueExpiresInMs!);
    const table = (await d.cli(['status'])).stdout;
    const header = table.split('\n').find((l) => l.startsWith('PROFILE'))!;
    expect(header).toMatch(/FRESH FOR\s+EXPIRES IN/);

    // No token, nor its signature, in the daemon's log (traced at the most verbose level).
    for (const token of tokens) {
      expect(log).not.toContain(token);
      expect(log).not.toContain(token.split('.')[2]!);
    }
  });
});

describe('an expired token whose source fails', () => {
  it('is not served stale past its exp: the shim exits 19 (EXPIRED)', async () => {
    const first = await d.request({ v: 1, op: 'get', profile: 'short' });
    expect(first).toMatchObject({ ok: true });
    const token = (first as GetReply).value;
    fs.writeFileSync(broken, '');
    // Real time, bounded: wait out the token's 2 s life (maxStale is 1 h).
    await new Promise((resolve) => setTimeout(resolve, Math.max(0, expOf(token) - Date.now()) + 100));
    const after = await d.shim('short');
    expect(after.code).toBe(19);
    expect(after.stdout).toBe('');
    expect(after.stderr).not.toContain(token.split('.')[2]!);
  });
});
