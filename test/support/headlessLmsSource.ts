/**
 * A headless-lms database to import from, built from the columns issue 13 lists (plus a few
 * columns headless-lms has and the import must ignore), on any PostgreSQL server.
 */
import pg from 'pg';

export const SOURCE_SCHEMA = `
CREATE TABLE users (
  id uuid PRIMARY KEY,
  created_at timestamptz NOT NULL DEFAULT now(),
  updated_at timestamptz NOT NULL DEFAULT now(),
  deleted_at timestamptz NULL,
  upstream_id integer NULL,
  email_domain text NULL
);
CREATE UNIQUE INDEX users_upstream_id_live ON users (upstream_id) WHERE deleted_at IS NULL;
CREATE TABLE user_details (
  user_id uuid PRIMARY KEY REFERENCES users (id),
  email text NOT NULL,
  first_name text NULL,
  last_name text NULL,
  created_at timestamptz NOT NULL DEFAULT now(),
  updated_at timestamptz NOT NULL DEFAULT now(),
  search_helper text NULL,
  country text NULL
);
CREATE TABLE user_passwords (
  user_id uuid PRIMARY KEY REFERENCES users (id),
  password_hash text NOT NULL,
  created_at timestamptz NOT NULL DEFAULT now(),
  updated_at timestamptz NOT NULL DEFAULT now(),
  deleted_at timestamptz NULL
);`;

export interface SourceUser {
  id: string;
  upstreamId?: number | null;
  email?: string | null;
  firstName?: string | null;
  lastName?: string | null;
  deletedAt?: string | null;
  /** Timestamps as PostgreSQL text, e.g. '2023-04-05 06:07:08.123456+00'; default now(). */
  createdAt?: string;
  updatedAt?: string;
  password?: { hash: string; createdAt?: string; updatedAt?: string; deletedAt?: string | null };
}

/** Creates `name` on the server of `adminUrl` with the headless-lms tables; returns its URL. */
export async function createHeadlessLmsSource(adminUrl: string, name: string, schema = SOURCE_SCHEMA): Promise<string> {
  const admin = new pg.Client({ connectionString: adminUrl });
  await admin.connect();
  try {
    await admin.query(`CREATE DATABASE ${name}`);
  } finally {
    await admin.end();
  }
  const url = new URL(adminUrl);
  url.pathname = `/${name}`;
  await withSource(url.toString(), (c) => c.query(schema));
  return url.toString();
}

/** Runs `fn` with a client on the source (a writer: only tests and the bench write there). */
export async function withSource<T>(url: string, fn: (client: pg.Client) => Promise<T>): Promise<T> {
  const client = new pg.Client({ connectionString: url });
  await client.connect();
  try {
    return await fn(client);
  } finally {
    await client.end();
  }
}

export async function insertSourceUsers(url: string, users: SourceUser[]): Promise<void> {
  await withSource(url, async (c) => {
    for (const u of users) {
      await c.query(
        `INSERT INTO users (id, created_at, updated_at, deleted_at, upstream_id, email_domain)
         VALUES ($1, coalesce($2::timestamptz, now()), coalesce($3::timestamptz, now()), $4, $5, $6)`,
        [u.id, u.createdAt ?? null, u.updatedAt ?? null, u.deletedAt ?? null, u.upstreamId ?? null, u.email ? u.email.slice(u.email.lastIndexOf('@') + 1) : null],
      );
      if (u.email) {
        await c.query('INSERT INTO user_details (user_id, email, first_name, last_name, country) VALUES ($1, $2, $3, $4, $5)', [u.id, u.email, u.firstName ?? null, u.lastName ?? null, 'FI']);
      }
      if (u.password) {
        await c.query(
          `INSERT INTO user_passwords (user_id, password_hash, created_at, updated_at, deleted_at)
           VALUES ($1, $2, coalesce($3::timestamptz, now()), coalesce($4::timestamptz, now()), $5)`,
          [u.id, u.password.hash, u.password.createdAt ?? null, u.password.updatedAt ?? null, u.password.deletedAt ?? null],
        );
      }
    }
  });
}

/**
 * `count` users generated in SQL (fast for 100 000): every one with details and the same
 * password hash, upstream ids from `firstUpstreamId`, every `deletedEvery`-th one deleted.
 */
export async function generateSourceUsers(url: string, count: number, { firstUpstreamId = 1, hash, deletedEvery = 0 }: { firstUpstreamId?: number; hash: string; deletedEvery?: number }): Promise<void> {
  await withSource(url, async (c) => {
    await c.query(
      `INSERT INTO users (id, created_at, updated_at, deleted_at, upstream_id, email_domain)
       SELECT gen_random_uuid(), now() - interval '1 day' * (g % 1000), now() - interval '1 hour' * (g % 1000),
              CASE WHEN $3 > 0 AND g % $3 = 0 THEN now() END, $2 + g, 'example.org'
       FROM generate_series(0, $1 - 1) g`,
      [count, firstUpstreamId, deletedEvery],
    );
    await c.query(
      `INSERT INTO user_details (user_id, email, first_name, last_name)
       SELECT id, 'user' || upstream_id || '@example.org', 'First', 'Last' FROM users WHERE upstream_id >= $1 AND upstream_id < $1 + $2`,
      [firstUpstreamId, count],
    );
    await c.query(
      `INSERT INTO user_passwords (user_id, password_hash, created_at, updated_at)
       SELECT id, $3, created_at, updated_at FROM users WHERE upstream_id >= $1 AND upstream_id < $1 + $2`,
      [firstUpstreamId, count, hash],
    );
  });
}
