// A copy of this checkout's build as an installation of its own: dist/src and dist/adapters,
// package.json (the daemon and doctor find the package root by it), and this checkout's
// node_modules, symlinked (copied, for another user who cannot reach the checkout's). The native parts come only when asked for, so a test can run a daemon
// installed without its hardening addon, or one another user can run.
import { spawnSync } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { ROOT } from './daemon.js';

export const HARDENING_ADDON = path.join(ROOT, 'dist', 'native', 'keybroker-hardening.node');

export interface InstallCopy {
  root: string;
  cli: string;
  shim: string;
  /** Where the hardening addon is (or would be) in the copy. */
  addon: string;
  cleanup(): void;
}

export function installCopy(
  root: string,
  options: {
    addon?: boolean;
    /** Another user who runs the copy: gets node_modules copied where the checkout is out of their reach. */
    user?: { uid: number; gid: number };
  } = {},
): InstallCopy {
  for (const sub of ['dist/src', 'dist/adapters'])
    fs.cpSync(path.join(ROOT, sub), path.join(root, sub), { recursive: true });
  fs.copyFileSync(path.join(ROOT, 'package.json'), path.join(root, 'package.json'));
  const modules = path.join(ROOT, 'node_modules');
  if (options.user && !canEnter(options.user, modules)) copyDependencies(path.join(root, 'node_modules'));
  else fs.symlinkSync(modules, path.join(root, 'node_modules'));
  const addon = path.join(root, 'dist', 'native', 'keybroker-hardening.node');
  if (options.addon) {
    fs.mkdirSync(path.dirname(addon), { recursive: true });
    fs.copyFileSync(HARDENING_ADDON, addon);
  }
  return {
    root,
    cli: path.join(root, 'dist/src/cli/main.js'),
    shim: path.join(root, 'dist/src/shim/keybroker-shim.cjs'),
    addon,
    cleanup: () => fs.rmSync(root, { recursive: true, force: true }),
  };
}

function canEnter(user: { uid: number; gid: number }, dir: string): boolean {
  return spawnSync('/bin/sh', ['-c', 'test -x "$1"', 'sh', dir], { uid: user.uid, gid: user.gid }).status === 0;
}

/**
 * The package's runtime dependencies and theirs, from this checkout's (hoisted) node_modules: what
 * npm would install beside it. Nested node_modules come with the package that holds them.
 */
function copyDependencies(to: string): void {
  const from = path.join(ROOT, 'node_modules');
  const manifest = (
    dir: string,
  ): { dependencies?: Record<string, string>; optionalDependencies?: Record<string, string> } =>
    JSON.parse(fs.readFileSync(path.join(dir, 'package.json'), 'utf8'));
  const pending = Object.keys(manifest(ROOT).dependencies ?? {});
  const copied = new Set<string>();
  for (let name = pending.pop(); name !== undefined; name = pending.pop()) {
    const dir = path.join(from, name);
    if (copied.has(name) || !fs.existsSync(dir)) continue;
    copied.add(name);
    fs.cpSync(dir, path.join(to, name), { recursive: true });
    const m = manifest(dir);
    pending.push(...Object.keys({ ...m.dependencies, ...m.optionalDependencies }));
  }
}

/** a+rX over a tree, for another user: a copy keeps this checkout's modes, which may be private. */
export function openToAll(dir: string): void {
  fs.chmodSync(dir, 0o755);
  for (const entry of fs.readdirSync(dir, { withFileTypes: true })) {
    const p = path.join(dir, entry.name);
    if (entry.isSymbolicLink()) continue;
    if (entry.isDirectory()) openToAll(p);
    else fs.chmodSync(p, fs.statSync(p).mode | 0o444);
  }
}
