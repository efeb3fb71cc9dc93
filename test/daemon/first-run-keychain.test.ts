// The first run picks the keychain where a real one answers: with a Secret Service on the
// session bus the starter config's default profile is keyring:default and the daemon says
// `keybroker key set default`; without one (no bus, or a bus with no Secret Service on it), today's
// file: starter. Real daemons, a real gnome-keyring-daemon on a private bus.
import { spawn } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { beforeAll, describe, expect, it } from 'vitest';
import { killWhenDone } from '../helpers/cleanup.js';
import { baseEnv, CLI, privateTempDir, run, SHIM, waitFor, shellQuote } from '../helpers/daemon.js';
import { SECRET_SERVICE_SKIP, startBus, startSecretService, type SecretService } from '../helpers/secret-service.js';

const root = privateTempDir('kb-first-');

/** `keybroker daemon` with no config at the default path, stopped at the test's end; log() is its stderr so far. */
function startFirstRun(env: NodeJS.ProcessEnv): { log: () => string } {
  const proc = spawn(process.execPath, [CLI, 'daemon'], { env, stdio: ['ignore', 'ignore', 'pipe'] });
  killWhenDone(proc);
  let log = '';
  proc.stderr.on('data', (c: Buffer) => (log += c.toString()));
  return { log: () => log };
}

/** The starter config a first run wrote under `dir` (baseEnv's XDG_CONFIG_HOME). */
function starterIn(dir: string): string {
  return fs.readFileSync(path.join(dir, 'config', 'keybroker', 'config.yaml'), 'utf8');
}

describe.skipIf(SECRET_SERVICE_SKIP)('first run, with a Secret Service', () => {
  let ss: SecretService;
  beforeAll(async () => {
    ss = await startSecretService(path.join(root, 'ss'));
  });

  it('a first run with a Secret Service writes keyring:default and says: keybroker key set default', async () => {
    const dir = fs.mkdtempSync(path.join(root, 'first-'));
    const env = baseEnv(dir, ss.env);
    delete env.KEYBROKER_CONFIG;
    const { log } = startFirstRun(env);
    await waitFor(() => log().includes('"msg":"listening"'), 10_000, 'daemon');
    expect(starterIn(dir)).toMatch(/^ {4}source: keyring:default$/m);
    expect(log()).toContain('keybroker key set default');
    await run(process.execPath, [CLI, 'key', 'delete', 'default'], { env });
    const shim = await run('/bin/sh', ['-c', shellQuote(SHIM)], { env });
    expect(shim.code).toBe(10);
    expect(shim.stderr).toContain('keybroker key set default');
    expect((await run(process.execPath, [CLI, 'key', 'set', 'default'], { env, input: 'sk-first-run' })).code).toBe(0);
    expect((await run('/bin/sh', ['-c', shellQuote(SHIM)], { env })).stdout).toBe('sk-first-run\n');
  });
});

describe('first run, without a Secret Service', () => {
  it("a first run without a Secret Service writes today's file: starter", async () => {
    const dir = fs.mkdtempSync(path.join(root, 'first-none-'));
    const env = baseEnv(dir);
    delete env.KEYBROKER_CONFIG;
    const { log } = startFirstRun(env);
    await waitFor(() => log().includes('"msg":"listening"'), 10_000, 'daemon');
    expect(starterIn(dir)).toMatch(/^ {4}source: file:~\/\.config\/keybroker\/anthropic-key$/m);
    expect(log()).toContain('"keychain":"none (no D-Bus session bus)');
  });

  it.skipIf(SECRET_SERVICE_SKIP)('a bus with no Secret Service on it: the file: starter too', async () => {
    const bus = await startBus(path.join(root, 'empty-bus'));
    killWhenDone(bus.proc);
    const dir = fs.mkdtempSync(path.join(root, 'first-bus-'));
    const env = baseEnv(dir, { DBUS_SESSION_BUS_ADDRESS: bus.address });
    delete env.KEYBROKER_CONFIG;
    const { log } = startFirstRun(env);
    await waitFor(() => log().includes('"msg":"listening"'), 10_000, 'daemon');
    expect(starterIn(dir)).toMatch(/^ {4}source: file:~\/\.config\/keybroker\/anthropic-key$/m);
    expect(log()).toContain('"keychain":"none (no Secret Service on the session bus)');
  });
});
