/**
 * `npm start`: everything in one process for development.
 *
 * Starts an embedded PostgreSQL and a Temporal dev server with its Web UI, unless DATABASE_URL
 * or TEMPORAL_ADDRESS name real ones; applies the migrations; runs the worker and the API; and
 * prints where they are. Production runs `start:api` and `start:worker` instead.
 */
import path from 'node:path';
import { randomBytes } from 'node:crypto';
import { mkdirSync } from 'node:fs';
import { startApi } from './api/main';
import { loadConfig } from './config';
import { createDb, migrate } from './db';
import { defaultDevDataDir, startEmbeddedPostgres } from './dev/postgres';
import { freePort } from './dev/ports';
import { PROJECT_ROOT, startTemporalDevServer } from './dev/temporalServer';
import { createLogger } from './logger';
import { resolveKeys } from './temporal/codec';
import { connectWorker } from './temporal/connection';
import { createWorker, installRuntimeLogging } from './worker';

const DEV_SECRET = 'dev-secret-change-me';

async function portOr(preferred: number): Promise<number> {
  const { createServer } = await import('node:net');
  return new Promise((resolve) => {
    const probe = createServer();
    probe.once('error', () => freePort().then(resolve));
    probe.listen(preferred, '127.0.0.1', () => probe.close(() => resolve(preferred)));
  });
}

async function main() {
  const env = { ...process.env };
  const notes: string[] = [];
  if (!env.TMC_SERVER_SECRET_FOR_COMMUNICATING_TO_SECRET_PROJECT) {
    env.TMC_SERVER_SECRET_FOR_COMMUNICATING_TO_SECRET_PROJECT = DEV_SECRET;
    notes.push(`TMC shared secret (development default): ${DEV_SECRET}`);
  }
  if (!env.CODEC_AUTH_TOKEN) env.CODEC_AUTH_TOKEN = randomBytes(24).toString('base64url');
  const apiPort = Number(env.PORT || 3000);
  const stops: Array<() => Promise<void>> = [];

  if (!env.DATABASE_URL) {
    const pg = await startEmbeddedPostgres({ dataDir: defaultDevDataDir(), port: await portOr(54329), persistent: true });
    stops.push(() => pg.stop());
    env.DATABASE_URL = await pg.createDatabase('accounts');
    notes.push(`PostgreSQL (embedded):  ${env.DATABASE_URL}`);
  }
  let uiUrl: string | undefined;
  if (!env.TEMPORAL_ADDRESS) {
    const dataDir = path.join(PROJECT_ROOT, '.data');
    mkdirSync(dataDir, { recursive: true });
    const temporal = await startTemporalDevServer({
      port: await portOr(7233),
      uiPort: await portOr(8233),
      dbFilename: path.join(dataDir, 'temporal.sqlite'),
      // The UI decrypts payloads through the API's codec endpoint; the token is in the path.
      uiCodecEndpoint: `http://localhost:${apiPort}/codec/${env.CODEC_AUTH_TOKEN}`,
    });
    stops.push(() => temporal.stop());
    env.TEMPORAL_ADDRESS = temporal.address;
    uiUrl = temporal.uiUrl;
  }

  const config = loadConfig(env);
  const log = createLogger(config.logLevel);
  installRuntimeLogging(log, config.worker.sdkMetricsAddress);
  const db = createDb({ url: config.database.url!, poolMax: config.database.poolMax, log });
  await migrate(db, { defaultTenant: config.signup.defaultTenant });

  const keys = resolveKeys(config, log);
  const connection = await connectWorker(config.temporal.connection);
  const worker = await createWorker({ config, db, log, connection, keys });
  const workerRun = worker.run();
  const api = await startApi(config, { db, log, keys });

  const lines = [
    '',
    `API:          http://localhost:${config.http.port}`,
    `Temporal:     ${config.temporal.address} (namespace ${config.temporal.namespace}, task queue ${config.temporal.taskQueue})`,
    ...(uiUrl ? [`Temporal UI:  ${uiUrl}  (payloads decrypted through the API's /codec endpoint)`] : []),
    ...notes,
    '',
  ];
  process.stdout.write(lines.join('\n') + '\n');

  let stopping = false;
  const stop = async () => {
    if (stopping) return;
    stopping = true;
    await api.close();
    worker.shutdown();
    await workerRun.catch(() => undefined);
    await connection.close();
    await db.destroy();
    for (const s of stops.reverse()) await s().catch(() => undefined);
    process.exit(0);
  };
  process.once('SIGINT', stop);
  process.once('SIGTERM', stop);
}

main().catch((err) => {
  console.error(err instanceof Error ? err.stack ?? err.message : err);
  process.exit(1);
});
