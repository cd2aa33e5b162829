/**
 * `npm start`: everything in one process for development.
 *
 * Starts an embedded PostgreSQL and a Temporal dev server with its Web UI, unless DATABASE_URL
 * or TEMPORAL_ADDRESS name real ones; applies the migrations; runs the worker and the API; and
 * prints where they are. Production runs `start:api` and `start:worker` instead.
 *
 * Stopping: SIGINT (Ctrl-C) or SIGTERM stops the parts in order (API drain, worker drain,
 * Temporal dev server, PostgreSQL) and exits 0. The two servers run in process groups of their
 * own, so a Ctrl-C reaches only this process and the order holds. What a killed `npm start`
 * left running is found through `.data/dev-stack.json` and PostgreSQL's postmaster.pid, stopped,
 * and started again on the same ports with the same data.
 */
import { createHash, randomBytes } from 'node:crypto';
import { z } from 'zod';
import { mkdirSync } from 'node:fs';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { startApi } from './api/main';
import { loadConfig } from './config';
import { createDb, migrate } from './db';
import { startEmbeddedPostgres, stopStalePostmaster } from './dev/postgres';
import { StackInUseError, StackRecorder, takeOverStack } from './dev/stackState';
import { PROJECT_ROOT, startTemporalDevServer } from './dev/temporalServer';
import { createLogger } from './logger';
import { resolveKeys } from './temporal/codec';
import { connectWorker } from './temporal/connection';
import { createWorker, installRuntimeLogging, limitHeapGrowth } from './worker';

const DEV_SECRET = 'dev-secret-change-me';

class StoppedDuringStartup extends Error {}

/**
 * Resolves when `port` is free on 127.0.0.1 (waiting up to 5 s for a process that was just
 * stopped to release it); otherwise fails naming the port and what to do.
 */
async function requireFreePort(port: number, what: string, instead: string): Promise<number> {
  const free = () =>
    new Promise<boolean>((resolve) => {
      const probe = createServer();
      probe.once('error', () => resolve(false));
      probe.listen(port, '127.0.0.1', () => probe.close(() => resolve(true)));
    });
  for (const deadline = Date.now() + 5_000; !(await free()); await new Promise((r) => setTimeout(r, 250))) {
    if (Date.now() > deadline) throw new Error(`port ${port} (${what}) is in use by another program: free it, or ${instead}`);
  }
  return port;
}

const port = z.coerce.number().int().min(1).max(65535);

/** Settings of `npm start` alone (the service's own are in config.ts). */
const devEnv = z.object({
  /**
   * Where the Temporal dev server's SQLite file and the stack file live. The development payload
   * key stays in the checkout's .data/ (DEV_KEY_FILE), where the operator CLIs look for it.
   */
  DEV_DATA_DIR: z.string().min(1).default(path.join(PROJECT_ROOT, '.data')),
  DEV_POSTGRES_PORT: port.default(54329),
  DEV_TEMPORAL_PORT: port.default(7233),
  DEV_TEMPORAL_UI_PORT: port.default(8233),
});

/**
 * PostgreSQL's data directory for a DEV_DATA_DIR: one per data directory (so per checkout), so
 * two never share one. It lives under the system's temporary folder, which the `postgres` OS
 * user can write when npm start runs as root.
 */
function devPostgresDataDir(dataDir: string): string {
  const owner = createHash('sha256').update(path.resolve(dataDir)).digest('hex').slice(0, 12);
  return path.join(tmpdir(), 'tmc-durable-accounts', `dev-postgres-${owner}`);
}

/** The parts that have started so far; stop() stops them in reverse order of start. */
class Parts {
  private readonly stops: Array<() => Promise<void>> = [];
  add(stop: () => Promise<void>): void {
    this.stops.push(stop);
  }
  async stop(): Promise<void> {
    for (const s of this.stops.splice(0).reverse()) await s().catch(() => undefined);
  }
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

  // 1. Anything an earlier, killed npm start left behind.
  const dev = devEnv.parse(Object.fromEntries(Object.entries(env).filter(([, v]) => v)));
  const dataDir = path.resolve(dev.DEV_DATA_DIR);
  mkdirSync(dataDir, { recursive: true });
  const stackFile = path.join(dataDir, 'dev-stack.json');
  notes.push(...(await takeOverStack(stackFile)));
  const stack = new StackRecorder(stackFile);
  const parts = new Parts();
  parts.add(async () => stack.clear());

