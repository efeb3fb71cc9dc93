// The shims and the CLI inside an agent's sandbox. The kernel's refusal is real: the commands run
// under a seccomp filter that makes socket(AF_UNIX) fail with EPERM (test/helpers/deny-unix-sockets.c),
// as Claude Code's Linux sandbox does; the environment's marker is SANDBOX_RUNTIME=1, as Claude
// Code sets it (test/integration/claude-sandbox.test.ts runs the real thing). Inside, a client says
// SANDBOXED (its own exit status) in one line and never starts a daemon; the marker alone, with a
// daemon the sandbox lets it reach, changes nothing.
import fs from 'node:fs';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ERROR_CODES } from '../../src/protocol/messages.js';
import { SANDBOX } from '../../src/client/sandbox.js';
import {
  baseEnv,
  CLI,
  privateTempDir,
  run,
  shellQuote,
  SHIMS,
  startDaemon,
  type DaemonHandle,
} from '../helpers/daemon.js';
import { buildDenyUnixSockets } from '../helpers/deny-unix-sockets.js';

const linux = process.platform === 'linux';
const KEY = 'sk-sandbox-3f0c1a';
const MARKER = { [SANDBOX.env]: SANDBOX.envValue };
/** Autostart on: a client that tried to start a daemon in the sandbox would show it. */
const AUTOSTART = { KEYBROKER_NO_AUTOSTART: '0' };

let dir: string;
let wrapper: string;
let d: DaemonHandle;
beforeAll(async () => {
  dir = privateTempDir('kb-sbx-');
  if (linux) wrapper = await buildDenyUnixSockets(dir);
  d = await startDaemon({ config: 'profiles:\n  default:\n    source: env:KB_SBX_KEY\n', env: { KB_SBX_KEY: KEY } });
}, 60_000);
afterAll(async () => {
  await d.stop();
  fs.rmSync(d.dir, { recursive: true, force: true });
  fs.rmSync(dir, { recursive: true, force: true });
});

/** An environment whose socket is in a directory nobody has created: no daemon there. */
function noDaemonEnv(name: string, extra: NodeJS.ProcessEnv): NodeJS.ProcessEnv {
  const home = path.join(dir, name);
  fs.mkdirSync(home, { mode: 0o700 });
  return baseEnv(home, extra);
}

function expectSandboxed(r: { code: number | null; stdout: string; stderr: string }): void {
  expect(r.code).toBe(ERROR_CODES.SANDBOXED);
  expect(r.stdout).toBe('');
  expect(r.stderr).toMatch(/^keybroker: [^\n]+\n$/);
  expect(r.stderr).not.toContain(KEY);
}

describe.each(SHIMS)('the $name shim in a sandbox', ({ name, path: shim, skip }) => {
  describe.skipIf(skip !== undefined || !linux)(skip ?? 'Linux: a seccomp filter refuses Unix sockets', () => {
    it('its connect refused (EPERM): SANDBOXED, though a daemon runs', async () => {
      const r = await run(wrapper, ['/bin/sh', '-c', `${shim} default`], { env: { ...d.env, ...AUTOSTART } });
      expectSandboxed(r);
    });

    it('no daemon, autostart on, connect refused: SANDBOXED, and no daemon started', async () => {
      const env = noDaemonEnv(`${name}-eperm`, AUTOSTART);
      const r = await run(wrapper, ['/bin/sh', '-c', shellQuote(shim)], { env });
      expectSandboxed(r);
      expect(fs.existsSync(path.dirname(env.KEYBROKER_SOCKET!))).toBe(false);
    });
  });

  describe.skipIf(skip !== undefined)(skip ?? 'the environment’s marker', () => {
    it('no daemon, autostart on: SANDBOXED, and no daemon started', async () => {
      const env = noDaemonEnv(`${name}-marker`, { ...AUTOSTART, ...MARKER });
      const r = await run('/bin/sh', ['-c', shellQuote(shim)], { env });
      expectSandboxed(r);
      expect(fs.existsSync(path.dirname(env.KEYBROKER_SOCKET!))).toBe(false);
    });

    it('a daemon the sandbox lets it reach: the key, as anywhere else', async () => {
      expect(await d.shim('default', MARKER, shim)).toMatchObject({ code: 0, stdout: `${KEY}\n`, stderr: '' });
    });
  });
});

describe('the CLI in a sandbox', () => {
  it.skipIf(!linux).each([['status'], ['get', 'default'], ['refresh', 'default']])(
    'keybroker %s, its connect refused: SANDBOXED',
    async (...args) => {
      const r = await run(wrapper, [process.execPath, CLI, ...args], { env: d.env });
      expectSandboxed(r);
    },
  );

  it('keybroker status with the marker and no daemon: SANDBOXED', async () => {
    const r = await run(process.execPath, [CLI, 'status'], { env: noDaemonEnv('cli-marker', MARKER) });
    expectSandboxed(r);
  });
});
