#!/usr/bin/env bash
# Makes a Temporal CLI available for `npm start` and the tests, without Docker.
# Order: TEMPORAL_CLI_PATH, `temporal` on PATH, .tools/bin/temporal; else build it there with Go.
# With neither Go nor a binary, the service falls back to the SDK's own download at start.
set -euo pipefail
cd "$(dirname "$0")/.."
VERSION=v1.5.1   # the newest tag `go install` accepts
if [ -n "${TEMPORAL_CLI_PATH:-}" ] && [ -x "$TEMPORAL_CLI_PATH" ]; then exit 0; fi
if command -v temporal >/dev/null 2>&1; then exit 0; fi
if [ -x .tools/bin/temporal ]; then exit 0; fi
if ! command -v go >/dev/null 2>&1; then
  echo "setup-temporal: no Temporal CLI and no Go; the SDK will try to download the dev server." >&2
  exit 0
fi
echo "setup-temporal: building the Temporal CLI $VERSION into .tools/bin (a few minutes, once)..." >&2
mkdir -p .tools/bin
CGO_ENABLED=0 GOBIN="$PWD/.tools/bin" GOFLAGS=-mod=mod go install "github.com/temporalio/cli/cmd/temporal@$VERSION"
echo "setup-temporal: $(.tools/bin/temporal --version)" >&2
