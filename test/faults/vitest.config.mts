import { fileURLToPath } from 'node:url';
import { defineConfig } from 'vitest/config';

// `npm run test:faults`: the fault-injection suite. Reduced by default (it runs in CI);
// FAULTS_FULL=1 runs the full sizes. The cases run one after another: each injects faults into
// a whole service and counts what survived, and two of them at once on two cores would measure
// each other.
export default defineConfig({
  test: {
    root: fileURLToPath(new URL('../..', import.meta.url)),
    include: ['test/faults/**/*.fault.ts'],
    // The Temporal worker's native module crashes the threads pool.
    pool: 'forks',
    maxWorkers: 1,
    fileParallelism: false,
    globalSetup: ['test/support/globalSetup.ts'],
    testTimeout: 900_000,
    hookTimeout: 300_000,
    reporters: ['default'],
  },
});
