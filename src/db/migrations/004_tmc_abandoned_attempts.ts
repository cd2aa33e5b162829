/**
 * Fences for the create workflow's interactive steps (db/users.ts, "Abandoned attempts"): an
 * attempt the workflow gave up on is recorded here, and its transaction, if it is still running
 * somewhere, then rolls back instead of committing.
 */
import type { Knex } from 'knex';

export async function up(knex: Knex): Promise<void> {
  await knex.raw(`CREATE TABLE tmc_abandoned_attempts (
    attempt text PRIMARY KEY,
    upstream_id integer NOT NULL,
    created_at timestamptz NOT NULL DEFAULT now()
  )`);
  await knex.raw('CREATE INDEX tmc_abandoned_attempts_created_at ON tmc_abandoned_attempts (created_at)');
}

export async function down(knex: Knex): Promise<void> {
  await knex.schema.dropTable('tmc_abandoned_attempts');
}
