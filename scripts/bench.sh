#!/usr/bin/env bash
# `pnpm bench`: every benchmark after the normal set-up. Each prints a Markdown table and writes
# JSON (with cores and versions) to bench/results/. Benchmarks, not tests: nothing here passes or
# fails on time; a goal missed is reported in the table. BENCH_ROUNDS=1 for a quick look.
# About 30 minutes on 2 shared cores (the realistic-HIL batch alone takes 100 nodes x 1 s of HIL),
# plus the Debian boots of bench/boot.ts (about 20 minutes; the image from $BMI_DEBIAN_IMAGE_CACHE,
# else ~/.cache/bmi/images, built there first if missing).
source "$(dirname "$0")/lib.sh"
setup_all
cd "$ROOT"
export NODE_OPTIONS="${NODE_OPTIONS:-} --max-old-space-size=4096"
BENCH_STARTED_MS="$(date +%s%3N)"
export BENCH_STARTED_MS
out="$(mktemp -d)"
trap 'rm -rf "$out"' EXIT
status=0
run() {
  local name=$1
  shift
  log "bench: $name"
  if "$@" | tee "$out/$name.md"; then :; else
    echo "benchmark $name FAILED" | tee -a "$out/$name.md" >&2
    status=1
  fi
}
run core-overhead node --expose-gc --import tsx bench/core-overhead.ts ${BENCH_ROUNDS:+--rounds "$BENCH_ROUNDS"}
run batch-provision pnpm -s exec tsx bench/batch-provision.ts ${BENCH_ROUNDS:+--rounds "$BENCH_ROUNDS"}
run batch-realistic-hil pnpm -s exec tsx bench/batch-realistic-hil.ts ${BENCH_NODES:+--nodes "$BENCH_NODES"}
run ceph-clone pnpm -s exec tsx bench/ceph-clone.ts
run librbd-rss pnpm -s exec tsx bench/librbd-rss.ts
run provision-rss node --expose-gc --import tsx bench/provision-rss.ts ${BENCH_NODES:+--nodes "$BENCH_NODES"}
run tgt-export-raw pnpm -s exec tsx bench/tgt-export.ts --samples "${BENCH_TGT_SAMPLES:-15}"
run tgt-export pnpm -s exec tsx bench/tgt-summary.ts
run snapshot pnpm -s exec tsx bench/snapshot.ts ${BENCH_ROUNDS:+--rounds "$BENCH_ROUNDS"}
run lab-start pnpm -s exec tsx bench/lab-start.ts ${BENCH_ROUNDS:+--rounds "$BENCH_ROUNDS"}
run boot pnpm -s exec tsx bench/boot.ts ${BENCH_ROUNDS:+--boots "$BENCH_ROUNDS" --local-boots "$BENCH_ROUNDS"}
log "summary (tables above; JSON in bench/results/)"
for name in core-overhead batch-provision batch-realistic-hil ceph-clone librbd-rss provision-rss tgt-export snapshot lab-start boot; do
  echo
  if [ -s "$out/$name.md" ]; then cat "$out/$name.md"; else echo "benchmark $name printed nothing" >&2; status=1; fi
done
exit "$status"
