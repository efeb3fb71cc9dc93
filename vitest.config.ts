import { defineConfig } from 'vitest/config';

export default defineConfig({
  test: {
    include: ['test/**/*.test.ts'],
    // Process tests spawn real daemons and shims; give them room on a loaded CI box.
    testTimeout: 30_000,
    hookTimeout: 30_000,
    reporters: ['default', 'json'],
    // .ci/run runs the suite once per Node version and gives each run its own report.
    outputFile: { json: process.env.KEYBROKER_TEST_REPORT || 'test-results/vitest.json' },
  },
});
