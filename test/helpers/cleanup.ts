// Cleanup that the fixtures register themselves, so a test file writes no afterEach or afterAll to
// stop its daemons, close its fake servers and remove its directories (privateTempDir, below, is
// the temporary directory every fixture makes). What a test creates goes when that test finishes
// (onTestFinished, pass or fail); what a beforeAll, a describe's body or the file's top level
// creates goes when the file's tests are done. Last registered, first run: a daemon stops before
// its directory is removed, a client closes before its server.
import type { ChildProcess } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterAll, onTestFinished } from 'vitest';

type Cleanup = () => unknown;

/**
 * Everything not yet run, test-scoped too: a test cut short by ctx.skip() runs no onTestFinished.
 * One worker runs many test files (isolate: false) and shares this module among them: the setup
 * file test/setup/cleanup.ts drains it in an afterAll of each file.
 */
const pending: Cleanup[] = [];
/** Whether the setup file registers the drain (each file's afterAll). */
let draining = false;

/** For test/setup/cleanup.ts only, in each test file: the file's afterAll runs its cleanups. */
export function drainEachFile(): void {
  draining = true;
  afterAll(() => runAll(pending.splice(0)));
}

async function runAll(cleanups: Cleanup[]): Promise<void> {
  const errors: unknown[] = [];
  for (const c of cleanups.reverse()) {
    try {
      await c();
    } catch (e) {
      errors.push(e);
    }
  }
  if (errors.length === 1) throw errors[0];
  if (errors.length > 1) throw new AggregateError(errors, `${errors.length} cleanups failed`);
}

/** Run `fn` once when the current test finishes, or, outside a test, when this file's tests are done. */
export function cleanUp(fn: Cleanup): void {
  if (!draining) throw new Error('cleanUp needs test/setup/cleanup.ts among the setupFiles in vitest.config.ts');
  let ran = false;
  const once = async (): Promise<void> => {
    if (ran) return;
    ran = true;
    const i = pending.indexOf(once);
    if (i >= 0) pending.splice(i, 1);
    await fn();
  };
  pending.push(once);
  try {
    onTestFinished(once);
  } catch {
    // Not inside a test (it throws there): the file's afterAll runs it.
  }
}

/**
 * Signal a process a test started (SIGTERM unless told) when the test (or file) is done, if it
 * still runs, and wait for it to exit: a daemon that is stopping still writes into its directory,
 * which the cleanup before it removes.
 */
export function killWhenDone(child: ChildProcess, signal: NodeJS.Signals = 'SIGTERM'): void {
  const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()));
  cleanUp(async () => {
    if (child.pid === undefined || child.exitCode !== null || child.signalCode !== null) return;
    child.kill(signal);
    await exited;
  });
}

/**
 * A private (0700) temporary directory, removed when the test that made it finishes (made outside
 * a test: when the file's tests are done).
 */
export function privateTempDir(prefix = 'kb-'): string {
  // Short base path: Unix socket paths are limited to ~104 bytes.
  const base = fs.existsSync('/tmp') ? '/tmp' : os.tmpdir();
  const dir = fs.mkdtempSync(path.join(base, prefix));
  fs.chmodSync(dir, 0o700);
  cleanUp(() => removeDir(dir));
  return dir;
}

/** Remove a test's directory, even where a test took away its own write or search permission. */
function removeDir(dir: string): void {
  // (Retried: a daemon still stopping may write its last audit record meanwhile, ENOTEMPTY.)
  try {
    fs.rmSync(dir, { recursive: true, force: true, maxRetries: 3 });
  } catch {
    // (Only a non-root run gets here: root ignores the modes.)
    const open = (d: string): void => {
      fs.chmodSync(d, 0o700);
      for (const e of fs.readdirSync(d, { withFileTypes: true })) if (e.isDirectory()) open(path.join(d, e.name));
    };
    open(dir);
    fs.rmSync(dir, { recursive: true, force: true });
  }
}
