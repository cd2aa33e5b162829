#!/usr/bin/env bash
# Proves that the test command's exit status tells the truth: runs three deliberately failing
# files (a failed assertion, a throwing hook, a file that does not load) through the project's
# own vitest config, global setup included, and requires a non-zero exit with all three failed.
set -uo pipefail
cd "$(dirname "$0")/.."
out=$(mktemp -d)
VITEST_EXIT_STATUS_CANARY=1 npx vitest run --reporter=json --outputFile.json="$out/canary.json" >"$out/log" 2>&1
status=$?
failed=$(node -e "const r=require(process.argv[1]); console.log(r.numFailedTestSuites + '/' + r.testResults.length)" "$out/canary.json" 2>/dev/null || echo "no report")
rm -rf "$out"
if [ "$status" -eq 0 ] || [ "$failed" != "3/3" ]; then
  echo "check-exit-status: FAILED: vitest exited $status with $failed canary files failed (want non-zero and 3/3)" >&2
  exit 1
fi
echo "check-exit-status: ok: vitest exits $status when tests fail ($failed canary files failed)"
