// A second local user for tests about what another user can do (plant a socket, own a directory).
// Created when the tests run as root (as in CI), idempotently; otherwise the caller skips its test
// and prints why.
import { spawnSync } from 'node:child_process';

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
