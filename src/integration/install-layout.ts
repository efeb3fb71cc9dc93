// Where this installation of keybroker lives: the package root (found by walking up to its
// package.json, so it works from dist/ and from the TypeScript sources under test), the built CLI
// and shim, and the unit templates shipped beside them ("files" in package.json).
import fs from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { BrokerError } from '../errors.js';
import { findPackageRoot, HARDENING_ADDON } from '../package-root.js';
import type { HelperKind } from './helper-command.js';

export interface InstallLayout {
  root: string;
  /** dist/src/cli/main.js: what the service runs with `daemon`. */
  entry: string;
  /** dist/src/shim/keybroker-shim.cjs: the Node shim, which does everything. */
  shim: string;
  /** dist/native/keybroker-shim: the C fast path, present where a C compiler built it. */
  nativeShim: string;
  /** dist/native/keybroker-hardening.node: the daemon's hardening addon, where a C compiler built it. */
  hardeningAddon: string;
  systemdDir: string;
  launchdDir: string;
}

export function findInstallLayout(from: string = path.dirname(fileURLToPath(import.meta.url))): InstallLayout {
  const root = findPackageRoot(from);
  if (root === undefined)
    throw new BrokerError('INTERNAL', `cannot find keybroker's package.json above ${from}; is the install complete?`);
  return layoutAt(root);
}

export function layoutAt(root: string): InstallLayout {
  return {
    root,
    entry: path.join(root, 'dist', 'src', 'cli', 'main.js'),
    shim: path.join(root, 'dist', 'src', 'shim', 'keybroker-shim.cjs'),
    nativeShim: path.join(root, 'dist', 'native', 'keybroker-shim'),
    hardeningAddon: path.join(root, HARDENING_ADDON),
    systemdDir: path.join(root, 'systemd'),
    launchdDir: path.join(root, 'launchd'),
  };
}

/**
 * npx (npm exec) unpacks a package into <npm cache>/_npx/<hash>/node_modules/, a cache npm may
 * clean at any time: a path into it must not be written anywhere that outlives this run.
 */
export function isNpxCache(root: string): boolean {
  const parts = root.split(path.sep);
  const at = parts.lastIndexOf('_npx');
  return at >= 0 && parts[at + 2] === 'node_modules';
}

/** Refuse, with one line that says to install, to write a path into npx's cache somewhere lasting. */
export function lastingInstallError(layout: InstallLayout, what: string): BrokerError | undefined {
  if (!isNpxCache(layout.root)) return undefined;
  return new BrokerError(
    'NOT_INSTALLED',
    `keybroker runs from npx's cache (${layout.root}), which npm may clean at any time, and ${what} would point there`,
    { fix: 'install it first: npm install -g keybroker' },
  );
}

/**
 * The shim a helper of this kind should run: for apiKeyHelper the native shim when it was built
 * here (about a millisecond a call, against Node's own 50-100 ms start-up); otherwise, and for the
 * --format helpers, which the native shim would only hand over to it, the Node shim.
 */
export function helperShim(layout: InstallLayout, kind: HelperKind): string {
  if (kind !== 'api-key') return layout.shim;
  try {
    fs.accessSync(layout.nativeShim, fs.constants.X_OK);
    return layout.nativeShim;
  } catch {
    return layout.shim;
  }
}
