// Per-directory profiles end to end: the real daemon, and the real shim run (through sh -c, as
// Claude Code runs it) from several working directories. The shim is the one setup claude writes
// (the native fast path where it was built): what is under test is the daemon's choice from the
// working directory the shim sends, and native-parity.test.ts holds both shims to sending the
// same one.
import fs from 'node:fs';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { GetReply, StatusReply } from '../../src/protocol/messages.js';
import { CLI, privateTempDir, run, SETUP_SHIM, startDaemon, type DaemonHandle, shellQuote } from '../helpers/daemon.js';
import { CLAUDE_ENV, startFakeClaude } from '../helpers/fake-claude.js';

let d: DaemonHandle;
let code: string;

// The layout, under the daemon's HOME (its temp dir):
//   code/acme        → work       code/acme/oss-fork → personal (longer match wins)
//   code/acme-tools  → nothing (shares a prefix with code/acme, not a path segment)
//   link-to-acme     → a symlink to code/acme
//   real-oss         ← code/oss is a symlink to it; the config names the symlink
beforeAll(async () => {
  const dir = privateTempDir();
  code = path.join(dir, 'code');
  fs.mkdirSync(path.join(code, 'acme', 'api', 'src'), { recursive: true });
  fs.mkdirSync(path.join(code, 'acme', 'oss-fork', 'lib'), { recursive: true });
  fs.mkdirSync(path.join(code, 'acme-tools'), { recursive: true });
  fs.mkdirSync(path.join(dir, 'real-oss', 'pkg'), { recursive: true });
  fs.symlinkSync(path.join(dir, 'real-oss'), path.join(code, 'oss'));
  fs.symlinkSync(path.join(code, 'acme'), path.join(dir, 'link-to-acme'));
  fs.writeFileSync(path.join(dir, 'work.key'), 'sk-work');
  fs.writeFileSync(path.join(dir, 'personal.key'), 'sk-personal');
  d = await startDaemon({
    dir,
    config: [
      'directories:',
      '  ~/code/acme: work',
      '  ~/code/acme/oss-fork: personal',
      '  ~/code/oss: personal',
      'profiles:',
      '  default:',
      '    source: env:KB_DEFAULT_KEY',
      '  work:',
      '    source: exec:echo x >> ./work.count; cat ./work.key',
      '    ttl: 1h',
      '  personal:',
      '    source: exec:echo x >> ./personal.count; cat ./personal.key',
      '    ttl: 1h',
    ].join('\n'),
    env: { KB_DEFAULT_KEY: 'sk-default' },
  });
});
afterAll(async () => {
  await d.stop();
  fs.rmSync(d.dir, { recursive: true, force: true });
});

const shimIn = (cwd: string, args = '') =>
  run('/bin/sh', ['-c', `${shellQuote(SETUP_SHIM)} ${args}`], { env: d.env, cwd });

describe('the shim without a profile argument', () => {
  it.each([
    ['code/acme', 'sk-work'],
    ['code/acme/api/src', 'sk-work'],
    ['code/acme/oss-fork', 'sk-personal'],
    ['code/acme/oss-fork/lib', 'sk-personal'],
    ['code/acme-tools', 'sk-default'],
    ['.', 'sk-default'],
  ])('in %s gets %s', async (dir, key) => {
    expect(await shimIn(path.join(d.dir, dir))).toMatchObject({ code: 0, stdout: `${key}\n`, stderr: '' });
  });

  it('follows symlinks on both sides: a linked working directory, and a configured directory that is a link', async () => {
    expect((await shimIn(path.join(d.dir, 'link-to-acme', 'api'))).stdout).toBe('sk-work\n');
    // code/oss (configured) is a link to real-oss: working in the real directory still matches.
    expect((await shimIn(path.join(d.dir, 'real-oss', 'pkg'))).stdout).toBe('sk-personal\n');
    expect((await shimIn(path.join(code, 'oss', 'pkg'))).stdout).toBe('sk-personal\n');
  });

  it('an explicit profile argument wins over the directory', async () => {
    expect((await shimIn(path.join(code, 'acme', 'api'), 'personal')).stdout).toBe('sk-personal\n');
    expect((await shimIn(path.join(code, 'acme-tools'), 'work')).stdout).toBe('sk-work\n');
  });

  it('status lists the directories as written and as resolved', async () => {
    const chosen = (await d.request({ v: 1, op: 'status' })) as StatusReply;
    expect(chosen.directories!.map((e) => [e.dir, e.profile])).toEqual([
      ['~/code/acme', 'work'],
      ['~/code/acme/oss-fork', 'personal'],
      ['~/code/oss', 'personal'],
    ]);
    expect(chosen.directories![2]!.path).toBe(fs.realpathSync(path.join(d.dir, 'real-oss')));
  });
});

