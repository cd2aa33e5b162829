/**
 * The API in a process of its own, for the benchmarks and the fault suite: configured from the
 * environment like `npm run start:api` (src/api/main.ts), without applying migrations (the
 * parent did). Tells its parent `{ type: 'ready', url, pid }` once it listens.
 */
import { startApi } from '../src/api/main';
import { loadConfig } from '../src/config';
import { createDb } from '../src/db';
import { createLogger } from '../src/logger';
import { resolveKeys } from '../src/temporal/codec';
import { serveStats } from './processStats';

async function main() {
  const config = loadConfig();
  const log = createLogger(config.logLevel);
  if (!config.database.url) throw new Error('DATABASE_URL is required');
  const db = createDb({ url: config.database.url, poolMax: config.database.poolMax, log });
  const api = await startApi(config, { db, log, keys: resolveKeys(config, log) });
  for (const signal of ['SIGINT', 'SIGTERM'] as const) {
    process.once(signal, async () => {
      await api.close();
      await db.destroy();
      process.exit(0);
    });
  }
  serveStats();
  process.send?.({ type: 'ready', url: api.url, pid: process.pid });
}

main().catch((err) => {
  console.error(err instanceof Error ? err.stack : err);
  process.exit(1);
});
