// keyring: end to end: a real daemon, real shims and the real CLI against a real Secret Service
// (gnome-keyring-daemon on a private session bus), entries checked with secret-tool; and what
// happens with no bus, a bus without a Secret Service, and a locked keyring.
import { spawn } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { beforeAll, describe, expect, it } from 'vitest';
import type { StatusReply } from '../../src/protocol/messages.js';
import { killWhenDone } from '../helpers/cleanup.js';
import {
  CLI,
  filesHolding,
  privateTempDir,
  SHIMS,
  startDaemon,
  waitFor,
  type DaemonHandle,
} from '../helpers/daemon.js';
import { SECRET_SERVICE_SKIP, startBus, startSecretService, type SecretService } from '../helpers/secret-service.js';

const SCRIPT = ['/usr/bin/script', '/bin/script'].find((p) => fs.existsSync(p));
const root = privateTempDir('kb-kr-');

const CONFIG = `profiles:
  default:
    source: keyring:default
  work:
    source: keyring://openai/ada
  plain:
    source: env:HOME
`;

async function daemon(env: NodeJS.ProcessEnv, config = CONFIG): Promise<DaemonHandle> {
  return startDaemon({ config, env, dir: fs.mkdtempSync(path.join(root, 'd-')) });
}

function fetches(status: StatusReply, profile: string): number {
  return status.profiles.find((p) => p.name === profile)!.fetches;
}

