#!/bin/sh
# Creates Temporal's two PostgreSQL databases if missing and brings their schemas up to the
# version the admin-tools image ships. Idempotent: safe to run before every server start and
# after upgrading the Temporal images (run it BEFORE starting a newer server).
# Runs in the temporalio/admin-tools image (temporal-sql-tool, schema files under /etc/temporal/schema).
set -eu

: "${POSTGRES_SEEDS:?POSTGRES_SEEDS is not set}"
: "${POSTGRES_USER:?POSTGRES_USER is not set}"
: "${POSTGRES_PWD:?POSTGRES_PWD is not set}"
port="${DB_PORT:-5432}"
plugin="${DB:-postgres12}"
schema_root="${TEMPORAL_SCHEMA_DIR:-/etc/temporal/schema/postgresql/v12}"

sql_tool() {
  temporal-sql-tool --plugin "$plugin" --ep "$POSTGRES_SEEDS" -p "$port" \
    -u "$POSTGRES_USER" --pw "$POSTGRES_PWD" "$@"
}

setup() {
  db="$1"
  dir="$2"
  # With the postgres12 plugin, create-database succeeds when the database exists already.
  sql_tool --db "$db" create-database
  sql_tool --db "$db" setup-schema -v 0.0
  sql_tool --db "$db" update-schema -d "$dir"
  echo "setup-schema: $db is up to date"
}

setup "${DBNAME:-temporal}" "$schema_root/temporal/versioned"
setup "${VISIBILITY_DBNAME:-temporal_visibility}" "$schema_root/visibility/versioned"
