#!/usr/bin/env bash
# check-long: 120 s of libFuzzer on each file parser (make check runs the
# same script for 5 s each).
FILES_FUZZ_SECONDS=${FILES_FUZZ_SECONDS:-120} \
	exec bash "$(dirname "$0")/../test-fuzz-files-sample.sh"
