#!/usr/bin/env bash
# `npm test`'s set-up step (its `pretest`): everything the suite needs that npm install does not
# bring. It either makes each thing available or stops at once with one line saying what to run,
# so the suite never fails halfway through for a missing tool.
#   1. The Temporal CLI (dev server), built with Go once into .tools/bin (setup-temporal.sh).
#   2. Chromium for the browser tests, from Debian (never a tool's own browser download):
#      installed with apt-get when missing and this is root; CHROMIUM_PATH names another build.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup-temporal.sh

chromium_path=${CHROMIUM_PATH:-/usr/bin/chromium}
if [ ! -x "$chromium_path" ]; then
  if [ -z "${CHROMIUM_PATH:-}" ] && [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
    echo "setup-test: installing Debian's chromium for the browser tests (once)..." >&2
    { apt-get update && DEBIAN_FRONTEND=noninteractive apt-get install -y chromium; } >/dev/null \
      || { echo "setup-test: apt-get install chromium failed; run it yourself: apt-get update && apt-get install -y chromium" >&2; exit 1; }
  else
    echo "setup-test: the browser tests need Chromium at $chromium_path: run 'sudo apt-get install -y chromium' (Debian/Ubuntu), or set CHROMIUM_PATH to a Chromium binary" >&2
    exit 1
  fi
fi
