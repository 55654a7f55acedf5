#!/usr/bin/env bash
# The README's test command (`npm test`): set-up, lint, type-check, then every test, unit and
# real-daemon (Ceph, tgtd, HIL-compatible server, qemu). Ends with `N passed, N failed, N skipped`.
source "$(dirname "$0")/lib.sh"
setup_all
cd "$ROOT"
log "lint"
pnpm -s exec biome check .
bash scripts/check-packages.sh
log "tests"
rm -f .vitest-result.json
status=0
pnpm -s exec vitest run --reporter=default --reporter=json --outputFile.json=.vitest-result.json "$@" || status=$?
node scripts/summary.mjs .vitest-result.json || status=1
exit "$status"