  // A signal stops the parts in reverse order of start, and the process exits 0. During
  // start-up it takes effect once the current step ends (each step is bounded).
  let signalled: NodeJS.Signals | undefined;
  let started = false;
  let log: ReturnType<typeof createLogger> | undefined;
  const stop = async () => {
    log?.info({ signal: signalled }, 'stopping: API drain, worker drain, Temporal dev server, PostgreSQL');
    await parts.stop();
    log?.info('stopped');
    process.exit(0);
  };
  const onSignal = (signal: NodeJS.Signals) => {
    if (signalled) return;
    signalled = signal;
    if (started) void stop();
  };
  process.on('SIGINT', onSignal);
  process.on('SIGTERM', onSignal);
  // A closed terminal (SIGHUP) too: by default it killed this process alone, leaving PostgreSQL
  // and the Temporal dev server (in process groups of their own) running.
  process.on('SIGHUP', onSignal);
  const checkpoint = () => {
    if (signalled) throw new StoppedDuringStartup();
  };

  try {
    // The API's port first: taken, it stops everything before anything has started.
    await requireFreePort(apiPort, 'API', 'set PORT');
    // 2. PostgreSQL and the Temporal dev server, on the same ports as last time.
    if (!env.DATABASE_URL) {
      const pgDir = devPostgresDataDir(dataDir);
      const stale = await stopStalePostmaster(pgDir);
      if (stale !== undefined) notes.push(`Stopped a stale PostgreSQL (pid ${stale}) left on its data directory by an earlier npm start`);
      const port = await requireFreePort(dev.DEV_POSTGRES_PORT, 'PostgreSQL', 'set DEV_POSTGRES_PORT, or DATABASE_URL to use another server');
      const pg = await startEmbeddedPostgres({ dataDir: pgDir, port, persistent: true, detached: true });
      parts.add(() => pg.stop());
      stack.record({ postgres: { pid: pg.pid()!, port, dataDir: pgDir } });
      env.DATABASE_URL = await pg.createDatabase('accounts');
      notes.push(`PostgreSQL (embedded):  ${env.DATABASE_URL}`);
    }
    checkpoint();
    let uiUrl: string | undefined;
    if (!env.TEMPORAL_ADDRESS) {
      const port = await requireFreePort(dev.DEV_TEMPORAL_PORT, 'Temporal dev server', 'set DEV_TEMPORAL_PORT, or TEMPORAL_ADDRESS to use a running server');
      const uiPort = await requireFreePort(dev.DEV_TEMPORAL_UI_PORT, 'Temporal UI', 'set DEV_TEMPORAL_UI_PORT');
      const temporal = await startTemporalDevServer({
        port,
        uiPort,
        detached: true,
        dbFilename: path.join(dataDir, 'temporal.sqlite'),
        // The UI decrypts payloads through the API's codec endpoint; the token is in the path.
        uiCodecEndpoint: `http://localhost:${apiPort}/codec/${env.CODEC_AUTH_TOKEN}`,
      });
      parts.add(() => temporal.stop());
      stack.record({ temporal: { pid: temporal.pid!, port, uiPort } });
      env.TEMPORAL_ADDRESS = temporal.address;
      uiUrl = temporal.uiUrl;
    }
    checkpoint();

    // 3. The service: migrations, worker, API.
    const config = loadConfig(env);
    log = createLogger(config.logLevel);
    // This process stops the worker itself, after the API has drained.
    installRuntimeLogging(log, config.worker.sdkMetricsAddress, { handleSignals: false });
    limitHeapGrowth(config.worker.heapGrowingPercent);
    const db = createDb({ url: config.database.url!, poolMax: config.database.poolMax, log });
    parts.add(() => db.destroy());
    await migrate(db, { defaultTenant: config.signup.defaultTenant });
    const keys = resolveKeys(config, log);
    const connection = await connectWorker(config.temporal.connection);
    parts.add(() => connection.close());
    const worker = await createWorker({ config, db, log, connection, keys });
    const workerRun = worker.run();
    parts.add(async () => {
      if (worker.getState() === 'RUNNING') worker.shutdown();
      await workerRun;
    });
    const api = await startApi(config, { db, log, keys });
    parts.add(() => api.close({ drainMs: config.http.shutdownDrainMs }));
    checkpoint();

    const lines = [
      '',
      `API:          http://localhost:${config.http.port}`,
      `Temporal:     ${config.temporal.address} (namespace ${config.temporal.namespace}, task queue ${config.temporal.taskQueue})`,
      ...(uiUrl ? [`Temporal UI:  ${uiUrl}  (payloads decrypted through the API's /codec endpoint)`] : []),
      ...notes,
      '',
    ];
    process.stdout.write(lines.join('\n') + '\n');
    started = true;
  } catch (err) {
    if (err instanceof StoppedDuringStartup) return stop();
    await parts.stop();
    throw err;
  }
}

main().catch((err) => {
  const expected = err instanceof StackInUseError || (err instanceof Error && /in use by another program/.test(err.message));
  console.error(`npm start: ${expected ? (err as Error).message : err instanceof Error ? err.stack ?? err.message : String(err)}`);
  process.exit(1);
});
