/**
 * Imports from a running headless-lms (`npm run import:headless-lms`). A run is one row; each
 * batch it committed is one row, written in the same transaction as the batch's users, so a
 * retried batch (a worker killed after the commit) returns the recorded counts instead of
 * counting its rows again.
 */
import type { Knex } from 'knex';

export async function up(knex: Knex): Promise<void> {
  await knex.schema.createTable('import_runs', (t) => {
    t.uuid('id').primary();
    // The source's URL carries its password: it is kept here, never in Temporal, and cleared
    // when the run ends.
    t.text('source_url').nullable();
    t.timestamp('created_at', { useTz: true }).notNullable().defaultTo(knex.fn.now());
    t.timestamp('finished_at', { useTz: true }).nullable();
  });
  await knex.schema.createTable('import_batches', (t) => {
    t.uuid('import_id').notNullable().references('import_runs.id').onDelete('CASCADE');
    t.integer('batch_no').notNullable();
    t.jsonb('result').notNullable();
    t.timestamp('created_at', { useTz: true }).notNullable().defaultTo(knex.fn.now());
    t.primary(['import_id', 'batch_no']);
  });
}

export async function down(knex: Knex): Promise<void> {
  await knex.schema.dropTable('import_batches');
  await knex.schema.dropTable('import_runs');
}
