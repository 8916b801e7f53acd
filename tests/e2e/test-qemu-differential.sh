#!/usr/bin/env bash
# The same seeded COLO workload on QEMU's secondary chain, on colofs and on
# a byte-exact model, comparing view and disk after every step.  One fixed
# seed and one new random seed (printed; replay with workload.py --seed).
# Differences from QEMU allowed: its two known 7.2 defects (stale FUSE
# page cache after checkpoint, stop without failover fails) and view reads
# before start (QEMU: EIO, colofs: S).  See doc/qemu-interop.md.
. "$(dirname "$0")/lib.sh"
. "$(dirname "$0")/../qemu/run.sh"
need_qemu
need_colofs
seed2=$(( $(od -An -N4 -tu4 /dev/urandom) % 2147483647 ))
run_py workload.py --peers model,qemu,colofs --colofs "$COLOFS_BIN" \
	--seed 42 --seed "$seed2" --steps 40 --dir "$T/wl" ||
	fail "QEMU and colofs diverge (seeds 42 and $seed2)"
ok "QEMU, colofs and the model agree"
