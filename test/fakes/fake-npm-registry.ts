// A fake npm registry serving one package, enough for `npm install NAME@VERSION`, written from the
// registry's documented API:
//
//   GET /<name, "/" as %2f>   the packument: {name, dist-tags, versions: {V: {name, version, bin,
//                              dist: {tarball, integrity, shasum}}}}
//   GET /tarballs/<file>.tgz  the package tarball (a gzipped tar whose entries start "package/")
//   anything else             404 {"error":"Not found"}
//
// The package has one bin, `claude`, a Node script that prints "<version> (Claude Code)" as the
// real one does for --version. `hang: true` accepts requests and never answers them.
import { spawnSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import fs from 'node:fs';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import os from 'node:os';
import path from 'node:path';

export interface FakeNpmRegistryOptions {
  name: string;
  version: string;
  hang?: boolean;
}

export class FakeNpmRegistry {
  private constructor(
    private readonly server: http.Server,
    readonly url: string,
    private readonly counts: { tarball: number },
  ) {}

  /** Requests for the tarball: how many times the package was downloaded. */
  get tarballRequests(): number {
    return this.counts.tarball;
  }

  static async start(options: FakeNpmRegistryOptions): Promise<FakeNpmRegistry> {
    const tarball = packTarball(options.name, options.version);
    const file = `${options.name.replace('/', '-').replace('@', '')}-${options.version}.tgz`;
    const counts = { tarball: 0 };
    const base = (): string => `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
    const server = http.createServer((req, res) => {
      if (options.hang) return;
      const url = decodeURIComponent((req.url ?? '/').split('?')[0]!);
      if (url === `/${options.name}`) {
        const version = {
          name: options.name,
          version: options.version,
          bin: { claude: 'cli.js' },
          dist: {
            tarball: `${base()}/tarballs/${file}`,
            integrity: `sha512-${createHash('sha512').update(tarball).digest('base64')}`,
            shasum: createHash('sha1').update(tarball).digest('hex'),
          },
        };
        const body = JSON.stringify({
          name: options.name,
          'dist-tags': { latest: options.version },
          versions: { [options.version]: version },
        });
        res.writeHead(200, { 'content-type': 'application/json' }).end(body);
      } else if (url === `/tarballs/${file}`) {
        counts.tarball++;
        res.writeHead(200, { 'content-type': 'application/octet-stream' }).end(tarball);
      } else {
        res.writeHead(404, { 'content-type': 'application/json' }).end('{"error":"Not found"}');
      }
    });
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    return new FakeNpmRegistry(server, base(), counts);
  }

  close(): Promise<void> {
    this.server.closeAllConnections();
    return new Promise((resolve) => this.server.close(() => resolve()));
  }
}

function packTarball(name: string, version: string): Buffer {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'kb-fake-npm-'));
  try {
    const pkg = path.join(dir, 'package');
    fs.mkdirSync(pkg);
    fs.writeFileSync(path.join(pkg, 'package.json'), JSON.stringify({ name, version, bin: { claude: 'cli.js' } }));
    fs.writeFileSync(
      path.join(pkg, 'cli.js'),
      `#!/usr/bin/env node\nprocess.stdout.write(${JSON.stringify(`${version} (Claude Code)\n`)});\n`,
      { mode: 0o755 },
    );
    const out = path.join(dir, 'package.tgz');
    const tar = spawnSync('tar', ['-czf', out, '-C', dir, 'package'], { encoding: 'utf8' });
    if (tar.status !== 0) throw new Error(`tar failed: ${tar.stderr}`);
    return fs.readFileSync(out);
  } finally {
    fs.rmSync(dir, { recursive: true, force: true });
  }
}
