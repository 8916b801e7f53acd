#!/usr/bin/env bash
# check-long: 120 s of the multi-connection listener fuzzer, 6 connections
# (make check runs 8 s with 3, test-nbd-fuzz-multiconn.sh).
NBD_FUZZ_SECONDS=${NBD_FUZZ_SECONDS:-120} NBD_FUZZ_CONNS=${NBD_FUZZ_CONNS:-6} \
	exec bash "$(dirname "$0")/../test-nbd-fuzz-multiconn.sh"
