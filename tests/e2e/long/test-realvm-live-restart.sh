#!/usr/bin/env bash
# The real-guest live restart (tests/e2e/test-realvm-live-restart.sh) for
# longer: 5 cycles of a planned restart of the secondary in running, a
# planned restart of the primary, kill -9 of the primary in none and a
# resync, with 30 durable guest rounds after each.
CYCLES=${CYCLES:-5} AFTER=${AFTER:-30} \
	exec bash "$(dirname "$0")/../test-realvm-live-restart.sh"
