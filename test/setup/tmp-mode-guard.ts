// Every test file runs with this: /tmp (and the temp directory Node names, if another) must keep
// its mode. A full run once found /tmp at 0755 half-way, and the tests that run as a second user
// then failed for want of a writable /tmp, far from whatever changed it. Here the file during which
// it changed fails, naming the change, and the mode is put back so the files after it are not
// failed in turn. (Another process on the machine could be the cause: the message says so.)
import fs from 'node:fs';
import os from 'node:os';
import { afterAll, beforeAll } from 'vitest';

const DIRS = [...new Set(['/tmp', os.tmpdir()])].filter((d) => fs.existsSync(d));
const modeOf = (dir: string): number => fs.statSync(dir).mode & 0o7777;
const octal = (mode: number): string => mode.toString(8).padStart(4, '0');

let before: Map<string, number>;
beforeAll(() => {
  before = new Map(DIRS.map((d) => [d, modeOf(d)]));
});
afterAll(() => {
  const changed = [...before].filter(([dir, mode]) => modeOf(dir) !== mode);
  if (changed.length === 0) return;
  const what = changed.map(([dir, mode]) => `${dir} from ${octal(mode)} to ${octal(modeOf(dir))}`).join(', ');
  for (const [dir, mode] of changed) fs.chmodSync(dir, mode);
  throw new Error(
    `mode changed while this test file ran: ${what} (put back; if nothing here chmods it, look for another process)`,
  );
});
