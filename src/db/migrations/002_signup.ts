/**
 * Tenants, signup candidates, verification tokens and audit events (self-service signup).
 * Users gain a status (candidate → active), a tenant and an identifier (the lower-cased email).
 */
import type { Knex } from 'knex';

export async function up(knex: Knex): Promise<void> {
  await knex.schema.createTable('tenants', (t) => {
    t.uuid('id').primary().defaultTo(knex.raw('gen_random_uuid()'));
    t.text('identifier').notNullable().unique();
    t.text('display_name').notNullable();
    t.text('status').notNullable().defaultTo('active').checkIn(['active', 'suspended']);
    t.timestamp('created_at', { useTz: true }).notNullable().defaultTo(knex.fn.now());
    t.timestamp('updated_at', { useTz: true }).notNullable().defaultTo(knex.fn.now());
  });

  await knex.schema.alterTable('users', (t) => {
    t.text('status').notNullable().defaultTo('active').checkIn(['candidate', 'active', 'suspended']);
    t.uuid('tenant_id').nullable().references('tenants.id');
    t.text('identifier').nullable();
    t.text('display_name').nullable();
  });
  await knex.raw('CREATE UNIQUE INDEX users_tenant_identifier_active ON users (tenant_id, identifier) WHERE deleted_at IS NULL AND identifier IS NOT NULL');

  // One row per signup. It holds what the candidate needs until the workflow creates it, so no
  // email, name or hash travels through Temporal. At most one pending signup per identifier.
  await knex.schema.createTable('signups', (t) => {
    t.uuid('id').primary();
    t.uuid('tenant_id').notNullable().references('tenants.id');
    t.text('identifier').notNullable();
    t.uuid('user_id').notNullable();
    t.text('workflow_id').notNullable();
    t.text('email').notNullable();
    t.text('display_name').notNullable();
    t.text('password_hash').nullable();
    t.text('state').notNullable().checkIn(['awaiting_verification', 'activating', 'active', 'expired']);
    t.integer('emails_sent').notNullable().defaultTo(0);
    t.timestamp('last_email_sent_at', { useTz: true }).nullable();
    t.timestamp('expires_at', { useTz: true }).notNullable();
    t.timestamp('created_at', { useTz: true }).notNullable().defaultTo(knex.fn.now());
    t.timestamp('updated_at', { useTz: true }).notNullable().defaultTo(knex.fn.now());
  });
  await knex.raw(
    "CREATE UNIQUE INDEX signups_pending_identifier ON signups (tenant_id, identifier) WHERE state IN ('awaiting_verification', 'activating')",
  );

  // Only the SHA-256 of each token is stored; the token itself exists only in the email.
  await knex.schema.createTable('verification_tokens', (t) => {
    t.uuid('id').primary();
    t.binary('token_hash').notNullable().unique();
    t.uuid('signup_id').notNullable().references('signups.id').onDelete('CASCADE');
    t.timestamp('expires_at', { useTz: true }).notNullable();
    t.timestamp('used_at', { useTz: true }).nullable();
    t.timestamp('created_at', { useTz: true }).notNullable().defaultTo(knex.fn.now());
  });

  await knex.schema.createTable('audit_events', (t) => {
    t.bigIncrements('id');
    t.text('event_type').notNullable();
    t.uuid('user_id').nullable();
    t.uuid('tenant_id').nullable();
    t.text('request_id').nullable();
    t.timestamp('occurred_at', { useTz: true }).notNullable().defaultTo(knex.fn.now());
    t.jsonb('details').nullable();
    t.index(['user_id']);
    t.index(['event_type', 'occurred_at']);
  });
}

export async function down(knex: Knex): Promise<void> {
  await knex.schema.dropTable('audit_events');
  await knex.schema.dropTable('verification_tokens');
  await knex.schema.dropTable('signups');
  await knex.raw('DROP INDEX users_tenant_identifier_active');
  await knex.schema.alterTable('users', (t) => {
    t.dropColumn('display_name');
    t.dropColumn('identifier');
    t.dropColumn('tenant_id');
    t.dropColumn('status');
  });
  await knex.schema.dropTable('tenants');
}
