#!/usr/bin/env bash
# A client killed mid-stream (writes in flight, no DISC): the unclean
# disconnect shows in .colo/status, a reconnecting client is served, and
# its writes land after every write of the dead connection.
. "$(dirname "$0")/lib.sh"
HERE=$(cd "$(dirname "$0")" && pwd)
RAW() { timeout 120 "$PY3" "$HERE/nbd_raw.py" "unix:$T/nbd.sock" vda "$@"; }

make_image "$T/vda.img" 64M
write_config
start_colofs
at_exit stop_colofs
ctl start

for round in 1 2 3 4 5; do
	"$PY3" "$HERE/nbd_raw.py" "unix:$T/nbd.sock" vda flood 0 $((32 << 20)) a$round $((32 << 20)) \
		>"$T/flood.out" 2>&1 &
	flood=$!
	wait_for 20 grep -q flooding "$T/flood.out" || fail "flood did not start"
	# The new connection is up before the kill and writes right after
	# it, while the dead one may still have requests queued: its writes
	# over the same range must win.
	RAW write-after 0 $((2 << 20)) b$round "kill -9 $flood" ||
		fail "reconnect write $round"
	wait "$flood" 2>/dev/null || true
	expect_bytes "$T/vda.img" 0 $((2 << 20)) b$round
done
sleep 0.5
expect_bytes "$T/vda.img" 0 $((2 << 20)) b5
[ "$(status_get nbd.unclean_disconnects)" = 5 ] ||
	fail "nbd.unclean_disconnects=$(status_get nbd.unclean_disconnects), want 5"
[ "$(status_get unclean_disconnects)" = 5 ] ||
	fail "replica unclean_disconnects=$(status_get unclean_disconnects), want 5"
ok "reconnect after a killed client"
