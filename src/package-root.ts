// Where this installation of keybroker lives: the directory of its package.json, found by walking
// up from a module's own directory. That works from the bundle (dist/src/cli/ and its chunks), from
// the unbundled build and from the TypeScript sources under test alike.
import fs from 'node:fs';
import path from 'node:path';

/**
 * The daemon's hardening addon, from the package root: built at install time by
 * scripts/build-native.mjs where a C compiler exists (src/daemon/native/hardening.c).
 */
export const HARDENING_ADDON = path.join('dist', 'native', 'keybroker-hardening.node');

/** The keybroker package root above `from`, or undefined when there is none. */
export function findPackageRoot(from: string): string | undefined {
  let dir = from;
  for (;;) {
    const manifest = path.join(dir, 'package.json');
    if (fs.existsSync(manifest) && isKeybrokerManifest(manifest)) return dir;
    const parent = path.dirname(dir);
    if (parent === dir) return undefined;
    dir = parent;
  }
}

function isKeybrokerManifest(file: string): boolean {
  try {
    return (JSON.parse(fs.readFileSync(file, 'utf8')) as { name?: unknown }).name === 'keybroker';
  } catch {
    return false;
  }
}
