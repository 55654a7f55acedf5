#!/usr/bin/env bash
# Installs everything the lab, the tests and the demo need. Idempotent.
source "$(dirname "$0")/lib.sh"
setup_all
