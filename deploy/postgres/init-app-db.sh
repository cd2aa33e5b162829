#!/bin/sh
# Creates the application's role and database. The official postgres image runs this once, from
# /docker-entrypoint-initdb.d, when it initializes an empty data volume (see docker-compose.yml);
# later starts skip it, so changing APP_DB_* afterwards needs a manual ALTER ROLE / CREATE DATABASE.
# Temporal's databases (temporal, temporal_visibility) are created by temporal-sql-tool instead.
set -e

: "${APP_DB_NAME:?APP_DB_NAME is not set}"
: "${APP_DB_USER:?APP_DB_USER is not set}"
: "${APP_DB_PASSWORD:?APP_DB_PASSWORD is not set}"

# psql variables (:"ident", :'literal') quote the values, so any password is safe here.
psql -v ON_ERROR_STOP=1 --username "${POSTGRES_USER:-postgres}" --dbname postgres \
  -v app_db="$APP_DB_NAME" -v app_user="$APP_DB_USER" -v app_password="$APP_DB_PASSWORD" <<'SQL'
SELECT format('CREATE ROLE %I LOGIN PASSWORD %L', :'app_user', :'app_password')
  WHERE NOT EXISTS (SELECT FROM pg_roles WHERE rolname = :'app_user') \gexec
SELECT format('CREATE DATABASE %I OWNER %I', :'app_db', :'app_user')
  WHERE NOT EXISTS (SELECT FROM pg_database WHERE datname = :'app_db') \gexec
SQL
echo "init-app-db: database \"$APP_DB_NAME\" owned by \"$APP_DB_USER\" is ready"
