// The kernel's refusal a sandboxed command meets, without Claude Code: test/helpers/deny-unix-sockets.c
// installs the seccomp filter (socket(AF_UNIX) → EPERM) and runs a program under it. Compiled once
// per test file into its own directory. Linux only; where there is no C compiler the build fails
// loudly (CI has one: the native shim is built with it).
import path from 'node:path';
import { ROOT, run } from './daemon.js';

/** Compile the wrapper into `dir`; returns its path. */
export async function buildDenyUnixSockets(dir: string): Promise<string> {
  const out = path.join(dir, 'deny-unix-sockets');
  const cc = await run(process.env.CC || 'cc', [
    '-O1',
    '-o',
    out,
    path.join(ROOT, 'test', 'helpers', 'deny-unix-sockets.c'),
  ]);
  if (cc.code !== 0) throw new Error(`cannot build deny-unix-sockets: ${cc.stderr}`);
  return out;
}
