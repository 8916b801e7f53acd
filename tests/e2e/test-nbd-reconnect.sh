#!/usr/bin/env bash
# A client killed mid-stream (writes in flight, no DISC): the unclean
# disconnect shows in .colo/status, a reconnecting client is served, and
# its writes land after every write of the dead connection.
. "$(dirname "$0")/lib.sh"
HERE=$(cd "$(dirname "$0")" && pwd)
RAW() { timeout 120 "$PY3" "$HERE/nbd_raw.py" "unix:$T/nbd.sock" vda "$@"; }

# exited PID: waits up to 20 s until PID has exited (zombie or reaped).
cat >"$T/exited" <<'EOS'
#!/bin/sh
i=0
while [ -e "/proc/$1" ] && ! grep -q '^[0-9]* (.*) Z' "/proc/$1/stat" 2>/dev/null; do
	i=$((i + 1))
	[ $i -lt 2000 ] || { echo "process $1 did not exit" >&2; exit 1; }
	sleep 0.01
done
EOS
chmod +x "$T/exited"

make_image "$T/vda.img" 64M
write_config
start_colofs
at_exit stop_colofs
ctl start

# Each flood write covers the whole range the reconnected write covers
# ([0, 2 MiB)), so any of the dead client's writes that ran late would
# show.  (Writes of 32 MiB, 20 in flight, took a minute to start on a
# loaded 2-core machine: 640 MiB through the socket before the first
# reply was read.)
# One output file per round: the shell truncates a shared one in the
# forked child, which a loaded machine may run after the parent has
# already found the previous round's "flooding" in it.
for round in 1 2 3 4 5; do
	"$PY3" "$HERE/nbd_raw.py" "unix:$T/nbd.sock" vda flood 0 $((2 << 20)) a$round $((2 << 20)) \
		>"$T/flood$round.out" 2>&1 &
	flood=$!
	wait_for 60 grep -q flooding "$T/flood$round.out" || fail "flood did not start"
	# The new connection is up before the kill and writes right after
	# it, while the dead one may still have requests queued: its writes
	# over the same range must win.  "Dead" means its socket is closed:
	# kill -9 returns before that, and a client still alive may send
	# more (a server cannot tell those from a live client's), so the
	# write waits until the flood process has exited (a zombie or gone:
	# the kernel closes its files before it becomes a zombie).  The
	# server may still be reading its queued requests then.
	RAW write-after 0 $((2 << 20)) b$round "kill -9 $flood && $T/exited $flood" ||
		fail "reconnect write $round"
	wait "$flood" 2>/dev/null || true
	expect_bytes "$T/vda.img" 0 $((2 << 20)) b$round
done
# Every connection closed, and the last dead one counted.
wait_for 20 sh -c "grep -qx 'nbd.connections=0' '$MNT/.colo/status' &&
	grep -qx 'nbd.unclean_disconnects=5' '$MNT/.colo/status' &&
	grep -qx 'unclean_disconnects=5' '$MNT/.colo/status'" || true
expect_bytes "$T/vda.img" 0 $((2 << 20)) b5
[ "$(status_get nbd.unclean_disconnects)" = 5 ] ||
	fail "nbd.unclean_disconnects=$(status_get nbd.unclean_disconnects), want 5"
[ "$(status_get unclean_disconnects)" = 5 ] ||
	fail "replica unclean_disconnects=$(status_get unclean_disconnects), want 5"
ok "reconnect after a killed client"
