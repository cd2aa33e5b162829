/**
 * A whole service for one test file: its own database (on the shared PostgreSQL), its own task
 * queue (on the shared Temporal dev server), a fake TMC, a worker and the API on a free port.
 */
import { randomUUID } from 'node:crypto';
import { Writable } from 'node:stream';
import { Client } from '@temporalio/client';
import { DefaultLogger, Runtime, type Worker } from '@temporalio/worker';
import pg from 'pg';
import { inject } from 'vitest';
import { startApi, type RunningApi } from '../../src/api/main';
import { loadConfig, type Config } from '../../src/config';
import { createDb, migrate, type Db } from '../../src/db';
import { createLogger, type Logger } from '../../src/logger';
import { createWorker } from '../../src/worker';
import { AesGcmCodec, dataConverter, resolveKeys } from '../../src/temporal/codec';
import { connectClient, connectWorker } from '../../src/temporal/connection';
import type { DataConverter, PayloadCodec } from '@temporalio/common';
import { freePort } from '../../src/dev/ports';
import { FakeTmc } from './fakeTmc';
import { SmtpCapture } from './smtpCapture';
import { SECRET, serviceEnv } from './serviceEnv';

export { CODEC_TOKEN, eventually, SECRET } from './serviceEnv';

// The SDK's own worker logs are noise in test output; warnings and errors still show.
try {
  Runtime.install({ logger: new DefaultLogger('WARN') });
} catch {
  // already installed in this process
}

export interface Harness {
  config: Config;
  /** The environment `config` was loaded from: what a process of the service's own would get. */
  env: Record<string, string>;
  db: Db;
  tmc: FakeTmc;
  mail: SmtpCapture;
  api: RunningApi;
  client: Client;
  /** The service's payload codec, to read what it put into Temporal. */
  codec: PayloadCodec;
  /** The service's data converter (codec and failure converter), e.g. to replay a history. */
  dataConverter: DataConverter;
  log: Logger;
  /** Every log line the service wrote, as raw JSON text. */
  logLines: string[];
  startWorker(): Promise<void>;
  stopWorker(): Promise<void>;
  request(method: string, path: string, options?: { body?: unknown; raw?: string; headers?: Record<string, string> }): Promise<{ status: number; body: any; text: string; headers: Headers }>;
  tmcRequest(method: string, path: string, body?: unknown): Promise<{ status: number; body: any; text: string; headers: Headers }>;
  close(): Promise<void>;
}

export async function createDatabase(): Promise<string> {
  const adminUrl = inject('postgresAdminUrl');
  const name = `t_${randomUUID().replace(/-/g, '').slice(0, 16)}`;
  const admin = new pg.Client({ connectionString: adminUrl });
  await admin.connect();
  await admin.query(`CREATE DATABASE ${name}`);
  await admin.end();
  const url = new URL(adminUrl);
  url.pathname = `/${name}`;
  return url.toString();
}

export interface HarnessOptions {
  env?: Record<string, string>;
  worker?: boolean;
  /** Use this database instead of a fresh one on the shared PostgreSQL. */
  databaseUrl?: string;
  /** Use this Temporal server instead of the shared dev server. */
  temporalAddress?: string;
}

export async function startHarness(options: HarnessOptions = {}): Promise<Harness> {
  const tmc = await new FakeTmc().start();
  const mail = await new SmtpCapture().start();
  const port = await freePort();
  const databaseUrl = options.databaseUrl ?? (await createDatabase());
  const env = {
    ...serviceEnv({ name: 'test', databaseUrl, temporalAddress: options.temporalAddress ?? inject('temporalAddress'), tmcUrl: tmc.url, smtpUrl: mail.url, port }),
    ...options.env,
  };
  const config = loadConfig(env);
  const logLines: string[] = [];
  const sink = new Writable({
    write(chunk, _enc, cb) {
      logLines.push(String(chunk));
      cb();
    },
  });
  const log = createLogger(config.logLevel, sink);
  const db = createDb({ url: databaseUrl, poolMax: 20, log });
  await migrate(db, { defaultTenant: config.signup.defaultTenant });

  // The development key in .data/, shared by every test process and the CLIs they run.
  const keys = resolveKeys(config, log);
  const nativeConnection = await connectWorker(config.temporal.connection);
  let worker: Worker | undefined;
  let running: Promise<void> | undefined;
  const startWorker = async () => {
    if (worker) return;
    worker = await createWorker({ config, db, log, keys, connection: nativeConnection, workflowBundle: { codePath: inject('workflowBundlePath') } });
    running = worker.run();
  };
  const stopWorker = async () => {
    if (!worker) return;
    worker.shutdown();
    await running;
    worker = undefined;
  };
  if (options.worker !== false) await startWorker();

  const api = await startApi(config, { db, log, keys });
  const connection = await connectClient(config.temporal.connection);
  const client = new Client({ connection, namespace: config.temporal.namespace, dataConverter: dataConverter(keys) });

  const request: Harness['request'] = async (method, path, opts = {}) => {
    const headers: Record<string, string> = { ...opts.headers };
    let body: string | undefined = opts.raw;
    if (opts.body !== undefined) {
      body = JSON.stringify(opts.body);
      headers['content-type'] ??= 'application/json';
    }
    const res = await fetch(api.url + path, { method, headers, body });
    const text = await res.text();
    let parsed: unknown;
    try {
      parsed = JSON.parse(text);
    } catch {
      parsed = undefined;
    }
    return { status: res.status, body: parsed, text, headers: res.headers };
  };

  return {
    config,
    env,
    db,
    tmc,
    mail,
    api,
    client,
    codec: new AesGcmCodec(keys),
    dataConverter: dataConverter(keys),
    log,
    logLines,
    startWorker,
    stopWorker,
    request,
    tmcRequest: (method, path, body) => request(method, path, { body, headers: { authorization: SECRET } }),
    async close() {
      const steps: Array<[string, () => Promise<unknown>]> = [
        ['api', () => api.close()],
        ['worker', stopWorker],
        ['native connection', () => nativeConnection.close()],
        ['client connection', () => connection.close()],
        ['db', () => db.destroy()],
        ['tmc', () => tmc.stop()],
        ['smtp', () => mail.stop()],
      ];
      for (const [name, step] of steps) {
        await Promise.race([
          step(),
          new Promise((_, reject) => setTimeout(() => reject(new Error(`closing ${name} took over 20 s`)), 20_000).unref()),
        ]);
      }
    },
  };
}

