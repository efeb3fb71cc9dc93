// The order vitest starts the test files in. With three workers on CI's two cores, a slow file
// started last runs on alone at the end. Vitest starts first the files that took longest the last
// time, from its results cache in node_modules/.vite; a fresh checkout (CI's first run) has none,
// and vitest then starts the largest files first, and the slowest are not the largest: on
// 2026-12-05 CI's first run went on alone for ~40 s with three small files that wait on real
// timeouts. So where vitest has no record of a file, the files that drive real external programs
// (test/external.ts) start first, then the ones below, then the rest, largest first.
import path from 'node:path';
import picomatch from 'picomatch';
import { BaseSequencer, type TestSpecification } from 'vitest/node';
import { EXTERNAL_TESTS } from './external.js';

/**
 * The other files that took 9 s or more in one of CI's runs on 2026-12-05, slowest first. Only an
 * order: a file missing here, or here no longer slow, costs a few seconds at most.
 */
export const SLOW_TESTS: readonly string[] = [
  'test/shim/native-parity.test.ts',
  'test/shim/shim.test.ts',
  'test/shim/rejection.test.ts',
  'test/security/socket-trust.test.ts',
  'test/telemetry/telemetry-collector-down.test.ts',
  'test/cli/run.test.ts',
  'test/integration/jwt-expiry.test.ts',
  'test/daemon/robustness.test.ts',
  'test/daemon/protocol.test.ts',
  'test/cli/init.test.ts',
  'test/daemon/lifecycle.test.ts',
  'test/security/non-dumpable.test.ts',
];

const isExternal = picomatch([...EXTERNAL_TESTS]);

export class SlowFirstSequencer extends BaseSequencer {
  override async sort(files: TestSpecification[]): Promise<TestSpecification[]> {
    const sorted = await super.sort(files);
    const root = this.ctx.config.root;
    // With forward slashes, as vitest's cache keys and test/external.ts's globs have them.
    const relative = (f: TestSpecification): string => path.relative(root, f.moduleId).split(path.sep).join('/');
    const recorded = (f: TestSpecification): boolean =>
      this.ctx.cache.getFileTestResults(`${f.project.name}:${relative(f)}`) !== undefined;
    if (sorted.every(recorded)) return sorted;
    // A stable sort: within a rank, vitest's own order.
    const rank = (f: TestSpecification): number => {
      const file = relative(f);
      if (isExternal(file)) return 0;
      const slow = SLOW_TESTS.indexOf(file);
      return slow === -1 ? SLOW_TESTS.length + 1 : slow + 1;
    };
    return sorted
      .map((f) => ({ f, r: rank(f) }))
      .sort((a, b) => a.r - b.r)
      .map(({ f }) => f);
  }
}
