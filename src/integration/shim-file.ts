// Whether the keybroker-shim a helper or an auth command names would run, for doctor's checks of
// Claude Code's helpers and of Codex's auth command.
import fs from 'node:fs/promises';
import path from 'node:path';
import { collapseHome } from '../client/socket-path.js';
import type { DoctorCheck } from './doctor.js';
import { findOnPath } from './service-manager.js';

export interface ShimFileContext {
  id: string;
  /** What runs it, as the messages name it: "apiKeyHelper", "Codex's auth command". */
  who: string;
  /** The program whose PATH it is found on. */
  program: string;
  /** The command that rewrites it (with --force). */
  setup: string;
  env: NodeJS.ProcessEnv;
  home: string;
}

/**
 * Whether the shim a helper or auth command names would run: found (absolute, or on the
 * program's PATH), a file, executable, its node reachable, the Node shim beside a native one. A
 * failing check, or the shim's path and whether it is the native one.
 */
export async function shimFileCheck(
  written: string,
  interpreter: string | undefined,
  ctx: ShimFileContext,
): Promise<{ check: DoctorCheck } | { shim: string; native: boolean }> {
  const { id, who, home } = ctx;
  const fail = (message: string, fix = `${ctx.setup} --force`): { check: DoctorCheck } => ({
    check: { id, status: 'fail', message, fix },
  });
  const shim = path.isAbsolute(written)
    ? written
    : written.includes('/')
      ? undefined
      : await findOnPath(written, ctx.env.PATH);
  if (shim === undefined)
    return fail(
      `${who} runs ${written}, which is ${written.includes('/') ? 'a relative path (the helper runs from an unknown directory)' : 'not on PATH'}`,
      `${ctx.setup} --force (writes the absolute path)`,
    );
  let st;
  try {
    st = await fs.stat(shim);
  } catch {
    return fail(
      `${who} runs ${collapseHome(shim, home)}, which does not exist (moved, or keybroker reinstalled elsewhere?)`,
    );
  }
  if (!st.isFile()) return fail(`${who} runs ${collapseHome(shim, home)}, which is not a file`);
  if (interpreter !== undefined) return { shim, native: false };
  if (!(await isExecutable(shim)))
    return fail(`${who} runs ${collapseHome(shim, home)}, which is not executable`, `chmod +x ${shim}`);
  const head = await readHead(shim);
  if (/^#!\s*\/usr\/bin\/env\s+node\b/.test(head) && !(await findOnPath('node', ctx.env.PATH)))
    return fail(
      `${who} runs ${collapseHome(shim, home)} with "#!/usr/bin/env node", and node is not on ${ctx.program}'s PATH`,
      'put node on PATH, or make the helper "<absolute node> <shim> <profile>"',
    );
  // The Node shim is a script; the native one (dist/native/keybroker-shim) a compiled binary.
  const native = !head.startsWith('#!');
  const nodeShim = path.join(path.dirname(shim), '..', 'src', 'shim', 'keybroker-shim.cjs');
  if (native && !(await isExecutable(nodeShim)))
    return fail(
      `${who} runs the native keybroker-shim (${collapseHome(shim, home)}), which hands autostart and every option but --socket and --refresh-interval-ms to ${collapseHome(nodeShim, home)}, which is missing`,
      `reinstall keybroker, then: ${ctx.setup} --force`,
    );
  return { shim, native };
}

export async function isExecutable(file: string): Promise<boolean> {
  return fs.access(file, fs.constants.X_OK).then(
    () => true,
    () => false,
  );
}

async function readHead(file: string): Promise<string> {
  const handle = await fs.open(file, 'r');
  try {
    const buf = Buffer.alloc(128);
    const { bytesRead } = await handle.read(buf, 0, buf.length, 0);
    return buf.subarray(0, bytesRead).toString('utf8');
  } finally {
    await handle.close();
  }
}
