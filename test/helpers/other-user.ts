// A second local user for tests about what another user can do (plant a socket, own a directory).
// Created when the tests run as root (as in CI), idempotently; otherwise the caller skips its test
// and prints why.
import { spawnSync } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';

export const OTHER_USER = 'kb-test-other';

export type OtherUser = { name: string; uid: number; gid: number; skip?: undefined } | { skip: string };

function lookup(name: string): { uid: number; gid: number } | undefined {
  const uid = spawnSync('id', ['-u', name], { encoding: 'utf8' });
  const gid = spawnSync('id', ['-g', name], { encoding: 'utf8' });
  if (uid.status !== 0 || gid.status !== 0) return undefined;
  return { uid: Number(uid.stdout.trim()), gid: Number(gid.stdout.trim()) };
}

export function otherUser(): OtherUser {
  if (process.getuid?.() !== 0) return { skip: 'needs root to create a second user (CI runs the tests as root)' };
  let ids = lookup(OTHER_USER);
  if (!ids) {
    // Two test files may race to create it: whichever loses sees "already exists", then finds it.
    const made = spawnSync(
      'useradd',
      ['--system', '--no-create-home', '--shell', '/usr/sbin/nologin', '--user-group', OTHER_USER],
      { encoding: 'utf8' },
    );
    ids = lookup(OTHER_USER);
    if (!ids)
      return {
        skip: `cannot create the test user ${OTHER_USER} with useradd: ${made.error?.message ?? made.stderr.trim()}`,
      };
  }
  return { name: OTHER_USER, ...ids };
}

/**
 * A node the other user can run: this process's own, unless it lies where that user cannot reach
 * (CI's Node 22 and 24 live inside the checkout, which may sit in a 0700 directory); then a copy
 * in `dir`, which that user must be able to read.
 */
export function nodeFor(user: { uid: number; gid: number }, dir: string): string {
  const probe = spawnSync(process.execPath, ['--version'], { uid: user.uid, gid: user.gid, stdio: 'ignore' });
  if (probe.status === 0) return process.execPath;
  const copy = path.join(dir, 'node-bin', 'node');
  fs.mkdirSync(path.dirname(copy), { recursive: true, mode: 0o755 });
  fs.copyFileSync(process.execPath, copy);
  fs.chmodSync(copy, 0o755);
  return copy;
}
