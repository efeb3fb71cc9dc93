// Errors as data, end to end: the daemon sends an error's profile and fix as fields of its own, on
// the wire and in `status --json`, and its log keeps them apart too. Nothing here reads a message
// for its parts: each field is looked at where it is.
import fs from 'node:fs';
import net from 'node:net';
import path from 'node:path';
import { beforeAll, describe, expect, it } from 'vitest';
import type { ProfileStatus, StatusReply, WireError } from '../../src/protocol/messages.js';
import { privateTempDir, startDaemon, type DaemonHandle } from '../helpers/daemon.js';

let d: DaemonHandle;
let openKey: string;
let mapped: string;

beforeAll(async () => {
  // Resolved: the directories: map and the cwd sent compare real paths.
  const dir = fs.realpathSync(privateTempDir('kb-fields-'));
  // A key file others can read: refused, with a fix (chmod) of its own.
  openKey = path.join(dir, 'open.key');
  fs.writeFileSync(openKey, 'sk-fields-7d1e\n', { mode: 0o644 });
  fs.chmodSync(openKey, 0o644);
  mapped = path.join(dir, 'code', 'acme');
  fs.mkdirSync(mapped, { recursive: true });
  d = await startDaemon({
    dir,
    config: [
      'directories:',
      `  ${mapped}: open`,
      'profiles:',
      '  open:',
      `    source: file:${openKey}`,
      '  failing:',
      // Fails with no fix to offer: only the source knows why.
      "    source: exec:echo 'source says no' >&2; exit 1",
      '',
    ].join('\n'),
  });
});

/** One request line over a raw socket; the reply line as JSON. */
function ask(request: object): Promise<{ ok: boolean; error?: WireError } & Record<string, unknown>> {
  return new Promise((resolve, reject) => {
    const socket = net.createConnection({ path: d.socket, allowHalfOpen: true });
    let reply = '';
    socket.on('connect', () => socket.end(`${JSON.stringify(request)}\n`));
    socket.on('data', (c: Buffer) => (reply += c.toString()));
    socket.on('end', () => resolve(JSON.parse(reply) as never));
    socket.on('error', reject);
  });
}

describe('on the wire', () => {
  it('an error about a named profile carries the profile and the fix as fields', async () => {
    const reply = await ask({ v: 1, op: 'get', profile: 'open' });
    expect(reply.ok).toBe(false);
    const error = reply.error!;
    expect(error).toMatchObject({ code: 'PERMISSION_DENIED', profile: 'open', fix: `run: chmod 600 ${openKey}` });
    // The message says what went wrong, and only that.
    expect(error.message).not.toContain(error.fix);
    expect(error.message).not.toContain('profile "open"');
  });

  it('the profile a directory chose is a field too', async () => {
    const reply = await ask({ v: 1, op: 'get', cwd: mapped });
    expect(reply.error).toMatchObject({ code: 'PERMISSION_DENIED', profile: 'open' });
  });

  it('an error with nothing to suggest has no fix field', async () => {
    const reply = await ask({ v: 1, op: 'get', profile: 'failing' });
    expect(reply.error).toMatchObject({ code: 'SOURCE_ERROR', profile: 'failing' });
    expect(reply.error).not.toHaveProperty('fix');
  });

  it('an unknown profile has no profile field, and a fix when no directory maps the caller', async () => {
    // No directories: entry holds the caller's directory, and there is no "default" profile.
    const reply = await ask({ v: 1, op: 'get', cwd: d.dir });
    expect(reply.error).toMatchObject({ code: 'UNKNOWN_PROFILE', fix: 'add one, or a "default" profile' });
    expect(reply.error).not.toHaveProperty('profile');
    const named = await ask({ v: 1, op: 'get', profile: 'nope' });
    expect(named.error?.code).toBe('UNKNOWN_PROFILE');
    expect(named.error).not.toHaveProperty('profile');
    expect(named.error).not.toHaveProperty('fix');
  });

  it("a refresh's failures carry their fix", async () => {
    const reply = await ask({ v: 1, op: 'refresh', profile: 'open' });
    expect(reply).toMatchObject({
      ok: true,
      failed: [{ profile: 'open', error: { code: 'PERMISSION_DENIED', fix: `run: chmod 600 ${openKey}` } }],
    });
  });
});

describe('in status --json and the log', () => {
  it("a profile's last error keeps its fields", async () => {
    await ask({ v: 1, op: 'get', profile: 'open' });
    const status = await d.cli(['status', '--json']);
    expect(status.code).toBe(0);
    const profiles = (JSON.parse(status.stdout) as StatusReply).profiles;
    const open = profiles.find((p) => p.name === 'open') as ProfileStatus;
    expect(open.lastError).toMatchObject({ code: 'PERMISSION_DENIED', fix: `run: chmod 600 ${openKey}` });
    expect(open.lastError!.message).not.toContain(open.lastError!.fix);
    const failing = profiles.find((p) => p.name === 'failing') as ProfileStatus;
    expect(failing.lastError?.code).toBe('SOURCE_ERROR');
    expect(failing.lastError).not.toHaveProperty('fix');
  });

  it('the daemon log records the error with its fix as a field', async () => {
    await ask({ v: 1, op: 'get', profile: 'open' });
    const records = d
      .log()
      .split('\n')
      .filter((l) => l.startsWith('{'))
      .map((l) => JSON.parse(l) as { profile?: string; err?: Partial<WireError> });
    const failed = records.filter((r) => r.profile === 'open' && r.err?.code === 'PERMISSION_DENIED');
    expect(failed.length).toBeGreaterThan(0);
    for (const r of failed) {
      expect(r.err!.fix).toBe(`run: chmod 600 ${openKey}`);
      expect(r.err!.message).not.toContain(r.err!.fix);
    }
  });
});
