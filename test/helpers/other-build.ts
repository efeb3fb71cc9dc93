// Another build of keybroker, for upgrade tests: a copy of dist/ whose build id is changed, as if
// it were built from other sources. Runs with this checkout's node_modules (symlinked).
import fs from 'node:fs';
import path from 'node:path';
import { installCopy } from './install-copy.js';

export interface OtherBuild {
  root: string;
  cli: string;
  shim: string;
  build: string;
  cleanup(): void;
}

export function otherBuild(dir: string, build = 'a0a0a0a0a0a0'): OtherBuild {
  const { root, cli, shim, cleanup } = installCopy(path.join(dir, 'other-build'));
  // Every built file that carries the id: the tsc output, the shim bundle, and the CLI bundle's
  // chunk that holds build-info (its name has a content hash).
  const built = (fs.readdirSync(path.join(root, 'dist/src'), { recursive: true }) as string[])
    .filter((f) => /\.c?js$/.test(f))
    .map((f) => path.join(root, 'dist/src', f));
  for (const file of built) {
    let text = fs.readFileSync(file, 'utf8');
    if (!/ \/\* build-id \*\//.test(text)) continue;
    text = text.replace(/(['"])[0-9a-f]{12}\1 \/\* build-id \*\//g, `$1${build}$1 /* build-id */`);
    fs.writeFileSync(file, text);
  }
  return { root, cli, shim, build, cleanup };
}