describe.skipIf(SECRET_SERVICE_SKIP)('keyring: with a Secret Service', () => {
  let ss: SecretService;
  beforeAll(async () => {
    ss = await startSecretService(path.join(root, 'ss'));
  });

  describe.each(SHIMS)('$name shim', ({ path: shim, skip }) => {
    it.skipIf(skip)('serves an entry secret-tool stored (keyring://SERVICE/ACCOUNT)', async () => {
      const stored = await ss.secretTool(
        ['store', '--label=OpenAI', 'service', 'openai', 'username', 'ada'],
        'sk-openai-7c1\n',
      );
      expect(stored.code).toBe(0);
      const d = await daemon(ss.env);
      expect(await d.shim('work', {}, shim)).toMatchObject({ code: 0, stdout: 'sk-openai-7c1\n' });
    });
  });

  it('a missing entry is NOT_FOUND (exit 10) and says: keybroker key set PROFILE', async () => {
    const d = await daemon(ss.env, 'profiles:\n  missing:\n    source: keyring:never-set\n');
    const r = await d.shim('missing');
    expect(r.code).toBe(10);
    expect(r.stderr).toContain('keybroker key set missing');
  });

  it('key set stores what secret-tool lookup reads; the running daemon serves it at once, without a fetch', async () => {
    const d = await daemon(ss.env);
    await d.cli(['key', 'delete', 'default']);
    expect((await d.shim('default')).code).toBe(10);
    const set = await d.cli(['key', 'set', 'default'], {}, 'sk-set-one\n');
    expect(set.code).toBe(0);
    expect(await ss.secretTool(['lookup', 'service', 'keybroker', 'username', 'default'])).toMatchObject({
      code: 0,
      stdout: 'sk-set-one',
    });
    const before = fetches((await d.request({ v: 1, op: 'status' })) as StatusReply, 'default');
    expect(await d.shim('default')).toMatchObject({ code: 0, stdout: 'sk-set-one\n' });
    // A second set while the first value is fresh in the cache: served from the next request.
    expect((await d.cli(['key', 'set', 'default'], {}, 'sk-set-two')).code).toBe(0);
    expect(await d.shim('default')).toMatchObject({ code: 0, stdout: 'sk-set-two\n' });
    expect(fetches((await d.request({ v: 1, op: 'status' })) as StatusReply, 'default')).toBe(before);
    // Neither value is in the daemon's log.
    expect(d.log()).not.toContain('sk-set-');
  });

  it('key delete removes the entry and makes the daemon drop its value: NOT_FOUND after', async () => {
    const d = await daemon(ss.env);
    expect((await d.cli(['key', 'set', 'default'], {}, 'sk-to-delete')).code).toBe(0);
    expect((await d.shim('default')).stdout).toBe('sk-to-delete\n');
    expect((await d.cli(['key', 'delete', 'default'])).code).toBe(0);
    expect((await ss.secretTool(['lookup', 'service', 'keybroker', 'username', 'default'])).code).not.toBe(0);
    expect((await d.shim('default')).code).toBe(10);
    // Nothing left to delete: NOT_FOUND.
    expect((await d.cli(['key', 'delete', 'default'])).code).toBe(10);
  });

  it('after key set, the key is in no plain file under HOME, the XDG directories or the keyring home', async () => {
    const key = 'sk-scan-3f9a0b7e51d24c6a';
    const d = await daemon(ss.env);
    expect((await d.cli(['key', 'set', 'default'], {}, key)).code).toBe(0);
    expect((await d.shim('default')).stdout).toBe(`${key}\n`);
    await d.stop();
    // The daemon's HOME and XDG_* directories are inside d.dir; the keyring's files inside root.
    expect(filesHolding(root, key)).toEqual([]);
  });

  /** `keybroker key set default` on a pseudo-terminal (util-linux script): what it shows, how it exits. */
  async function keySetOnTerminal(d: DaemonHandle, typed: string): Promise<{ out: string; code: number | null }> {
    const proc = spawn(SCRIPT!, ['-qec', `exec ${process.execPath} ${CLI} key set default`, '/dev/null'], {
      env: { ...d.env, SHELL: '/bin/sh' },
      stdio: ['pipe', 'pipe', 'pipe'],
    });
    let out = '';
    proc.stdout.on('data', (c: Buffer) => (out += c.toString()));
    const exit = new Promise<number | null>((resolve) => proc.on('exit', (code) => resolve(code)));
    await waitFor(() => out.includes('not shown'), 10_000, 'the prompt');
    proc.stdin.write(typed);
    const code = await exit;
    return { out, code };
  }

  it.skipIf(!SCRIPT)('asks on a terminal without echoing what is typed; ^C gives up (130)', async () => {
    const d = await daemon(ss.env);
    const key = 'sk-typed-on-a-tty-41b';
    const typed = await keySetOnTerminal(d, `${key}\r`);
    expect(typed.code).toBe(0);
    expect(typed.out).not.toContain(key);
    expect(typed.out).toContain('the running daemon serves it now');
    expect((await d.shim('default')).stdout).toBe(`${key}\n`);
    // Half a key, then ^C: nothing stored, exit 130.
    const cancelled = await keySetOnTerminal(d, 'sk-half-typed\x03');
    expect(cancelled.code).toBe(130);
    expect(cancelled.out).not.toContain('sk-half');
    expect((await d.shim('default')).stdout).toBe(`${key}\n`);
  });

  it('refuses a key in argv, an empty key and one with a line break inside, and changes nothing', async () => {
    const d = await daemon(ss.env);
    expect((await d.cli(['key', 'set', 'default'], {}, 'sk-kept')).code).toBe(0);
    const argv = await d.cli(['key', 'set', 'default', 'sk-in-argv']);
    expect(argv.code).toBe(2);
    expect(argv.stderr).not.toContain('sk-in-argv');
    expect((await d.cli(['key', 'set', 'default'], {}, '')).code).toBe(15);
    expect((await d.cli(['key', 'set', 'default'], {}, '\n')).code).toBe(15);
    const twoLines = await d.cli(['key', 'set', 'default'], {}, 'sk-line-one\nsk-line-two\n');
    expect(twoLines.code).toBe(15);
    expect(twoLines.stderr).not.toContain('sk-line');
    expect((await d.shim('default')).stdout).toBe('sk-kept\n');
    // Not a keyring: profile (2), no such profile (4).
    expect((await d.cli(['key', 'set', 'plain'], {}, 'x')).code).toBe(2);
    expect((await d.cli(['key', 'set', 'nope'], {}, 'x')).code).toBe(4);
  });
});

