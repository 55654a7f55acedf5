#!/usr/bin/env bash
# Packaging checks for every publishable package: publint (package.json vs built files) and
# arethetypeswrong (types resolve for ESM consumers). Needs a build (`tsc -b`) first.
source "$(dirname "$0")/lib.sh"
cd "$ROOT"
status=0
for dir in packages/*/; do
  name=$(node -p "require('./${dir}package.json').private ? '' : require('./${dir}package.json').name")
  [ -n "$name" ] || continue
  log "packaging checks: $name"
  (cd "$dir" && pnpm -s exec publint --strict) || status=1
  (cd "$dir" && pnpm -s exec attw --pack . --profile esm-only --format table-flipped) >/tmp/attw-$$.log 2>&1 || { cat /tmp/attw-$$.log; status=1; }
done
rm -f /tmp/attw-$$.log
exit "$status"
