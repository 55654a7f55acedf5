#!/usr/bin/env bash
# The README's first command (`npm run demo`): set-up, then a whole BMI on one machine.
# Options pass through: npm run demo -- --nodes 4 --keep --json
source "$(dirname "$0")/lib.sh"
setup_all
cd "$ROOT"
exec node packages/examples/dist/demo.js "$@"
