// Where npm ran no install script, the native shim is missing: doctor's native-shim check says so
// and gives the one command that builds it, and `keybroker build-native` is that command. Run on a
// copy of what the package ships ("files" in package.json), as root and as another user who may
// not write it (a root-owned global prefix).
import fs from 'node:fs';
import path from 'node:path';
import { beforeEach, describe, expect, it } from 'vitest';
import type { DoctorCheck } from '../../src/integration/doctor.js';
import { ERROR_CODES } from '../../src/protocol/messages.js';
import { findOnPath } from '../../src/integration/service-manager.js';
import { privateTempDir, run } from '../helpers/daemon.js';
import { nodeFor, otherUser } from '../helpers/other-user.js';
import { copyPackage } from '../helpers/package-copy.js';

const HAS_CC = (await findOnPath('cc', process.env.PATH)) !== undefined;
if (!HAS_CC) console.log('native-shim: the tests that build it are skipped here: no cc on PATH');

let dir: string;
let pkg: string;
let home: string;

beforeEach(() => {
  // World-readable, as a system-wide prefix is: the second user reads it but may not write it.
  dir = privateTempDir('kb-native-');
  fs.chmodSync(dir, 0o755);
  pkg = path.join(dir, 'lib', 'node_modules', 'keybroker');
  copyPackage(pkg);
  home = path.join(dir, 'home');
  fs.mkdirSync(home, { mode: 0o700 });
});

const entry = (): string => path.join(pkg, 'dist', 'src', 'cli', 'main.js');
const nativeShim = (): string => path.join(pkg, 'dist', 'native', 'keybroker-shim');
const cli = (args: string[], env: NodeJS.ProcessEnv = {}, node = process.execPath): ReturnType<typeof run> =>
  run(node, [entry(), ...args], { env: { HOME: home, PATH: process.env.PATH, ...env }, timeoutMs: 60_000 });

async function nativeCheck(env: NodeJS.ProcessEnv = {}): Promise<DoctorCheck> {
  const r = await cli(['doctor', '--no-fetch', '--json'], env);
  const check = (JSON.parse(r.stdout) as DoctorCheck[]).find((c) => c.id === 'native-shim');
  expect(check).toBeDefined();
  return check!;
}

describe('a package installed without its install script', () => {
  it('ships no native shim', () => {
    expect(fs.existsSync(nativeShim())).toBe(false);
  });

  it.skipIf(!HAS_CC)(
    'doctor warns and names keybroker build-native, which builds it; then doctor is content',
    async () => {
      expect(await nativeCheck()).toMatchObject({ status: 'warn', fix: 'keybroker build-native' });
      const built = await cli(['build-native']);
      expect(built.code).toBe(0);
      expect(fs.statSync(nativeShim()).mode & 0o111).not.toBe(0);
      expect((await nativeCheck()).status).toBe('ok');
    },
    // Two C compiles and three CLI runs: beyond 30 s on a loaded machine.
    120_000,
  );

  it('without a C compiler: doctor says to install one first; build-native fails with NOT_FOUND', async () => {
    const env = { CC: 'kb-no-such-compiler' };
    const check = await nativeCheck(env);
    expect(check.status).toBe('warn');
    expect(check.fix).toMatch(/keybroker build-native$/);
    const r = await cli(['build-native'], env);
    expect(r.code).toBe(ERROR_CODES.NOT_FOUND);
    expect(r.stderr.trim().split('\n')).toHaveLength(1);
    expect(fs.existsSync(nativeShim())).toBe(false);
  });
});

describe('a package another user installed (root, a system-wide prefix)', () => {
  const user = otherUser();
  if (user.skip !== undefined) console.log(`native-shim as another user skipped: ${user.skip}`);

  it.skipIf(user.skip !== undefined)(
    'build-native fails with PERMISSION_DENIED, and doctor gives the sudo line with this node',
    async () => {
      if (user.skip !== undefined) return;
      fs.chownSync(home, user.uid, user.gid);
      const node = nodeFor(user, dir);
      const as = { user, env: { HOME: home, PATH: `${path.dirname(node)}:/usr/bin:/bin` }, timeoutMs: 60_000 };
      const r = await run(node, [entry(), 'build-native'], as);
      expect(r.code).toBe(ERROR_CODES.PERMISSION_DENIED);
      expect(r.stderr.trim().split('\n')).toHaveLength(1);
      const doctor = await run(node, [entry(), 'doctor', '--no-fetch', '--json'], as);
      const check = (JSON.parse(doctor.stdout) as DoctorCheck[]).find((c) => c.id === 'native-shim');
      expect(check?.status).toBe('warn');
      expect(check?.fix?.endsWith(`sudo ${node} ${entry()} build-native`)).toBe(true);
      expect(fs.existsSync(nativeShim())).toBe(false);
    },
  );
});
