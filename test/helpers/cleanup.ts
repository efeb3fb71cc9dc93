// Cleanup that the fixtures register themselves, so a test file writes no afterEach or afterAll to
// stop its daemons, close its fake servers and remove its directories. What a test creates goes
// when that test finishes (onTestFinished, pass or fail); what a beforeAll, a describe's body or
// the file's top level creates goes when the file's tests are done. Last registered, first run:
// a daemon stops before its directory is removed, a client closes before its server.
import { afterAll, expect, onTestFinished } from 'vitest';

type Cleanup = () => unknown;

const FILE = expect.getState().testPath;
/** Everything not yet run, test-scoped too: a test cut short by ctx.skip() runs no onTestFinished. */
const pending: Cleanup[] = [];

afterAll(() => runAll(pending.splice(0)));

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
  // The afterAll above is registered once per module load: on the file that loaded it.
  if (expect.getState().testPath !== FILE) {
    throw new Error(`test/helpers/cleanup.ts was loaded for ${FILE}: its fixtures need vitest's isolate (the default)`);
  }
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
