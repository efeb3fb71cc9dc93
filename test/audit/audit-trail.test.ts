// The audit trail end to end: a real daemon, the real shim run by a stand-in Claude Code in one
// project and by a script in another, `keybroker get` and `refresh`; then the file as stored and
// as `keybroker audit` prints it. The shim is the one `setup claude` writes (the native one where
// it was built: test/shim/ holds the two to the same behaviour); daemon state is asked over the socket.
import { spawn } from 'node:child_process';
import { createHash } from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';
import { beforeAll, describe, expect, it } from 'vitest';
import type { AuditRecord } from '../../src/audit/audit-record.js';
import {
  daemonStatus,
  CLI,
  privateTempDir,
  run,
  SETUP_SHIM,
  sharedDaemon,
  startDaemon,
  waitFor,
  shellQuote,
} from '../helpers/daemon.js';
import { CLAUDE_ENV, startFakeClaude } from '../helpers/fake-claude.js';

const WORK_KEY = 'sk-work-audit-51f0e2';
const OSS_KEY = 'sk-oss-audit-9a7c33';
const d = sharedDaemon(() => {
  const dir = privateTempDir();
  fs.mkdirSync(path.join(dir, 'code', 'acme', 'api'), { recursive: true });
  fs.mkdirSync(path.join(dir, 'code', 'oss'), { recursive: true });
  fs.writeFileSync(path.join(dir, 'work.key'), WORK_KEY);
  return {
    dir,
    config: [
      'directories:',
      '  ~/code/acme: work',
      '  ~/code/oss: oss',
      'profiles:',
      '  work:',
      '    source: exec:cat ./work.key',
      '  oss:',
      '    source: env:KB_OSS_KEY',
    ].join('\n'),
    env: { KB_OSS_KEY: OSS_KEY },
  };
});
let records: AuditRecord[];
let text: string;
let stateDir: string;

beforeAll(async () => {
  const { dir } = d;
  stateDir = path.join(d.env.XDG_STATE_HOME!, 'keybroker');
  const claude = startFakeClaude(dir, { ...d.env, ...CLAUDE_ENV }, 'claude', path.join(dir, 'code', 'acme', 'api'));
  // Start-up, then two quick repeats: the first looks like a 401 (refetched, same key served
  // once more), the second is a rejection of that same key (KEY_REJECTED).
  expect((await claude.callHelper(shellQuote(SETUP_SHIM))).stdout).toBe(`${WORK_KEY}\n`);
  expect((await claude.callHelper(shellQuote(SETUP_SHIM))).stdout).toBe(`${WORK_KEY}\n`);
  expect((await claude.callHelper(shellQuote(SETUP_SHIM))).code).toBe(7);
  claude.close();
  for (let i = 0; i < 2; i++)
    expect(
      (await run('/bin/sh', ['-c', shellQuote(SETUP_SHIM)], { env: d.env, cwd: path.join(dir, 'code', 'oss') })).stdout,
    ).toBe(`${OSS_KEY}\n`);
  expect((await d.cli(['get', 'work'])).stdout).toBe(`${WORK_KEY}\n`);
  expect((await d.cli(['refresh', 'oss'])).code).toBe(0);
  // (A profile nobody configured, asked by name from elsewhere: the shim, a Node start fewer than
  // the CLI, whose own exit status for it test/cli holds.)
  expect((await run('/bin/sh', ['-c', `${shellQuote(SETUP_SHIM)} nope`], { env: d.env })).code).toBe(4);
  // Appended within a flush interval, without a request to prompt it.
  await waitFor(async () => ((await daemonStatus(d)).audit?.written ?? 0) >= 8, 5_000, 'the audit trail to be written');
  text = fs.readFileSync(path.join(stateDir, 'audit.jsonl'), 'utf8');
  records = text
    .trimEnd()
    .split('\n')
    .map((l) => JSON.parse(l) as AuditRecord);
});
describe('the audit file', () => {
  it('is private: file 0600, directory 0700', () => {
    expect(fs.statSync(path.join(stateDir, 'audit.jsonl')).mode & 0o777).toBe(0o600);
    expect(fs.lstatSync(stateDir).mode & 0o777).toBe(0o700);
  });

  it('has one line per get, refresh and rejection, with who, from where, how chosen and what happened', () => {
    const acme = path.join(d.dir, 'code', 'acme', 'api');
    const oss = path.join(d.dir, 'code', 'oss');
    expect(
      records.map((r) => [
        r.op,
        r.profile,
        r.chosenBy,
        r.cwd === acme ? 'acme' : r.cwd === oss ? 'oss' : r.cwd === undefined ? '-' : 'other',
        r.outcome,
        r.error ?? '',
      ]),
    ).toEqual([
      ['get', 'work', 'directory', 'acme', 'fetched', ''],
      ['get', 'work', 'directory', 'acme', 'refetched', ''],
      ['get', 'work', 'directory', 'acme', 'error', 'KEY_REJECTED'],
      ['get', 'oss', 'directory', 'oss', 'fetched', ''],
      ['get', 'oss', 'directory', 'oss', 'hit', ''],
      ['get', 'work', 'argument', 'other', 'hit', ''],
      ['refresh', 'oss', 'argument', '-', 'fetched', ''],
      ['get', 'nope', 'argument', 'other', 'error', 'UNKNOWN_PROFILE'],
    ]);
    expect(records[0]).toMatchObject({
      directory: '~/code/acme',
      source: 'exec',
      consumer: { name: 'claude', claudeCode: true },
    });
    expect(records[3]!.consumer).toMatchObject({ claudeCode: false });
    // The rejected key is named by its fingerprint, the same one it was served under.
    expect(records[1]!.rejected).toEqual({ fingerprint: records[0]!.fingerprint });
    expect(records[2]!.rejected).toEqual({ fingerprint: records[0]!.fingerprint });
    expect(records[0]!.fingerprint).toMatch(/^[0-9a-f]{12}$/);
    expect(records[3]!.fingerprint).not.toBe(records[0]!.fingerprint);
    expect(Date.parse(records[0]!.time)).toBeGreaterThan(Date.now() - 60_000);
  });

  it('holds no value, and no unsalted hash of one (sha256, sha1, md5; hex or base64, whole or cut to 12)', () => {
    for (const value of [WORK_KEY, OSS_KEY]) {
      expect(text).not.toContain(value);
      for (const algo of ['sha256', 'sha1', 'md5']) {
        for (const encoding of ['hex', 'base64', 'base64url'] as const) {
          const digest = createHash(algo).update(value).digest(encoding);
          expect(text).not.toContain(digest.slice(0, 12));
        }
      }
    }
  });
});

