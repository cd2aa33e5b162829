#!/usr/bin/env bash
# Makes a real Temporal server available for `npm run test:cluster`, without Docker: the server
# binary, its SQL schema tool, and the PostgreSQL schema files, all of Temporal v1.29.1 (the
# version of docker-compose.yml's images). Built once with Go into .tools/ (about 3 minutes once
# the CLI's modules are cached), then reused.
#   .tools/bin/server, .tools/bin/sql, .tools/temporal-server-v1.29.1/schema/postgresql/v12/
set -euo pipefail
cd "$(dirname "$0")/.."
VERSION=v1.29.1
SCHEMA_DIR=".tools/temporal-server-$VERSION/schema"
have_binaries() { [ -x .tools/bin/server ] && [ -x .tools/bin/sql ] && .tools/bin/server --version 2>/dev/null | grep -q "${VERSION#v}"; }
if have_binaries && [ -d "$SCHEMA_DIR/postgresql/v12" ]; then exit 0; fi
if ! command -v go >/dev/null 2>&1; then
  echo "setup-temporal-server: Go is needed to build the Temporal server $VERSION into .tools/bin" >&2
  exit 1
fi
mkdir -p .tools/bin
if ! have_binaries; then
  echo "setup-temporal-server: building the Temporal server $VERSION and its sql tool into .tools/bin (a few minutes, once)..." >&2
  CGO_ENABLED=0 GOBIN="$PWD/.tools/bin" GOFLAGS=-mod=mod go install \
    "go.temporal.io/server/cmd/server@$VERSION" "go.temporal.io/server/cmd/tools/sql@$VERSION"
fi
# The schema files ship in the module's source, which `go install` left in Go's module cache.
MODULE_DIR="$(GOFLAGS=-mod=mod go mod download -json "go.temporal.io/server@$VERSION" | sed -n 's/^[[:space:]]*"Dir": "\(.*\)",$/\1/p')"
if [ -z "$MODULE_DIR" ] || [ ! -d "$MODULE_DIR/schema/postgresql/v12" ]; then
  echo "setup-temporal-server: no schema/postgresql/v12 in the go.temporal.io/server@$VERSION module" >&2
  exit 1
fi
mkdir -p "$SCHEMA_DIR/postgresql"
rm -rf "$SCHEMA_DIR/postgresql/v12"
cp -R "$MODULE_DIR/schema/postgresql/v12" "$SCHEMA_DIR/postgresql/v12"
chmod -R u+w "$SCHEMA_DIR"
echo "setup-temporal-server: $(.tools/bin/server --version), schema in $SCHEMA_DIR" >&2
