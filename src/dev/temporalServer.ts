/**
 * Starts a real Temporal dev server (`temporal server start-dev`) for `npm start`, tests and
 * benchmarks. The binary is found in this order: TEMPORAL_CLI_PATH, `temporal` on PATH, the
 * project-local `.tools/bin/temporal` built by scripts/setup-temporal.sh, and last the SDK's
 * own download (which needs internet access).
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { accessSync, constants } from 'node:fs';
import path from 'node:path';
import { Connection } from '@temporalio/client';
import { freePort } from './ports';

export const PROJECT_ROOT = path.resolve(__dirname, '..', '..');
export const LOCAL_TEMPORAL_CLI = path.join(PROJECT_ROOT, '.tools', 'bin', 'temporal');

/** Search attributes the service needs, registered on every dev server it starts. */
export const DEV_SEARCH_ATTRIBUTES = ['SignupState=Keyword'];

function executable(file: string): boolean {
  try {
    accessSync(file, constants.X_OK);
    return true;
  } catch {
    return false;
  }
}

export function findTemporalCli(explicit = process.env.TEMPORAL_CLI_PATH): string | undefined {
  if (explicit) {
    if (!executable(explicit)) throw new Error(`TEMPORAL_CLI_PATH=${explicit} is not an executable file`);
    return explicit;
  }
  for (const dir of (process.env.PATH ?? '').split(path.delimiter)) {
    if (dir && executable(path.join(dir, 'temporal'))) return path.join(dir, 'temporal');
  }
  return executable(LOCAL_TEMPORAL_CLI) ? LOCAL_TEMPORAL_CLI : undefined;
}

export interface DevServerOptions {
  /** gRPC port; a free one when omitted. */
  port?: number;
  /** Web UI port, or undefined for a headless server. */
  uiPort?: number;
  /** SQLite file that keeps workflows across restarts; in memory when omitted. */
  dbFilename?: string;
  uiCodecEndpoint?: string;
  namespace?: string;
  cliPath?: string;
  startupTimeoutMs?: number;
  /**
   * Run the server in its own process group, so a Ctrl-C in the terminal reaches only the
   * owner, which then stops everything in order (npm start). Default false.
   */
  detached?: boolean;
  onLog?: (line: string) => void;
  /** Search attributes registered at start (`Name=Type`); default DEV_SEARCH_ATTRIBUTES. `[]`: a server like an existing cluster without them. */
  searchAttributes?: string[];
  /** Extra dynamic config, e.g. `{ 'history.maxTotalUpdates': 20 }` to test a limit in seconds. */
  dynamicConfig?: Record<string, string | number | boolean>;
}

export interface RunningDevServer {
  address: string;
  namespace: string;
  uiUrl?: string;
  /** The server's process id (undefined for the SDK-downloaded fallback). */
  pid?: number;
  stop(): Promise<void>;
}

