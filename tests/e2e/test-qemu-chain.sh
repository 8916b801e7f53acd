#!/usr/bin/env bash
# QEMU's own secondary chain (block/replication.c in qemu-system-x86_64 -M
# none, NBD in, FUSE view out) behaves as COLO says, checked against the
# workload model; probes QEMU 7.2's known defects (informational).  No colofs needed.
. "$(dirname "$0")/lib.sh"
. "$(dirname "$0")/../qemu/run.sh"
need_qemu
run_py chain.py selftest "$T/selftest" || fail "QEMU chain selftest"
mkdir -p "$T/probe"
run_py primary.py probe "$T/probe" || fail "QEMU primary -> QEMU secondary"
run_py workload.py --peers model,qemu --seed 7 --seed 1234 --steps 40 \
	--dir "$T/wl" || fail "QEMU chain differs from the model"
ok "QEMU's chain matches the model"
