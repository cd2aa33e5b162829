/**
 * The migrations, listed in order. A static list (a knex "migration source") instead of a
 * directory scan, so the same code runs under tsx, from compiled JavaScript and in a bundle.
 */
import type { Knex } from 'knex';
import * as m001 from './001_tmc_users';
import * as m002 from './002_signup';
import * as m003 from './003_rate_limits';
import * as m004 from './004_tmc_abandoned_attempts';
import * as m005 from './005_signup_confirmation';
import * as m006 from './006_headless_lms_import';

interface Migration {
  up(knex: Knex): Promise<void>;
  down(knex: Knex): Promise<void>;
}

const migrations: Record<string, Migration> = {
  '001_tmc_users': m001,
  '002_signup': m002,
  '003_rate_limits': m003,
  '004_tmc_abandoned_attempts': m004,
  '005_signup_confirmation': m005,
  '006_headless_lms_import': m006,
};

export const migrationSource: Knex.MigrationSource<string> = {
  getMigrations: async () => Object.keys(migrations),
  getMigrationName: (name) => name,
  getMigration: async (name) => migrations[name]!,
};
