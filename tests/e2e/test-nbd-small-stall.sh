#!/usr/bin/env bash
# io_timeout bounds every WRITE payload that stops arriving, not only
# those over 64 KiB: a small one (4K, 1 byte) whose client keeps its
# socket open is closed within io_timeout, and meanwhile, with the byte
# budget at its minimum (32 MiB, the largest payload), the largest READ
# of another connection is answered and the budget comes back.  Untimed,
# the small payload pinned 64 KiB of budget until the client closed: the
# READ waited NBD_WAIT_MS (60 s) and failed, and probes of the
# multi-connection fuzz sample waited as long behind it.
. "$(dirname "$0")/lib.sh"
HERE=$(cd "$(dirname "$0")" && pwd)
RAW() { timeout 120 "$PY3" "$HERE/nbd_raw.py" "unix:$T/nbd.sock" vda "$@"; }

make_image "$T/vda.img" 64M
EXTRA_CONFIG="nbd_memory_limit = 32M
nbd_conn_memory_limit = 32M
io_timeout = 2" write_config
start_colofs_fg
at_exit stop_colofs
expect_status nbd.io_timeout_ms 2000
RAW stall-payload 4096 10 || fail "a stalled 4K payload was not closed"
RAW stall-payload 1 10 || fail "a stalled 1-byte payload was not closed"
RAW small-stall-budget "$MNT/.colo/status" 10 ||
	fail "a stalled small payload held the budget"
RAW still-serves || fail "the listener no longer serves"
alive "$COLOFS_PID" || fail "colofs died"
ok "a stalled small payload is closed after io_timeout; the budget comes back"
