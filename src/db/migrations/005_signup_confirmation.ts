/**
 * Confirmation with a password (issue 12): the link alone no longer activates a signup. Each
 * verification token carries the argon2 hash of the password chosen in the signup attempt whose
 * mail carried it, and the display name of that attempt; a click that confirms it (or chooses a
 * new password) leaves the chosen hash on the token, and activation sets the user's password
 * from there. The signup row keeps the latest attempt's hash and name until the signup ends.
 *
 * Signups pending at migration time: their candidate's hash (written by the old createCandidate)
 * becomes their latest attempt's, and that of their tokens, so their links keep working.
 */
import type { Knex } from 'knex';

export async function up(knex: Knex): Promise<void> {
  await knex.schema.alterTable('verification_tokens', (t) => {
    t.text('password_hash').nullable();
    t.text('display_name').nullable();
  });
  await knex.raw(`
    UPDATE signups s SET password_hash = p.password_hash
      FROM user_passwords p
     WHERE p.user_id = s.user_id AND s.password_hash IS NULL AND s.state IN ('awaiting_verification', 'activating')`);
  await knex.raw(`
    UPDATE verification_tokens t SET password_hash = s.password_hash, display_name = s.display_name
      FROM signups s
     WHERE s.id = t.signup_id AND t.password_hash IS NULL AND s.state IN ('awaiting_verification', 'activating')`);
}

export async function down(knex: Knex): Promise<void> {
  await knex.schema.alterTable('verification_tokens', (t) => {
    t.dropColumn('display_name');
    t.dropColumn('password_hash');
  });
}
