#!/usr/bin/env bash
# The reconnect barrier runs before a request takes budget (nbd-conn.c,
# "Reconnects"; doc/nbd.md, "Bounds").  With both memory limits at 32M: a
# 32 MiB WRITE held one byte short on one connection, a 4K READ on a second
# connection waiting for budget, then the last byte.  Both are answered,
# a third client's WRITE too, and nbd.memory_used comes back to 0.
. "$(dirname "$0")/lib.sh"
HERE=$(cd "$(dirname "$0")" && pwd)

make_image "$T/vda.img" 64M
EXTRA_CONFIG="nbd_memory_limit = 32M
nbd_conn_memory_limit = 32M
io_timeout = 120" write_config
start_colofs_fg
at_exit stop_colofs
timeout 100 "$PY3" "$HERE/nbd_raw.py" "unix:$T/nbd.sock" vda barrier-budget \
	"$MNT/.colo/status" $((32 << 20)) ||
	fail "the barrier sequence wedged the listener"
wait_for 20 grep -qx "nbd.memory_used=0" "$MNT/.colo/status" ||
	fail "budget not given back: $(status_get nbd.memory_used)"
# Under make check-tsan the daemon is built with ThreadSanitizer.
! grep -q "ThreadSanitizer\|AddressSanitizer" "$T/colofs.log" ||
	fail "sanitizer report: $(grep -A20 Sanitizer "$T/colofs.log" | head -40)"
ok "a barrier never waits holding the budget"
