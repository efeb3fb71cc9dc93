// The package as a user gets it: `npm pack` of this built checkout, then `npm install -g` of the
// tarball as a second, non-root user with a HOME and a user prefix of their own (`npm config set
// prefix ~/.local`, as docs/install.md says), dependencies from the npm registry. Once with npm's
// install script (which builds the native shim where cc exists), once with --ignore-scripts (the
// Node shim serves; doctor names the fix, and the fix works), and once through npx.
//
// One registry install per file: the first fills the user's npm cache, the later ones read it.
// The tarball and the user's homes live in a world-readable temp dir (the checkout itself may sit
// in a 0700 directory); the daemons the shims start are stopped by pid at the end.
import { spawnSync } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { DoctorCheck } from '../../src/integration/doctor.js';
import { ERROR_CODES, type StatusReply } from '../../src/protocol/messages.js';
import { VERSION } from '../../src/version.js';
import { ROOT, run, type RunResult } from '../helpers/daemon.js';
import { registryEnv } from '../helpers/extra-ca-certs.js';
import { nodeFor, otherUser } from '../helpers/other-user.js';

const user = otherUser();
if (user.skip !== undefined) console.log(`package install tests skipped: ${user.skip}`);
const INSTALL_TIMEOUT_MS = 10 * 60_000;
const KEY = 'sk-ant-package-test-key';

interface PackResult {
  filename: string;
  files: { path: string }[];
}

let dir: string;
let tarball: string;
let packed: PackResult;
let binDir: string;
let npmCache: string;
/**
 * The machine's npm and network settings. A user prefix moves npm's global config file to
 * <prefix>/etc/npmrc, so the system's one (here it names the CA file of the machine's TLS proxy)
 * is named explicitly; proxy and CA variables pass through as they are.
 */
let machineEnv: NodeJS.ProcessEnv;

/** A home of the other user's own, 0700, with a keybroker config whose default profile is env:. */
function makeHome(name: string): string {
  if (user.skip !== undefined) throw new Error(user.skip);
  const home = path.join(dir, name);
  const configDir = path.join(home, '.config', 'keybroker');
  fs.mkdirSync(configDir, { recursive: true });
  fs.writeFileSync(path.join(configDir, 'config.yaml'), 'profiles:\n  default:\n    source: env:KB_PACKAGE_KEY\n', {
    mode: 0o600,
  });
  for (const p of [home, path.join(home, '.config'), configDir, path.join(configDir, 'config.yaml')]) {
    fs.chownSync(p, user.uid, user.gid);
    if (fs.statSync(p).isDirectory()) fs.chmodSync(p, 0o700);
  }
  return home;
}

/** Run a shell command line as the other user, in `home`, with only the environment a login gives. */
function as(home: string, command: string, timeoutMs = 60_000): Promise<RunResult> {
  if (user.skip !== undefined) throw new Error(user.skip);
  return run('/bin/sh', ['-c', command], {
    user,
    cwd: home,
    timeoutMs,
    // Not this process's environment: under `npm test` it carries root's npm_config_prefix, cache, …
    env: {
      HOME: home,
      USER: user.name,
      LOGNAME: user.name,
      PATH: `${home}/.local/bin:${binDir}:/usr/bin:/bin`,
      ...machineEnv,
      npm_config_cache: npmCache,
      npm_config_update_notifier: 'false',
      KB_PACKAGE_KEY: KEY,
    },
  });
}

function expectOk(r: RunResult, what: string): void {
  expect(r.code, `${what}: ${r.stderr}${r.stdout}`).toBe(0);
}

const installed = (home: string): string => path.join(home, '.local', 'lib', 'node_modules', 'keybroker');
const nativeShim = (home: string): string => path.join(installed(home), 'dist', 'native', 'keybroker-shim');
const hardeningAddon = (home: string): string =>
  path.join(installed(home), 'dist', 'native', 'keybroker-hardening.node');
const hasCc = (): boolean => spawnSync('/bin/sh', ['-c', 'command -v cc'], { stdio: 'ignore' }).status === 0;

async function doctorCheck(home: string, id: string): Promise<DoctorCheck | undefined> {
  const r = await as(home, 'keybroker doctor --no-fetch --json');
  return (JSON.parse(r.stdout) as DoctorCheck[]).find((c) => c.id === id);
}

let scripted: string;
let noScripts: string;
let viaNpx: string;

