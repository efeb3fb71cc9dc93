// Upgrades: the daemon says which build it is and how it was started; a CLI of another build
// notices and says how to restart it. Real processes: this build and a copy stamped as another.
import fs from 'node:fs';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { detectStartedBy } from '../../src/cli/daemon-command.js';
import { sendRequest } from '../../src/client/client.js';
import type { PingReply, Request, StatusReply } from '../../src/protocol/messages.js';
import { BUILD_ID, VERSION } from '../../src/client/build-info.js';
import {
  isRunning,
  privateTempDir,
  ROOT,
  run,
  SHIM,
  sharedDaemon,
  startDaemon,
  waitFor,
  workspace,
  shellQuote,
} from '../helpers/daemon.js';
import { otherBuild, type OtherBuild } from '../helpers/other-build.js';

const builtId = (): string =>
  /STAMPED = '([0-9a-f]{12})'/.exec(fs.readFileSync(path.join(ROOT, 'dist/src/client/build-info.js'), 'utf8'))![1]!;

describe('the build id', () => {
  it('is stamped into the built files, and restamping gives the same id', async () => {
    const id = builtId();
    expect(id).toMatch(/^[0-9a-f]{12}$/);
    expect(fs.readFileSync(path.join(ROOT, 'dist/src/shim/keybroker-shim.cjs'), 'utf8')).toContain(
      `"${id}" /* build-id */`,
    );
    const r = await run(process.execPath, [path.join(ROOT, 'scripts/stamp-build-id.mjs')]);
    expect(r.code).toBe(0);
    expect(builtId()).toBe(id);
  });

  it('is absent when running from source (tests), so source and dist compare by version', () => {
    expect(BUILD_ID).toBeUndefined();
  });
});

describe('detectStartedBy', () => {
  it.each([
    [{}, true, 'autostart'],
    [{ SYSTEMD_EXEC_PID: '4242' }, false, 'systemd'],
    [{ LISTEN_PID: '4242' }, false, 'systemd'],
    [{ SYSTEMD_EXEC_PID: '1111' }, false, 'foreground'], // a shell inside some other systemd service
    [{ XPC_SERVICE_NAME: 'dev.keybroker.agent' }, false, 'launchd'],
    [{ XPC_SERVICE_NAME: '0' }, false, 'foreground'],
    [{}, false, 'foreground'],
  ])('%j, autostarted=%s → %s', (env, autostarted, expected) => {
    expect(detectStartedBy(env, autostarted, 4242)).toBe(expected);
  });
});

// A daemon of another build started by hand (foreground): shared by the tests that only ask it
// things (~0.5 s of CPU and a copy of dist/ per daemon). Tests that stop or replace a daemon start
// their own.
let old: OtherBuild;
const d = sharedDaemon(() => {
  old = otherBuild(privateTempDir('kb-upg-'));
  return {
    config: 'profiles:\n  default:\n    source: env:KB_UPG_KEY\n',
    env: { KB_UPG_KEY: 'sk-upg-1' },
    cli: old.cli,
  };
});

describe('a daemon of another build', () => {
  it('says which build it is and how it was started, on ping, get and status', async () => {
    const ping = (await d.request({ v: 1, op: 'ping' })) as PingReply;
    expect(ping).toMatchObject({ ok: true, build: old.build, startedBy: 'foreground', pid: d.proc.pid });
    expect(await d.request({ v: 1, op: 'get', profile: 'default' })).toMatchObject({
      ok: true,
      daemon: { build: old.build, pid: d.proc.pid },
    });
    const status = (await d.request({ v: 1, op: 'status' })) as StatusReply;
    expect(status.daemon).toMatchObject({ build: old.build, startedBy: 'foreground' });
  });

  it('the CLI of this build warns once, in one line with the fix, and still works', async () => {
    const r = await d.cli(['status']);
    expect(r.code).toBe(0);
    const lines = r.stderr.split('\n').filter(Boolean);
    expect(lines).toHaveLength(1);
    expect(lines[0]).toMatch(/^keybroker: warning: /);
    expect(lines[0]).toContain(old.build);
    expect(lines[0]).toMatch(/run: keybroker restart$/);
    expect((await d.cli(['get'])).stdout).toBe('sk-upg-1\n');
  });

  it('the CLI of the same build says nothing', async () => {
    const r = await run(process.execPath, [old.cli, 'status'], { env: d.env });
    expect(r).toMatchObject({ code: 0, stderr: '' });
  });
});

