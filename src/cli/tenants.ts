/**
 * `npm run tenants -- <command>`: manage tenants.
 *
 *   list                              every tenant and its status
 *   add <identifier> [display name]   a new, active tenant
 *   suspend <identifier>              new signups for it get 422 tenant_not_active
 *   activate <identifier>
 *
 * Uses DATABASE_URL, or the embedded development database that `npm start` runs (on
 * DEV_POSTGRES_PORT, default 54329).
 */
import { createDb, migrate } from '../db';
import { addTenant, listTenants, setTenantStatus } from '../db/signups';

/** `npm start`'s embedded database, on DEV_POSTGRES_PORT as `npm start` reads it. */
const DEV_DATABASE_URL = `postgres://postgres:postgres@127.0.0.1:${process.env.DEV_POSTGRES_PORT || 54329}/accounts`;
const USAGE = 'usage: npm run tenants -- list | add <identifier> [display name] | suspend <identifier> | activate <identifier>';

async function main(args: string[]): Promise<number> {
  const [command, identifier, ...rest] = args;
  const url = process.env.DATABASE_URL || DEV_DATABASE_URL;
  const db = createDb({ url, poolMax: 2 });
  try {
    await migrate(db, { defaultTenant: process.env.DEFAULT_TENANT || 'default' });
    switch (command) {
      case 'list': {
        const tenants = await listTenants(db);
        for (const t of tenants) console.log(`${t.identifier}\t${t.status}\t${t.display_name}\t${t.created_at.toISOString()}`);
        return 0;
      }
      case 'add': {
        if (!identifier) break;
        const t = await addTenant(db, identifier, rest.join(' ') || identifier);
        console.log(`added tenant ${t.identifier} (${t.status})`);
        return 0;
      }
      case 'suspend':
      case 'activate': {
        if (!identifier) break;
        const status = command === 'suspend' ? 'suspended' : 'active';
        if (!(await setTenantStatus(db, identifier, status))) {
          console.error(`no tenant ${identifier}`);
          return 1;
        }
        console.log(`tenant ${identifier} is ${status}`);
        return 0;
      }
    }
    console.error(USAGE);
    return 2;
  } finally {
    await db.destroy();
  }
}

main(process.argv.slice(2)).then(
  (code) => process.exit(code),
  (err) => {
    console.error(err instanceof Error ? err.message : err);
    process.exit(1);
  },
);
