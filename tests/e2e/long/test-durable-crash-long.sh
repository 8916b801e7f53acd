#!/usr/bin/env bash
# check-long: 20 kill -9 points per configuration (file and memory buffers
# with buffer_dir, raw and qcow2) during a failover commit; make check runs
# the same script with 2 small points each.
CRASH_POINTS=${CRASH_POINTS:-20} CRASH_UNIT_MB=${CRASH_UNIT_MB:-16} \
	exec bash "$(dirname "$0")/../test-durable-crash.sh"
