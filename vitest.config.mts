import { defineConfig } from 'vitest/config';

export default defineConfig({
  test: {
    // scripts/check-exit-status.sh runs only the deliberately failing canaries.
    include: process.env.VITEST_EXIT_STATUS_CANARY ? ['test/canary/*.canary.ts'] : ['test/**/*.test.ts'],
    // The Temporal worker's native module crashes the threads pool.
    pool: 'forks',
    // One file at a time: several files hashing argon2 and running workers at once on 2 cores
    // push interactive calls past their 8 s deadline, which is a property of the machine, not
    // of the code under test.
    fileParallelism: false,
    globalSetup: ['test/support/globalSetup.ts'],
    testTimeout: 60_000,
    hookTimeout: 180_000,
    reporters: ['default'],
  },
});
