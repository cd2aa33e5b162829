/** Users, their TMC details and password hashes: the tables headless-lms keeps for TMC users. */
import type { Knex } from 'knex';

export async function up(knex: Knex): Promise<void> {
  await knex.schema.createTable('users', (t) => {
    t.uuid('id').primary();
    t.timestamp('created_at', { useTz: true }).notNullable().defaultTo(knex.fn.now());
    t.timestamp('updated_at', { useTz: true }).notNullable().defaultTo(knex.fn.now());
    t.timestamp('deleted_at', { useTz: true }).nullable();
    t.integer('upstream_id').nullable();
    t.text('email_domain').nullable();
  });
  // Concurrent creates for one upstream_id end with one active user: the loser re-reads.
  await knex.raw('CREATE UNIQUE INDEX users_upstream_id_active ON users (upstream_id) WHERE deleted_at IS NULL');

  await knex.schema.createTable('user_details', (t) => {
    t.uuid('user_id').primary().references('users.id').onDelete('CASCADE');
    t.text('email').notNullable();
    t.text('first_name').nullable();
    t.text('last_name').nullable();
    t.timestamp('created_at', { useTz: true }).notNullable().defaultTo(knex.fn.now());
    t.timestamp('updated_at', { useTz: true }).notNullable().defaultTo(knex.fn.now());
  });

  await knex.schema.createTable('user_passwords', (t) => {
    t.uuid('user_id').primary().references('users.id').onDelete('CASCADE');
    t.text('password_hash').notNullable();
    t.timestamp('created_at', { useTz: true }).notNullable().defaultTo(knex.fn.now());
    t.timestamp('updated_at', { useTz: true }).notNullable().defaultTo(knex.fn.now());
    t.timestamp('deleted_at', { useTz: true }).nullable();
  });

  // What became of each "password managed here" notification to TMC. Pending ones live in
  // Temporal; this records the outcome (delivered, or rejected by TMC with a 404).
  await knex.schema.createTable('tmc_password_notifications', (t) => {
    t.uuid('user_id').primary().references('users.id').onDelete('CASCADE');
    t.integer('upstream_id').notNullable();
    t.text('outcome').notNullable().checkIn(['delivered', 'tmc_user_not_found']);
    t.integer('deliveries').notNullable().defaultTo(1);
    t.timestamp('updated_at', { useTz: true }).notNullable().defaultTo(knex.fn.now());
  });
}

export async function down(knex: Knex): Promise<void> {
  await knex.schema.dropTable('tmc_password_notifications');
  await knex.schema.dropTable('user_passwords');
  await knex.schema.dropTable('user_details');
  await knex.schema.dropTable('users');
}