export async function startTemporalDevServer(options: DevServerOptions = {}): Promise<RunningDevServer> {
  const namespace = options.namespace ?? 'default';
  const cli = findTemporalCli(options.cliPath);
  if (!cli) return startDownloadedDevServer(namespace, options);

  const port = options.port ?? (await freePort());
  const args = [
    'server', 'start-dev',
    '--ip', '127.0.0.1',
    '--port', String(port),
    '--namespace', namespace,
    '--log-level', 'error',
    // Update-with-start: on by default in recent servers, stated here so older CLIs work too.
    '--dynamic-config-value', 'frontend.enableUpdateWorkflowExecution=true',
    '--dynamic-config-value', 'frontend.enableExecuteMultiOperation=true',
    // Concurrent creates for one user are concurrent updates of one workflow (default cap 10).
    '--dynamic-config-value', 'history.maxInFlightUpdates=100',
    // One partition per task queue: partitions spread a queue over matching hosts, and on this
    // single process they only add forwarding between them. With the default of 4, a task that
    // lands on a partition without a waiting poll waits for one: no-op workflows ran at 31–33/s
    // against 47–50/s with one partition (docs/benchmarks.md, section 3).
    '--dynamic-config-value', 'matching.numTaskqueueReadPartitions=1',
    '--dynamic-config-value', 'matching.numTaskqueueWritePartitions=1',
    ...(options.searchAttributes ?? DEV_SEARCH_ATTRIBUTES).flatMap((sa) => ['--search-attribute', sa]),
    ...Object.entries(options.dynamicConfig ?? {}).flatMap(([key, value]) => ['--dynamic-config-value', `${key}=${JSON.stringify(value)}`]),
  ];
  if (options.dbFilename) args.push('--db-filename', options.dbFilename);
  if (options.uiPort !== undefined) {
    args.push('--ui-port', String(options.uiPort));
    if (options.uiCodecEndpoint) args.push('--ui-codec-endpoint', options.uiCodecEndpoint);
  } else {
    args.push('--headless');
  }

  const child = spawn(cli, args, { stdio: ['ignore', 'pipe', 'pipe'], detached: options.detached ?? false });
  const output: string[] = [];
  const collect = (chunk: Buffer) => {
    const text = chunk.toString();
    output.push(text);
    if (output.length > 200) output.shift();
    options.onLog?.(text);
  };
  child.stdout?.on('data', collect);
  child.stderr?.on('data', collect);

  const address = `127.0.0.1:${port}`;
  try {
    await waitUntilServing(address, namespace, child, options.startupTimeoutMs ?? 90_000);
  } catch (err) {
    child.kill('SIGKILL');
    throw new Error(`Temporal dev server did not start: ${(err as Error).message}\n${output.join('').slice(-2000)}`);
  }
  return {
    address,
    namespace,
    uiUrl: options.uiPort !== undefined ? `http://localhost:${options.uiPort}` : undefined,
    pid: child.pid,
    stop: () => stopChild(child),
  };
}

/** Polls until the frontend answers for the namespace; 2-core machines need well over 5 s. */
async function waitUntilServing(address: string, namespace: string, child: ChildProcess, timeoutMs: number): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  let exited: string | undefined;
  child.once('exit', (code, signal) => (exited = `exited with ${code ?? signal}`));
  let last: unknown;
  while (Date.now() < deadline) {
    if (exited) throw new Error(exited);
    try {
      const connection = await Connection.connect({ address, connectTimeout: 2_000 });
      try {
        await connection.withDeadline(Date.now() + 3_000, () =>
          connection.workflowService.describeNamespace({ namespace }),
        );
        return;
      } finally {
        await connection.close();
      }
    } catch (err) {
      last = err;
      await new Promise((r) => setTimeout(r, 250));
    }
  }
  throw new Error(`not serving after ${timeoutMs} ms: ${(last as Error | undefined)?.message ?? 'no answer'}`);
}

function stopChild(child: ChildProcess): Promise<void> {
  if (child.exitCode !== null || child.signalCode !== null) return Promise.resolve();
  return new Promise((resolve) => {
    const timer = setTimeout(() => child.kill('SIGKILL'), 10_000);
    child.once('exit', () => {
      clearTimeout(timer);
      resolve();
    });
    child.kill('SIGTERM');
  });
}

/** Fallback for a machine with internet access but no CLI: the SDK downloads the dev server. */
async function startDownloadedDevServer(namespace: string, options: DevServerOptions): Promise<RunningDevServer> {
  const { TestWorkflowEnvironment } = await import('@temporalio/testing');
  const { defineSearchAttributeKey, SearchAttributeType } = await import('@temporalio/common');
  const env = await TestWorkflowEnvironment.createLocal({
    server: {
      namespace,
      port: options.port,
      ui: options.uiPort !== undefined,
      uiPort: options.uiPort,
      dbFilename: options.dbFilename,
      searchAttributes: [defineSearchAttributeKey('SignupState', SearchAttributeType.KEYWORD)],
      extraArgs: options.uiCodecEndpoint ? ['--ui-codec-endpoint', options.uiCodecEndpoint] : [],
    },
  });
  return {
    address: env.address,
    namespace,
    uiUrl: options.uiPort !== undefined ? `http://localhost:${options.uiPort}` : undefined,
    stop: () => env.teardown(),
  };
}
