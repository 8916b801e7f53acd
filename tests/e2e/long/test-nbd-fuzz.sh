#!/usr/bin/env bash
# check-long: a 30 s libFuzzer run of the NBD negotiation and request loop
# (make check runs the same script for 5 s).
NBD_FUZZ_SECONDS=${NBD_FUZZ_SECONDS:-30} \
	exec bash "$(dirname "$0")/../test-nbd-fuzz-sample.sh"
