#!/usr/bin/env bash
# A clean shutdown (SIGTERM) while a READ waits for budget: the READ is
# answered ESHUTDOWN and its connection closed, and the log says it is the
# shutdown, not a failover (the budget's stop error is not a failover).
. "$(dirname "$0")/lib.sh"
HERE=$(cd "$(dirname "$0")" && pwd)

make_image "$T/vda.img" 64M
EXTRA_CONFIG="nbd_memory_limit = 32M
nbd_conn_memory_limit = 32M
io_timeout = 120" write_config
start_colofs_fg
timeout 200 "$PY3" "$HERE/nbd_raw.py" "unix:$T/nbd.sock" vda budget-wait-hold \
	"$MNT/.colo/status" $((32 << 20)) "$T/ready" >"$T/raw.log" 2>&1 &
RAW=$!
wait_for 60 test -e "$T/ready" || fail "the READ never waited: $(cat "$T/raw.log")"
kill -TERM "$COLOFS_PID"
wait_exit "$COLOFS_PID"
[ "$EXIT_STATUS" = 0 ] || fail "colofs exited $EXIT_STATUS after SIGTERM"
wait "$RAW" || fail "the client: $(cat "$T/raw.log")"
if grep -q "failover" "$T/colofs.log"; then
	grep "failover" "$T/colofs.log" >&2
	fail "a clean shutdown was logged as a failover"
fi
grep -q "shutdown: closing connection" "$T/colofs.log" ||
	fail "the log does not say the shutdown closed the connection: $(tail -5 "$T/colofs.log")"
! grep -q "ThreadSanitizer\|AddressSanitizer" "$T/colofs.log" ||
	fail "sanitizer report: $(grep -A20 Sanitizer "$T/colofs.log" | head -40)"
ok "a READ cut by the shutdown is logged as the shutdown"
