// A copy of this checkout's build as an installation of its own: dist/src and dist/adapters,
// package.json (the daemon and doctor find the package root by it), and this checkout's
// node_modules, symlinked. The native parts come only when asked for, so a test can run a daemon
// installed without its hardening addon, or one another user can run.
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

export function installCopy(root: string, options: { addon?: boolean } = {}): InstallCopy {
  for (const sub of ['dist/src', 'dist/adapters'])
    fs.cpSync(path.join(ROOT, sub), path.join(root, sub), { recursive: true });
  fs.copyFileSync(path.join(ROOT, 'package.json'), path.join(root, 'package.json'));
  fs.symlinkSync(path.join(ROOT, 'node_modules'), path.join(root, 'node_modules'));
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