describe.skipIf(SECRET_SERVICE_SKIP)('keyring: a locked keyring', () => {
  let locked: SecretService;
  beforeAll(async () => {
    locked = await startSecretService(path.join(root, 'locked'));
    await locked.secretTool(['store', '--label=k', 'service', 'keybroker', 'username', 'default'], 'sk-locked-away');
    await locked.lock();
  });

  it('reading is AUTH_REQUIRED (exit 12) and says to unlock; key set and key delete too', async () => {
    const d = await daemon(locked.env);
    const r = await d.shim('default');
    expect(r.code).toBe(12);
    expect(r.stderr).toContain('unlock your login keyring');
    expect(r.stderr).not.toContain('sk-locked-away');
    expect((await d.cli(['key', 'set', 'default'], {}, 'sk-new')).code).toBe(12);
    expect((await d.cli(['key', 'delete', 'default'])).code).toBe(12);
  });
});

describe('keyring: no Secret Service', () => {
  it('with no session bus: UNAVAILABLE (exit 13), for the shim and key set', async () => {
    const d = await daemon({});
    const r = await d.shim('default');
    expect(r.code).toBe(13);
    expect(r.stderr).toContain('no D-Bus session bus');
    expect((await d.cli(['key', 'set', 'default'], {}, 'sk-nowhere')).code).toBe(13);
  });

  it.skipIf(SECRET_SERVICE_SKIP)('with a bus but no Secret Service on it: UNAVAILABLE (exit 13)', async () => {
    const bus = await startBus(path.join(root, 'empty-bus'));
    killWhenDone(bus.proc);
    const d = await daemon({ DBUS_SESSION_BUS_ADDRESS: bus.address });
    const r = await d.shim('default');
    expect(r.code).toBe(13);
    expect(r.stderr).toContain('no Secret Service on this session bus');
  });
});

/** Is the keychain library's native module mapped into process `pid`? (Linux: /proc/PID/maps) */
function keychainLoaded(pid: number): boolean {
  return /keyring\.[\w-]+\.node$/m.test(fs.readFileSync(`/proc/${pid}/maps`, 'utf8'));
}

describe.skipIf(process.platform !== 'linux')('the keychain library loads only for a keyring: profile', () => {
  it('a daemon without one never maps it; one with one maps it at its first fetch', async () => {
    const plain = await daemon({}, 'profiles:\n  plain:\n    source: env:HOME\n');
    expect((await plain.shim('plain')).code).toBe(0);
    expect(keychainLoaded(plain.proc.pid!)).toBe(false);
    const keyring = await daemon({});
    expect(keychainLoaded(keyring.proc.pid!)).toBe(false);
    // No bus here: the fetch fails, but only after the worker loaded the library to try.
    expect((await keyring.shim('default')).code).toBe(13);
    expect(keychainLoaded(keyring.proc.pid!)).toBe(true);
  });
});

describe('the set op', () => {
  it('installs a value only for a keyring: profile whose source matches, and refuses bad values', async () => {
    const d = await daemon({});
    const set = (profile: string, source: string, value: string) =>
      d.request({ v: 1, op: 'set', profile, source, value });
    expect(await set('default', 'keyring:default', 'sk-installed')).toMatchObject({ ok: true, changed: null });
    expect(await d.shim('default')).toMatchObject({ code: 0, stdout: 'sk-installed\n' });
    expect(await set('default', 'keyring:default', 'sk-installed')).toMatchObject({ ok: true, changed: false });
    expect(await set('plain', 'env:HOME', 'sk-x')).toMatchObject({ ok: false, error: { code: 'BAD_REQUEST' } });
    expect(await set('default', 'keyring:other', 'sk-x')).toMatchObject({
      ok: false,
      error: { code: 'CONFIG_INVALID' },
    });
    expect(await set('nope', 'keyring:nope', 'sk-x')).toMatchObject({ ok: false, error: { code: 'UNKNOWN_PROFILE' } });
    expect(await set('default', 'keyring:default', '')).toMatchObject({ ok: false, error: { code: 'BAD_REQUEST' } });
    expect(await set('default', 'keyring:default', 'sk-a\nsk-b')).toMatchObject({
      ok: false,
      error: { code: 'INVALID_VALUE' },
    });
    expect((await d.shim('default')).stdout).toBe('sk-installed\n');
    expect(d.log()).not.toContain('sk-installed');
  });
});
