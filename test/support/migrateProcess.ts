/**
 * A process that applies the migrations the way every API and worker process does at start-up,
 * once per database URL it reads on stdin, answering `ok` or `error <message>` per line. Several
 * of them, given the same URL at the same moment, are replicas starting together.
 */
import readline from 'node:readline';
import { createDb, migrate } from '../../src/db';

const rl = readline.createInterface({ input: process.stdin });
rl.on('line', async (url) => {
  const db = createDb({ url, poolMax: 10 });
  try {
    await migrate(db, { defaultTenant: 'default' });
    process.stdout.write('ok\n');
  } catch (err) {
    process.stdout.write(`error ${(err as Error).message.replace(/\n/g, ' ')}\n`);
  } finally {
    await db.destroy();
  }
});
process.stdout.write('ready\n');
