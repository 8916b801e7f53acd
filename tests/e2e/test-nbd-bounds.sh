#!/usr/bin/env bash
# What clients can make the NBD listener hold is bounded (doc/nbd.md,
# "Bounds"), and the real primary (nbdsh, a libnbd client) still gets in:
#   - 160 connections idling in the handshake (max_handshakes 128): the
#     oldest are closed to make room, the primary connects and writes;
#   - 300 sockets reconnecting as fast as they are closed: the primary
#     connects and writes, and the log does not fill up (rate-limited);
#   - a WRITE whose payload stalls is closed after io_timeout;
#   - 32 slowloris clients (a 32 MiB WRITE, all but one byte of it, then
#     nothing) and 16 clients pipelining 512 READs of 32 MiB and closing:
#     colofs's peak RSS (VmHWM) grows by at most nbd_memory_limit plus
#     a fixed allowance, not by what the clients asked for.
. "$(dirname "$0")/lib.sh"
HERE=$(cd "$(dirname "$0")" && pwd)
RAW() { timeout 120 "$PY3" "$HERE/nbd_raw.py" "unix:$T/nbd.sock" vda "$@"; }
hwm() { awk '/^VmHWM:/ { print $2 * 1024 }' "/proc/$COLOFS_PID/status"; }
MiB=$((1 << 20))
LIMIT=$((64 * MiB))
SLACK=$((48 * MiB))	# thread stacks, option buffers, job structs

# Under AddressSanitizer (make check-asan) freed buffers wait in ASan's
# quarantine instead of going back, so the peak RSS would measure ASan,
# not the budget: this daemon runs without the quarantine.
if ldd "$COLOFS_BIN" 2>/dev/null | grep -q libasan; then
	export ASAN_OPTIONS="${ASAN_OPTIONS:+$ASAN_OPTIONS:}quarantine_size_mb=0:thread_local_quarantine_size_kb=0"
fi
make_image "$T/vda.img" 64M 5c
EXTRA_CONFIG="max_connections = 64
nbd_memory_limit = 64M
nbd_conn_memory_limit = 32M
io_timeout = 2" write_config
start_colofs_fg
at_exit stop_colofs
expect_status nbd.max_handshakes 128
expect_status nbd.memory_limit $LIMIT
expect_status nbd.io_timeout_ms 2000
base=$(hwm)

# The primary: a fresh libnbd connection that writes and flushes.
primary_write() {
	nbd_write "$1" 65536 "$2" || fail "the primary could not write ($3)"
	expect_bytes "$T/vda.img" "$1" 65536 "$2"
}

# 1. Idle handshakes hold no slot the primary needs.
RAW idle 160 "$T/idle-ready" "$T/idle-go" &
idle=$!
at_exit "kill $idle"
wait_for 30 test -e "$T/idle-ready" || fail "the idle clients did not start"
for i in 1 2 3; do
	primary_write $((i * MiB)) a$i "with 160 idle handshakes"
done
[ "$(status_get nbd.evicted)" -ge 32 ] ||
	fail "nbd.evicted=$(status_get nbd.evicted), want >= 32"
touch "$T/idle-go"
wait "$idle" || fail "idle clients"
ok "160 idle handshakes: the primary connects and writes"

# 2. A reconnect flood: the primary still gets in, the log stays short.
lines0=$(wc -l <"$T/colofs.log")
RAW reconnect-flood 300 8 >"$T/flood.out" &
flood=$!
at_exit "kill $flood"
sleep 1
for i in 1 2 3 4 5; do
	primary_write $(((8 + i) * MiB)) b$i "during a reconnect flood"
done
wait "$flood" || fail "reconnect flood"
new=$(($(wc -l <"$T/colofs.log") - lines0))
[ "$new" -le 20 ] || {
	tail -n 30 "$T/colofs.log" >&2
	fail "the flood logged $new lines ($(head -n 1 "$T/flood.out"))"
}
ok "reconnect flood ($(head -n 1 "$T/flood.out")): the primary writes, $new log lines"

# 3. A stalled payload is closed after io_timeout (2 s), nothing applied.
RAW stall-payload $MiB 10 || fail "stalled payload"
expect_bytes "$T/vda.img" 0 $MiB 5c
ok "stalled payload closed after io_timeout"

# 4. Slowloris: 32 stalled 32 MiB WRITEs pin at most the budget.
RAW slowloris 32 $((32 * MiB)) "$T/slow-ready" "$T/slow-go" &
slow=$!
at_exit "kill $slow"
wait_for 60 sh -c "test -e '$T/slow-ready' || ! kill -0 $slow" ||
	fail "slowloris did not start"
test -e "$T/slow-ready" || fail "slowloris failed"
peak=$(hwm)
[ $((peak - base)) -le $((LIMIT + SLACK)) ] ||
	fail "slowloris: VmHWM grew by $(((peak - base) / MiB)) MiB, bound $(((LIMIT + SLACK) / MiB)) MiB"
[ "$(status_get nbd.memory_waits)" -gt 0 ] || fail "no reader waited for the budget"
touch "$T/slow-go"
wait "$slow" || fail "slowloris"
ok "slowloris: VmHWM +$(((peak - base) / MiB)) MiB (bound $(((LIMIT + SLACK) / MiB)))"

# 5. Pipelined 32 MiB READs, then gone: READ buffers are taken when a
# READ runs, and a dead client's queued READs are dropped.
RAW read-flood 16 512 $((32 * MiB)) || fail "read flood"
peak=$(hwm)
[ $((peak - base)) -le $((LIMIT + SLACK)) ] ||
	fail "read flood: VmHWM grew by $(((peak - base) / MiB)) MiB, bound $(((LIMIT + SLACK) / MiB)) MiB"
wait_for 20 sh -c "grep -qx 'nbd.connections=0' '$MNT/.colo/status'" ||
	fail "read flood connections left over"
[ "$(status_get nbd.dropped)" -gt 0 ] || fail "no queued READ was dropped"
[ "$(status_get nbd.memory_used)" = 0 ] ||
	fail "nbd.memory_used=$(status_get nbd.memory_used) with no client"
ok "read flood: VmHWM +$(((peak - base) / MiB)) MiB, $(status_get nbd.dropped) requests dropped"

alive "$COLOFS_PID" || fail "colofs died"
RAW still-serves || fail "not serving after the abuse"
primary_write $((40 * MiB)) c1 "after the abuse"
expect_bytes "$T/vda.img" $((48 * MiB)) $MiB 5c
ok "bounds"