describe('keybroker-shim and an upgrade', () => {
  it('--version prints the version and the build', async () => {
    const r = await run(SHIM, ['--version']);
    expect(r.code).toBe(0);
    expect(r.stdout).toBe(`${VERSION} (build ${builtId()})\n`);
    expect((await run(SHIM, ['-v'])).stdout).toBe(r.stdout);
  });

  it('serves the key from a daemon of another build, and says in one line how to restart it', async () => {
    const r = await d.shim();
    expect(r).toMatchObject({ code: 0, stdout: 'sk-upg-1\n' });
    const lines = r.stderr.split('\n').filter(Boolean);
    expect(lines).toHaveLength(1);
    expect(lines[0]).toMatch(/^keybroker: warning: .*run: keybroker restart$/);
    expect(isRunning(d.proc.pid!)).toBe(true); // not ours to replace: started by hand
  });

  it('replaces a daemon of another build that autostart started: the next call runs this build', async () => {
    const { dir, env } = workspace({
      prefix: 'kb-upg3-',
      autostart: true,
      config: 'profiles:\n  default:\n    source: env:KB_UPG_KEY\n',
      env: { KB_UPG_KEY: 'sk-upg-3' },
    });
    const old = otherBuild(dir);
    const ping = async (): Promise<PingReply | undefined> => {
      const r = await sendRequest(env.KEYBROKER_SOCKET!, { v: 1, op: 'ping' }, { timeoutMs: 1_000 });
      return r.ok && 'pong' in r ? r : undefined;
    };
    expect(await run('/bin/sh', ['-c', shellQuote(old.shim)], { env })).toMatchObject({
      code: 0,
      stdout: 'sk-upg-3\n',
    });
    const first = (await ping())!;
    expect(first).toMatchObject({ build: old.build, startedBy: 'autostart' });
    // This build's shim: served by the old daemon, which it then asks to go.
    expect(await run('/bin/sh', ['-c', shellQuote(SHIM)], { env })).toMatchObject({
      code: 0,
      stdout: 'sk-upg-3\n',
      stderr: '',
    });
    await waitFor(() => !isRunning(first.pid), 10_000, 'the old daemon to exit');
    expect(await run('/bin/sh', ['-c', shellQuote(SHIM)], { env })).toMatchObject({ code: 0, stdout: 'sk-upg-3\n' });
    expect(await ping()).toMatchObject({ build: builtId(), startedBy: 'autostart' });
  });
});

describe('keybroker restart', () => {
  it('stops a daemon of another build gracefully and starts this build in its place', async () => {
    const dir = privateTempDir('kb-upg4-');
    const old = otherBuild(dir);
    const d = await startDaemon({
      config: 'profiles:\n  default:\n    source: env:KB_UPG_KEY\n',
      env: { KB_UPG_KEY: 'sk-upg-4' },
      cli: old.cli,
    });
    const r = await d.cli(['restart']);
    expect(r.code).toBe(0);
    expect(r.stdout.trim().split('\n')).toHaveLength(1);
    expect(await d.stop()).toBe(0); // the old one exited cleanly (SIGTERM, status 0)
    const now = (await d.request({ v: 1, op: 'ping' })) as PingReply;
    expect(now).toMatchObject({ ok: true, build: builtId(), startedBy: 'autostart' });
    expect(now.pid).not.toBe(d.proc.pid);
    expect(await d.request({ v: 1, op: 'get', profile: 'default' })).toMatchObject({ ok: true, value: 'sk-upg-4' });
    process.kill(now.pid, 'SIGTERM');
  });
});

describe('a request field the daemon does not know', () => {
  // (Asked of the other build's daemon: a field a newer client sends to an older daemon.)
  it('fails loudly (BAD_REQUEST), never silently ignored', async () => {
    const unknownField = { v: 1, op: 'get', profile: 'default', fromTheFuture: true } as unknown as Request;
    expect(await d.request(unknownField)).toMatchObject({ ok: false, error: { code: 'BAD_REQUEST' } });
    const unknownConsumerField = {
      v: 1,
      op: 'get',
      profile: 'default',
      consumer: { pid: 1, claudeCode: false, fromTheFuture: 1 },
    } as unknown as Request;
    expect(await d.request(unknownConsumerField)).toMatchObject({ ok: false, error: { code: 'BAD_REQUEST' } });
  });
});
