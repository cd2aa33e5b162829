/** The API process: `npm run start:api`. Needs DATABASE_URL and TEMPORAL_ADDRESS. */
import { once } from 'node:events';
import net from 'node:net';
import type { Server } from 'node:http';
import { loadConfig, type Config } from '../config';
import { createDb, migrate, type Db } from '../db';
import { createLogger, type Logger } from '../logger';
import { createTemporalClient } from '../temporal/client';
import { describeConnection, probeConnection } from '../temporal/connection';
import { AesGcmCodec, resolveKeys, type EncryptionKey } from '../temporal/codec';
import { TmcClient } from '../tmc';
import { createApp } from './app';
import { answerClientErrors } from './clientErrors';

export interface RunningApi {
  server: Server;
  url: string;
  /**
   * Graceful stop: readiness turns 503, so load balancers move away; after `drainMs` the
   * listener closes, every response from then on says `Connection: close`, in-flight requests
   * finish, and the Temporal connection closes. No request gets a connection reset.
   */
  close(options?: { drainMs?: number }): Promise<void>;
}

/** Starts the API on `port` (0 for any free one). */
export async function startApi(config: Config, deps: { db: Db; log: Logger; keys: EncryptionKey[]; port?: number }): Promise<RunningApi> {
  if (!config.temporal.address) throw new Error('TEMPORAL_ADDRESS (or a TEMPORAL_CONFIG_FILE profile with an address) is required for the API');
  const temporal = createTemporalClient(config.temporal.connection, deps.keys);
  const tmc = new TmcClient(config.tmc);
  const lifecycle = { shuttingDown: false, closing: false };
  const app = createApp({ config, db: deps.db, temporal, tmc, log: deps.log, codec: new AesGcmCodec(deps.keys), lifecycle });
  const server = app.listen(deps.port ?? config.http.port, '0.0.0.0');
  answerClientErrors(server);
  await once(server, 'listening');
  const address = server.address();
  const port = typeof address === 'object' && address ? address.port : config.http.port;
  return {
    server,
    url: `http://127.0.0.1:${port}`,
    async close({ drainMs = 0 } = {}) {
      lifecycle.shuttingDown = true;
      if (drainMs > 0) await new Promise((r) => setTimeout(r, drainMs));
      // Stop listening, but unlike http.Server#close do not drop idle sockets at once: a socket
      // accepted a moment ago counts as idle until its request arrives, and dropping it is a
      // connection reset. Answers say `Connection: close`, so sockets end with their response;
      // whatever is still idle after a grace period is closed then.
      lifecycle.closing = true;
      const closed = new Promise<void>((resolve) => net.Server.prototype.close.call(server, () => resolve()));
      const sweep = setTimeout(() => server.closeIdleConnections(), 2_000);
      await closed;
      clearTimeout(sweep);
      await temporal.connection.close();
    },
  };
}

async function main() {
  const config = loadConfig();
  const log = createLogger(config.logLevel);
  if (!config.database.url) throw new Error('DATABASE_URL is required for the API');
  const db = createDb({ url: config.database.url, poolMax: config.database.poolMax, queryTimeoutMs: config.database.queryTimeoutMs, log });
  await migrate(db, { defaultTenant: config.signup.defaultTenant });
  const api = await startApi(config, { db, log, keys: resolveKeys(config, log) });
  log.info({ url: api.url, temporal: describeConnection(config.temporal.connection) }, 'API listening');
  // The API serves (503s, /readyz) while Temporal is away, so a connection that does not work is
  // not fatal here; but say so at start, with what to check, instead of only in later 503s.
  void probeConnection(config.temporal.connection).then((problem) => problem && log.error(problem.message));
  for (const signal of ['SIGINT', 'SIGTERM'] as const) {
    process.once(signal, async () => {
      log.info({ signal, drainMs: config.http.shutdownDrainMs }, 'API stopping: draining');
      await api.close({ drainMs: config.http.shutdownDrainMs });
      await db.destroy();
      log.info('API stopped');
      process.exit(0);
    });
  }
}

if (require.main === module) {
  main().catch((err) => {
    console.error(err instanceof Error ? err.message : err);
    process.exit(1);
  });
}