describe('keybroker audit', () => {
  it('--json prints the records as stored, newest last; --profile filters', async () => {
    const all = await d.cli(['audit', '--json']);
    expect(all.code).toBe(0);
    expect(
      all.stdout
        .trimEnd()
        .split('\n')
        .map((l) => (JSON.parse(l) as AuditRecord).time),
    ).toEqual(records.map((r) => r.time));
    const oss = await d.cli(['audit', '--json', '--profile', 'oss']);
    expect(
      oss.stdout
        .trimEnd()
        .split('\n')
        .map((l) => (JSON.parse(l) as AuditRecord).profile),
    ).toEqual(['oss', 'oss', 'oss']);
  });

  it('stops quietly when its reader goes away (keybroker audit --json | head -1)', async () => {
    const child = spawn(process.execPath, [CLI, 'audit', '--json'], { env: d.env, stdio: ['ignore', 'pipe', 'pipe'] });
    child.stdout.destroy();
    let stderr = '';
    child.stderr.on('data', (c: Buffer) => (stderr += c.toString()));
    const code = await new Promise<number | null>((r) => child.on('close', r));
    expect(stderr).toBe('');
    expect(code).toBe(0);
  });

  it('prints a table by default, and --since leaves out older records', async () => {
    const table = await d.cli(['audit', '--since', '1h']);
    expect(table.code).toBe(0);
    const lines = table.stdout.trimEnd().split('\n');
    expect(lines[0]!.split(/\s{2,}/)).toEqual([
      'TIME (UTC)',
      'OP',
      'PROFILE',
      'CHOSEN BY',
      'CONSUMER',
      'PEER',
      'CWD',
      'OUTCOME',
      'VERSION',
    ]);
    expect(lines).toHaveLength(records.length + 2);
    expect(lines[1]).toContain('dir ~/code/acme');
    expect(lines[1]).toContain('~/code/acme/api');
    expect(lines[1]).toContain(`fp ${records[0]!.fingerprint}`);
    const none = await d.cli(['audit', '--json', '--since', '1ms']);
    expect(none).toMatchObject({ code: 0, stdout: '' });
    expect((await d.cli(['audit', '--since', 'soon'])).code).toBe(2);
  });
});

describe('audit: false', () => {
  it('writes no trail; status says it is off', async () => {
    const off = await startDaemon({
      config: 'audit: false\nprofiles:\n  default:\n    source: env:KB_OSS_KEY\n',
      env: { KB_OSS_KEY: OSS_KEY },
    });
    expect(await off.request({ v: 1, op: 'get', profile: 'default' })).toMatchObject({ ok: true, value: OSS_KEY });
    expect((await daemonStatus(off)).audit).toMatchObject({ enabled: false, written: 0, dropped: 0 });
    await off.stop();
    expect(fs.existsSync(path.join(off.env.XDG_STATE_HOME!, 'keybroker', 'audit.jsonl'))).toBe(false);
  });
});

describe('a failing trail never fails a get', () => {
  it('with the state directory open to others, gets are served and status counts the drops', async () => {
    const dir = privateTempDir();
    fs.mkdirSync(path.join(dir, 'state', 'keybroker'), { recursive: true, mode: 0o755 });
    fs.chmodSync(path.join(dir, 'state', 'keybroker'), 0o755);
    const bad = await startDaemon({
      dir,
      config: 'profiles:\n  default:\n    source: env:KB_OSS_KEY\n',
      env: { KB_OSS_KEY: OSS_KEY },
    });
    expect(await bad.request({ v: 1, op: 'get', profile: 'default' })).toMatchObject({ ok: true, value: OSS_KEY });
    expect((await daemonStatus(bad)).audit).toMatchObject({
      enabled: true,
      written: 0,
      dropped: 1,
      lastError: { code: 'UNSAFE_PATH' },
    });
    const human = await bad.cli(['status']);
    expect(human.stdout).toMatch(/^warning {2}audit trail: /m);
  });
});