beforeAll(
  async () => {
    if (user.skip !== undefined) return;
    dir = fs.mkdtempSync('/tmp/kb-package-');
    fs.chmodSync(dir, 0o755);
    // Without scripts: `prepare` would rebuild dist/ under the other test files' feet; the suite
    // builds it before the tests run.
    const pack = spawnSync('npm', ['pack', '--ignore-scripts', '--json', '--pack-destination', dir], {
      cwd: ROOT,
      encoding: 'utf8',
      timeout: 120_000,
    });
    expect(pack.status, pack.stderr).toBe(0);
    packed = (JSON.parse(pack.stdout) as PackResult[])[0]!;
    tarball = path.join(dir, packed.filename);
    fs.chmodSync(tarball, 0o644);

    // node and npm as the other user can run them: npm is this machine's, run by that node.
    const node = nodeFor(user, dir);
    const npmCli = fs.realpathSync(
      spawnSync('/bin/sh', ['-c', 'command -v npm'], { encoding: 'utf8' }).stdout.trim() || 'npm-not-on-PATH',
    );
    binDir = path.join(dir, 'bin');
    fs.mkdirSync(binDir, { mode: 0o755 });
    fs.symlinkSync(node, path.join(binDir, 'node'));
    for (const [name, cli] of [
      ['npm', npmCli],
      ['npx', path.join(path.dirname(npmCli), 'npx-cli.js')],
    ] as const)
      fs.writeFileSync(path.join(binDir, name), `#!/bin/sh\nexec ${node} ${cli} "$@"\n`, { mode: 0o755 });
    const globalconfig = spawnSync('npm', ['config', 'get', 'globalconfig'], { encoding: 'utf8' }).stdout.trim();
    machineEnv = {
      ...Object.fromEntries(
        Object.entries(process.env).filter(([k]) =>
          /^(https?_proxy|no_proxy|all_proxy|SSL_CERT_FILE|SSL_CERT_DIR)$/i.test(k),
        ),
      ),
      ...registryEnv(),
    };
    if (globalconfig && fs.existsSync(globalconfig)) machineEnv.npm_config_globalconfig = globalconfig;
    npmCache = path.join(dir, 'npm-cache');
    fs.mkdirSync(npmCache, { mode: 0o700 });
    fs.chownSync(npmCache, user.uid, user.gid);

    scripted = makeHome('scripted');
    noScripts = makeHome('no-scripts');
    viaNpx = makeHome('npx');
    for (const home of [scripted, noScripts]) expectOk(await as(home, 'npm config set prefix ~/.local'), 'npm config');
    // The one registry install; the next one reads the npm cache it filled.
    expectOk(
      await as(scripted, `npm install -g --no-audit --no-fund ${tarball}`, INSTALL_TIMEOUT_MS),
      'npm install -g',
    );
    expectOk(
      await as(
        noScripts,
        `npm install -g --no-audit --no-fund --prefer-offline --ignore-scripts ${tarball}`,
        INSTALL_TIMEOUT_MS,
      ),
      'npm install -g --ignore-scripts',
    );
  },
  2 * INSTALL_TIMEOUT_MS + 120_000,
);

afterAll(async () => {
  if (user.skip !== undefined || dir === undefined) return;
  // The daemons the shims started, found without asking them: a `keybroker status` per home, run
  // as the other user, costs a CLI start each and could wait on a daemon that no longer answers.
  await Promise.all(processesFrom(dir).map(stopProcess));
  fs.rmSync(dir, { recursive: true, force: true });
}, 120_000);

/** The other user's processes whose command line names a path under `root` (its installs' daemons). */
function processesFrom(root: string): number[] {
  if (user.skip !== undefined) return [];
  const pids: number[] = [];
  for (const entry of fs.readdirSync('/proc')) {
    if (!/^\d+$/.test(entry)) continue;
    try {
      if (fs.statSync(`/proc/${entry}`).uid !== user.uid) continue;
      if (
        fs
          .readFileSync(`/proc/${entry}/cmdline`, 'utf8')
          .split('\0')
          .some((arg) => arg.startsWith(root))
      ) {
        pids.push(Number(entry));
      }
    } catch {
      // Gone since the listing.
    }
  }
  return pids;
}

async function stopProcess(pid: number): Promise<void> {
  try {
    process.kill(pid, 'SIGTERM');
  } catch {
    return;
  }
  for (let i = 0; i < 100; i++) {
    try {
      process.kill(pid, 0);
    } catch {
      return;
    }
    await new Promise((resolve) => setTimeout(resolve, 50));
  }
  process.kill(pid, 'SIGKILL');
}

