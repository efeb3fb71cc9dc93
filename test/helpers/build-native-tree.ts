// A copy of what scripts/build-native.mjs needs (the scripts, the C sources, the built modules the
// header is generated from, node-api-headers), so that a test runs the build on it and never
// touches this checkout's dist/. For build-native.test.ts (what depends on the Node that builds)
// and build-native-compiler.test.ts (how the build reacts to the compiler).
import fs from 'node:fs';
import path from 'node:path';
import { privateTempDir, ROOT, run } from './daemon.js';

const inDir = (dir: string): string[] => fs.readdirSync(path.join(ROOT, dir)).map((f) => `${dir}/${f}`);
const FILES = [
  'scripts/build-native.mjs',
  'scripts/native-header.mjs',
  'src/shim/keybroker-shim.c',
  ...inDir('src/shim/native'),
  'src/daemon/native/hardening.c',
  // The built modules the header is generated from (scripts/native-header.mjs), and what they import.
  ...inDir('dist/src/shim').filter((f) => f.endsWith('.js')),
  ...inDir('dist/src/client'),
  ...inDir('dist/src/protocol'),
];

/** One line per target: the native shim and the hardening addon. */
export const TARGETS = 2;

export interface BuildTree {
  root: string;
  /** A PATH with node and nothing else: no cc. */
  noCompilerPath: string;
  /** Where the build puts the native shim, and the hardening addon. */
  binary: string;
  addon: string;
  /** Run scripts/build-native.mjs in the copy, with CC and CFLAGS unset unless `env` sets them. */
  build(args: string[], env?: NodeJS.ProcessEnv): ReturnType<typeof run>;
}

/** A fresh copy, removed when the test (or, made in a beforeAll, the file) that made it is done. */
export function buildTree(): BuildTree {
  const root = privateTempDir('kb-build-native-');
  for (const f of FILES) {
    fs.mkdirSync(path.dirname(path.join(root, f)), { recursive: true });
    fs.copyFileSync(path.join(ROOT, f), path.join(root, f));
  }
  fs.writeFileSync(path.join(root, 'package.json'), '{"type":"module"}\n');
  // The addon's headers, a dependency of the package.
  fs.cpSync(path.join(ROOT, 'node_modules', 'node-api-headers'), path.join(root, 'node_modules', 'node-api-headers'), {
    recursive: true,
  });
  const noCompilerPath = path.join(root, 'bin');
  fs.mkdirSync(noCompilerPath);
  fs.symlinkSync(process.execPath, path.join(noCompilerPath, 'node'));
  return {
    root,
    noCompilerPath,
    binary: path.join(root, 'dist', 'native', 'keybroker-shim'),
    addon: path.join(root, 'dist', 'native', 'keybroker-hardening.node'),
    build: (args, env = {}) =>
      run(process.execPath, [path.join(root, 'scripts', 'build-native.mjs'), ...args], {
        env: { ...process.env, CC: '', CFLAGS: '', ...env },
        cwd: root,
        timeoutMs: 60_000,
      }),
  };
}
