import { fileURLToPath } from 'node:url';
import { defineConfig } from 'vitest/config';

// `npm run test:cluster`: the service on a real Temporal cluster (PostgreSQL persistence, SQL
// visibility, mTLS), from its production entry points. Brings up its own PostgreSQL and Temporal
// server (test/cluster/temporalCluster.ts); needs none of the dev-server global setup.
export default defineConfig({
  test: {
    root: fileURLToPath(new URL('../..', import.meta.url)),
    include: ['test/cluster/**/*.cluster.ts'],
    pool: 'forks',
    maxWorkers: 1,
    fileParallelism: false,
    testTimeout: 600_000,
    hookTimeout: 600_000,
    reporters: ['default'],
  },
});