describe.skipIf(user.skip !== undefined)('npm pack, then npm install -g as another user with a user prefix', () => {
  it('the tarball holds what runs: no tests, no binary built on this machine', () => {
    const paths = packed.files.map((f) => f.path);
    expect(paths).toContain('dist/src/cli/main.js');
    expect(paths).toContain('dist/src/shim/keybroker-shim.cjs');
    expect(paths).toContain('src/shim/keybroker-shim.c');
    expect(paths.filter((p) => /^(test|bench|dist\/(native|bench|test)|\.ci|\.cache)\//.test(p))).toEqual([]);
    expect(paths.filter((p) => /\.test\.|\.node$/.test(p))).toEqual([]);
    const unpacked = path.join(dir, 'unpacked');
    fs.mkdirSync(unpacked);
    expect(spawnSync('tar', ['-xzf', tarball, '-C', unpacked]).status).toBe(0);
    const binaries = (fs.readdirSync(unpacked, { recursive: true }) as string[]).filter((f) => {
      const file = path.join(unpacked, f);
      if (!fs.statSync(file).isFile()) return false;
      const head = fs.readFileSync(file).subarray(0, 4).toString('hex');
      // ELF; Mach-O (32/64-bit, either byte order) and universal; PE.
      return /^(7f454c46|feedfac[ef]|c[ef]faedfe|cafebabe|4d5a)/.test(head);
    });
    expect(binaries).toEqual([]);
  });

  it('puts keybroker and keybroker-shim on that user’s PATH, from ~/.local', async () => {
    const r = await as(scripted, 'command -v keybroker && command -v keybroker-shim');
    expectOk(r, 'command -v');
    expect(r.stdout.trim().split('\n')).toEqual([
      path.join(scripted, '.local', 'bin', 'keybroker'),
      path.join(scripted, '.local', 'bin', 'keybroker-shim'),
    ]);
    const version = await as(scripted, 'keybroker --version');
    expect(version.stdout.trim()).toBe(VERSION);
  });

  it('built dist/ came in the tarball: no TypeScript build at install; the native shim is built where cc exists', () => {
    for (const file of ['dist/src/cli/cli.js', 'dist/src/shim/keybroker-shim.cjs'])
      expect(fs.readFileSync(path.join(installed(scripted), file)).equals(fs.readFileSync(path.join(ROOT, file)))).toBe(
        true,
      );
    expect(fs.existsSync(nativeShim(scripted))).toBe(hasCc());
    expect(fs.existsSync(hardeningAddon(scripted))).toBe(hasCc());
  });

  it('the first keybroker-shim call starts a daemon and prints the key', async () => {
    const r = await as(scripted, 'keybroker-shim');
    expectOk(r, 'keybroker-shim');
    expect(r.stdout).toBe(`${KEY}\n`);
    const status = await as(scripted, 'keybroker status --json');
    expectOk(status, 'keybroker status');
    expect((JSON.parse(status.stdout) as StatusReply).daemon.startedBy).toBe('autostart');
  });
});

describe.skipIf(user.skip !== undefined)('installed with --ignore-scripts', () => {
  it('has no native shim; the Node shim serves; setup claude writes the Node shim', async () => {
    expect(fs.existsSync(nativeShim(noScripts))).toBe(false);
    const r = await as(noScripts, 'keybroker-shim');
    expectOk(r, 'keybroker-shim');
    expect(r.stdout).toBe(`${KEY}\n`);
    expectOk(await as(noScripts, 'keybroker setup claude'), 'setup claude');
    const settings = JSON.parse(fs.readFileSync(path.join(noScripts, '.claude', 'settings.json'), 'utf8')) as {
      apiKeyHelper: string;
    };
    expect(settings.apiKeyHelper).toBe(path.join(installed(noScripts), 'dist', 'src', 'shim', 'keybroker-shim.cjs'));
  });

  it.skipIf(!hasCc())(
    'doctor warns native-shim with the fix; running the fix builds it, and setup claude then writes it',
    async () => {
      expect(await doctorCheck(noScripts, 'native-shim')).toMatchObject({
        status: 'warn',
        fix: 'keybroker build-native',
      });
      // The daemon's hardening addon is missing too, and built by the same command.
      expect(fs.existsSync(hardeningAddon(noScripts))).toBe(false);
      expect((await doctorCheck(noScripts, 'daemon-hardening'))?.status).toBe('warn');
      expectOk(await as(noScripts, 'keybroker build-native'), 'build-native');
      expect((await doctorCheck(noScripts, 'native-shim'))?.status).toBe('ok');
      expect(fs.existsSync(hardeningAddon(noScripts))).toBe(true);
      expectOk(await as(noScripts, 'keybroker setup claude'), 'setup claude');
      const settings = JSON.parse(fs.readFileSync(path.join(noScripts, '.claude', 'settings.json'), 'utf8')) as {
        apiKeyHelper: string;
      };
      expect(settings.apiKeyHelper).toBe(nativeShim(noScripts));
      const r = await as(noScripts, settings.apiKeyHelper);
      expect(r.stdout).toBe(`${KEY}\n`);
    },
    120_000,
  );
});

describe.skipIf(user.skip !== undefined)('npx with the tarball', () => {
  it(
    'runs keybroker, but setup claude refuses with NOT_INSTALLED and writes nothing',
    async () => {
      const npx = `npx --yes --prefer-offline --package ${tarball} --`;
      const version = await as(viaNpx, `${npx} keybroker --version`, INSTALL_TIMEOUT_MS);
      expectOk(version, 'npx keybroker --version');
      expect(version.stdout.trim()).toBe(VERSION);
      const setup = await as(viaNpx, `${npx} keybroker setup claude`, INSTALL_TIMEOUT_MS);
      expect(setup.code).toBe(ERROR_CODES.NOT_INSTALLED);
      expect(setup.stderr.trim().split('\n')).toHaveLength(1);
      expect(fs.existsSync(path.join(viaNpx, '.claude', 'settings.json'))).toBe(false);
    },
    2 * INSTALL_TIMEOUT_MS,
  );
});