describe('keybroker status', () => {
  it('says which profile a helper without a profile argument gets in this directory, and why', async () => {
    const inAcme = await run(process.execPath, [CLI, 'status'], { env: d.env, cwd: path.join(code, 'acme', 'api') });
    expect(inAcme.stdout).toMatch(/^here {5}~\/code\/acme\/api → work \(directories: ~\/code\/acme\)/m);
    const elsewhere = await run(process.execPath, [CLI, 'status'], { env: d.env, cwd: path.join(code, 'acme-tools') });
    expect(elsewhere.stdout).toMatch(/^here {5}~\/code\/acme-tools → default /m);
  });
});

describe('keybroker get', () => {
  it('uses the same rule and reports the profile and why', async () => {
    const inAcme = await run(process.execPath, [CLI, 'get', '--which'], {
      env: d.env,
      cwd: path.join(code, 'acme', 'api'),
    });
    expect(inAcme).toMatchObject({
      code: 0,
      stdout: 'sk-work\n',
      stderr: 'keybroker: profile work (directories: ~/code/acme)\n',
    });
    const named = await run(process.execPath, [CLI, 'get', 'personal'], { env: d.env, cwd: path.join(code, 'acme') });
    expect(named.stdout).toBe('sk-personal\n');
    const elsewhere = await run(process.execPath, [CLI, 'get'], { env: d.env, cwd: d.dir });
    expect(elsewhere.stdout).toBe('sk-default\n');
  });

  it('the reply names the profile served and how it was chosen', async () => {
    const reply = (await d.request({ v: 1, op: 'get', cwd: path.join(code, 'acme', 'oss-fork', 'lib') })) as GetReply;
    expect(reply).toMatchObject({
      ok: true,
      profile: 'personal',
      chosenBy: 'directory',
      directory: '~/code/acme/oss-fork',
    });
    expect(
      await d.request({ v: 1, op: 'get', profile: 'work', cwd: path.join(code, 'acme', 'oss-fork') }),
    ).toMatchObject({ ok: true, profile: 'work', chosenBy: 'argument' });
    expect(await d.request({ v: 1, op: 'get', cwd: '/' })).toMatchObject({
      ok: true,
      profile: 'default',
      chosenBy: 'default',
    });
    expect(await d.request({ v: 1, op: 'get' })).toMatchObject({ ok: true, profile: 'default', chosenBy: 'default' });
  });

  it('refuses a relative or oversized cwd', async () => {
    expect(await d.request({ v: 1, op: 'get', cwd: 'code/acme' })).toMatchObject({
      ok: false,
      error: { code: 'BAD_REQUEST' },
    });
    expect(await d.request({ v: 1, op: 'get', cwd: `/${'a'.repeat(5000)}` })).toMatchObject({
      ok: false,
      error: { code: 'BAD_REQUEST' },
    });
  });
});

describe('the 401 inference per profile', () => {
  it('two Claude Code sessions in two projects each get their own profile, and a repeat refetches only that profile', async () => {
    const count = (p: string): number => fs.readFileSync(path.join(d.dir, `${p}.count`), 'utf8').split('\n').length - 1;
    const acme = startFakeClaude(d.dir, { ...d.env, ...CLAUDE_ENV }, 'claude', path.join(code, 'acme', 'api'));
    const oss = startFakeClaude(d.dir, { ...d.env, ...CLAUDE_ENV }, 'claude', path.join(d.dir, 'real-oss'));
    try {
      expect((await acme.callHelper(shellQuote(SETUP_SHIM))).stdout).toBe('sk-work\n');
      expect((await oss.callHelper(shellQuote(SETUP_SHIM))).stdout).toBe('sk-personal\n');
      const work = count('work');
      const personal = count('personal');
      fs.writeFileSync(path.join(d.dir, 'work.key'), 'sk-work-rotated');
      // The acme session's key got a 401: it calls again at once and gets the rotated work key.
      expect((await acme.callHelper(shellQuote(SETUP_SHIM))).stdout).toBe('sk-work-rotated\n');
      expect(count('work')).toBe(work + 1);
      expect(count('personal')).toBe(personal);
    } finally {
      acme.close();
      oss.close();
    }
  });
});

describe('no default profile', () => {
  it('outside every mapped directory, the error names the directory and the fix', async () => {
    const dir = path.join(d.dir, 'nodefault');
    fs.mkdirSync(dir, { recursive: true });
    const other = await startDaemon({
      config: `directories:\n  ${path.join(dir, 'proj')}: only\nprofiles:\n  only:\n    source: env:KB_DEFAULT_KEY\n`,
      env: { KB_DEFAULT_KEY: 'sk-only' },
    });
    try {
      fs.mkdirSync(path.join(dir, 'proj'), { recursive: true });
      const outside = await run('/bin/sh', ['-c', shellQuote(SETUP_SHIM)], { env: other.env, cwd: dir });
      expect(outside.code).toBe(4);
      expect(outside.stdout).toBe('');
      const inside = await run('/bin/sh', ['-c', shellQuote(SETUP_SHIM)], {
        env: other.env,
        cwd: path.join(dir, 'proj'),
      });
      expect(inside).toMatchObject({ code: 0, stdout: 'sk-only\n' });
    } finally {
      await other.stop();
      fs.rmSync(other.dir, { recursive: true, force: true });
    }
  });
});
