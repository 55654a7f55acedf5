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
# One Debian image build per run, shared by the OS e2e tests and the demo test (a cache from an
# earlier run is never used); removed at the end, without crossing into a mount a killed build left.
image_cache="$(mktemp -d "${TMPDIR:-/tmp}/bmi-image-cache.XXXXXX")"
trap 'rm -rf --one-file-system "$image_cache"' EXIT
export BMI_DEBIAN_IMAGE_CACHE="$image_cache"
pnpm -s exec vitest run --reporter=default --reporter=json --outputFile.json=.vitest-result.json "$@" || status=$?
node scripts/summary.mjs .vitest-result.json || status=1
exit "$status"
