#!/usr/bin/env bash
# The colofs primary (mode = primary) replicating into QEMU 7.2's own
# secondary chain: a first sync, writes, checkpoints on both sides, a
# failover; QEMU's view (then its disk) equals the primary's file.
. "$(dirname "$0")/lib.sh"
. "$(dirname "$0")/../qemu/run.sh"
need_qemu
need_colofs
run_py colofs_primary.py "$T/w" || fail "colofs primary -> QEMU secondary"
ok "QEMU's secondary chain follows the colofs primary"
