#!/usr/bin/env bash
# A real QEMU primary (quorum + replication mode=primary over NBD, added
# with drive_add and x-blockdev-change, started with xen-set-replication)
# writes through HMP qemu-io: colofs's image must equal the primary's, the
# view must not move until a checkpoint, and equal the primary after it.
. "$(dirname "$0")/lib.sh"
. "$(dirname "$0")/../qemu/run.sh"
need_qemu
need_colofs
run_py primary.py test "$T" "$COLOFS_BIN" || fail "QEMU primary to colofs"
ok "a QEMU primary replicates to colofs"
