#!/usr/bin/env bash
# The issue's flood at full size: 2000 sockets that reconnect as soon as
# they are closed, for 40 s.  The real primary (nbdsh) connects and writes
# every time it tries (after waiting its turn in the listen backlog), and
# the log stays short (rate-limited warnings).
# tests/e2e/test-nbd-bounds.sh runs a short sample of it in make check.
. "$(dirname "$0")/../lib.sh"
HERE=$(cd "$(dirname "$0")/.." && pwd)
RAW() { timeout 120 "$PY3" "$HERE/nbd_raw.py" "unix:$T/nbd.sock" vda "$@"; }

make_image "$T/vda.img" 64M 5c
write_config
start_colofs_fg
at_exit stop_colofs

RAW reconnect-flood 2000 40 >"$T/flood.out" &
flood=$!
at_exit "kill $flood"
sleep 3
tries=0
while kill -0 "$flood" 2>/dev/null && [ $tries -lt 10 ]; do
	tries=$((tries + 1))
	off=$((tries << 20))
	nbd_write $off 65536 a$((tries % 10)) ||
		fail "the primary could not write during the flood (try $tries)"
	expect_bytes "$T/vda.img" $off 65536 a$((tries % 10))
done
# A connect waits its turn in the listen backlog behind the flood's
# (no handshake is evicted younger than 0.5 s): seconds each.
[ $tries -ge 3 ] || fail "only $tries tries during the flood"
wait "$flood" || fail "flood"
lines=$(wc -l <"$T/colofs.log")
[ "$lines" -le 40 ] || fail "the flood logged $lines lines"
[ "$(status_get nbd.evicted)" -gt 1000 ] ||
	fail "nbd.evicted=$(status_get nbd.evicted)"
ok "2000 reconnecting sockets ($(head -n 1 "$T/flood.out"), $(status_get nbd.evicted) evicted): $tries primary writes, $lines log lines"
