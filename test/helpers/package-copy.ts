// The package as npm unpacks it from the tarball: every "files" entry of package.json and the
// manifest, copied from this checkout's build (no node_modules: the CLI bundle carries what its
// commands here need). Cheaper than `npm pack` + `npm install` for tests about where it lives.
import fs from 'node:fs';
import path from 'node:path';
import { ROOT } from './daemon.js';

export function copyPackage(to: string): void {
  const manifest = JSON.parse(fs.readFileSync(path.join(ROOT, 'package.json'), 'utf8')) as { files: string[] };
  for (const entry of ['package.json', ...manifest.files]) {
    if (!fs.existsSync(path.join(ROOT, entry))) continue;
    fs.cpSync(path.join(ROOT, entry), path.join(to, entry), { recursive: true });
  }
}
