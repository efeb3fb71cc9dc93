import os from 'node:os';
import { configDefaults, defineConfig } from 'vitest/config';
import { EXTERNAL_TESTS, externalTestsOff } from './test/external.js';
import { SlowFirstSequencer } from './test/sequencer.js';

export default defineConfig({
  test: {
    include: ['test/**/*.test.ts'],
    // The tests that drive real external programs run once per CI run (test/external.ts).
    exclude: [...configDefaults.exclude, ...(externalTestsOff() ? EXTERNAL_TESTS : [])],
    // A test file that changes /tmp's mode fails (test/setup/tmp-mode-guard.ts); what the fixtures
    // made for a file is stopped and removed when its tests are done (test/setup/cleanup.ts); what
    // the tests spawn does not parse the machine's extra CA bundle (test/setup/extra-ca-certs.ts).
    setupFiles: ['test/setup/tmp-mode-guard.ts', 'test/setup/cleanup.ts', 'test/setup/extra-ca-certs.ts'],
    // Vitest's default is one worker per core but one: a single worker on CI's 2 cores. The test
    // files mostly wait on the daemons, shims and compilers they spawn, and on real timeouts (a
    // request's 5 s deadline, a token refill), so one worker more than there are cores keeps the
    // cores busy: Node 24's run on 2 cores took 178 s with 3 workers, 231 s with 2.
    maxWorkers: os.availableParallelism() + 1,
    // The slowest files first, where vitest has no record of their durations (test/sequencer.ts).
    sequence: { sequencer: SlowFirstSequencer },
    // One worker process runs many test files (each file's tests still in order, its hooks its own):
    // a fresh process and module graph per file cost ~0.4 s of CPU each, ~40 s a run.
    isolate: false,
    // Process tests spawn real daemons and shims; give them room on a loaded CI box.
    testTimeout: 30_000,
    hookTimeout: 30_000,
    reporters: ['default', 'json'],
    // .ci/run runs the suite once per Node version and gives each run its own report.
    outputFile: { json: process.env.KEYBROKER_TEST_REPORT || 'test-results/vitest.json' },
  },
});
