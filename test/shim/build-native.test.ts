// scripts/build-native.mjs, run on a copy of what it needs (the script, the C sources, the built
// protocol module) so it never touches this checkout's dist/: with and without a C compiler, as
// `npm run build` and as the package's install script. `npm ci` on a machine without cc must pass.
import fs from 'node:fs';
import path from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { ERROR_CODES } from '../../src/protocol/messages.js';
import { privateTempDir, ROOT, run } from '../helpers/daemon.js';

const FILES = [
  'scripts/build-native.mjs',
  'src/shim/keybroker-shim.c',
  'src/shim/native/reply-parser.c',
  'src/shim/native/reply-parser.h',
  'src/shim/native/utf8.c',
  'src/shim/native/utf8.h',
  'dist/src/protocol/messages.js',
  'dist/src/client/build-info.js',
];

let root: string;
let noCompilerPath: string;
const binary = (): string => path.join(root, 'dist', 'native', 'keybroker-shim');

beforeEach(() => {
  root = privateTempDir('kb-build-native-');
  for (const f of FILES) {
    fs.mkdirSync(path.dirname(path.join(root, f)), { recursive: true });
    fs.copyFileSync(path.join(ROOT, f), path.join(root, f));
  }
  fs.writeFileSync(path.join(root, 'package.json'), '{"type":"module"}\n');
  // A PATH with node and nothing else: no cc.
  noCompilerPath = path.join(root, 'bin');
  fs.mkdirSync(noCompilerPath);
  fs.symlinkSync(process.execPath, path.join(noCompilerPath, 'node'));
});
afterEach(() => fs.rmSync(root, { recursive: true, force: true }));

const build = (args: string[], env: NodeJS.ProcessEnv = {}): ReturnType<typeof run> =>
  run(process.execPath, [path.join(root, 'scripts', 'build-native.mjs'), ...args], {
    env: { ...process.env, CC: '', CFLAGS: '', ...env },
    cwd: root,
    timeoutMs: 60_000,
  });

describe('without a C compiler', () => {
  it.each([[[]], [['--install']]])('succeeds with one line and no binary (args %j)', async (args) => {
    const r = await build(args, { PATH: noCompilerPath });
    expect(r.code).toBe(0);
    expect(r.stdout.trim().split('\n')).toHaveLength(1);
    expect(r.stdout).toContain('no C compiler');
    expect(fs.existsSync(binary())).toBe(false);
  });

  it('removes a binary left from an earlier build or another machine', async () => {
    fs.mkdirSync(path.dirname(binary()), { recursive: true });
    fs.writeFileSync(binary(), 'foreign', { mode: 0o755 });
    expect((await build([], { PATH: noCompilerPath })).code).toBe(0);
    expect(fs.existsSync(binary())).toBe(false);
  });
});

describe('with a C compiler', () => {
  it('builds an executable that answers (here: hands over, finds no Node shim, says so)', async () => {
    const r = await build([]);
    expect(r.code).toBe(0);
    expect(r.stdout).toMatch(/^native shim: built dist\/native\/keybroker-shim with cc\n$/);
    expect(r.stderr).toBe(''); // no compiler warnings
    const shim = await run(binary(), ['--help'], { env: { PATH: noCompilerPath } });
    expect(shim.code).toBe(ERROR_CODES.INTERNAL);
    expect(shim.stdout).toBe('');
    expect(shim.stderr).toContain(
      `keybroker: cannot find the Node shim ${path.join(root, 'dist', 'src', 'shim', 'keybroker-shim.cjs')} beside the native keybroker-shim`,
    );
  });

  it('hands over to KEYBROKER_NODE, else the node that built it; says so when that cannot run', async () => {
    expect((await build([])).code).toBe(0);
    const nodeShim = path.join(root, 'dist', 'src', 'shim', 'keybroker-shim.cjs');
    fs.mkdirSync(path.dirname(nodeShim), { recursive: true });
    fs.writeFileSync(
      nodeShim,
      'process.stdout.write(JSON.stringify([process.execPath, ...process.argv.slice(1)]) + "\\n")\n',
    );
    const byBuildNode = await run(binary(), ['--format', 'raw', 'w'], { env: { PATH: noCompilerPath } });
    expect(JSON.parse(byBuildNode.stdout)).toEqual([
      fs.realpathSync(process.execPath),
      nodeShim,
      '--format',
      'raw',
      'w',
    ]);
    const byEnv = await run(binary(), ['--help'], {
      env: { PATH: noCompilerPath, KEYBROKER_NODE: path.join(root, 'no-node') },
    });
    expect(byEnv.code).toBe(ERROR_CODES.INTERNAL);
    expect(byEnv.stderr).toBe(
      `keybroker: cannot run the Node shim ${nodeShim} with ${path.join(root, 'no-node')} (No such file or directory); put node on PATH or set KEYBROKER_NODE to it\n`,
    );
  });

  it('a compile error fails the build, but never an install', async () => {
    fs.appendFileSync(path.join(root, 'src/shim/keybroker-shim.c'), '\nthis is not C;\n');
    const built = await build([]);
    expect(built.code).toBe(1);
    expect(built.stdout).toContain('failed');
    const installed = await build(['--install']);
    expect(installed.code).toBe(0);
    expect(fs.existsSync(binary())).toBe(false);
  });

  it('an unexpected failure (here dist/native is a file) fails the build, but an install only says so', async () => {
    fs.mkdirSync(path.join(root, 'dist'), { recursive: true });
    fs.writeFileSync(path.join(root, 'dist', 'native'), 'not a directory');
    expect((await build([])).code).not.toBe(0);
    const installed = await build(['--install']);
    expect(installed.code).toBe(0);
    expect(installed.stdout.trim().split('\n')).toHaveLength(1);
    expect(installed.stderr).toBe('');
  });

  it('as the install script of a checkout whose dist/ is not built yet: quietly nothing', async () => {
    fs.rmSync(path.join(root, 'dist'), { recursive: true });
    const r = await build(['--install']);
    expect(r).toMatchObject({ code: 0, stdout: '', stderr: '' });
  });
});
