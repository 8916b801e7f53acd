#!/usr/bin/env bash
# The real-guest live restart (tests/e2e/test-realvm-live-restart.sh) for
# longer: 5 cycles of a planned restart of the secondary in running, a
# planned restart of the primary, kill -9 of the primary in none and a
# resync, with 30 durable guest rounds after each, with QEMU's cache=none
# (O_DIRECT on the disk file); then 2 cycles with cache=writeback (within
# the runner's 300 s on a loaded machine).
set -euo pipefail
echo "== cache=none"
CYCLES=5 AFTER=30 CACHE=none bash "$(dirname "$0")/../test-realvm-live-restart.sh"
echo "== cache=writeback"
CYCLES=2 AFTER=30 CACHE=writeback bash "$(dirname "$0")/../test-realvm-live-restart.sh"
