# SPDX-License-Identifier: MIT
# Helpers for the live-restart tests (colofs --holder).  Source it after
# lib.sh.  They act on $LIVE_MNT (default $MNT).
HERE_LIVE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
live_mnt() { echo "${LIVE_MNT:-$MNT}"; }

# nbd_pattern: the primary writes what live_io.py's reader expects: block
# b of 64 KiB holds b % 251 + 1 (the first 16 MiB).
nbd_pattern() {
	"$PY3" - "$(nbd_uri)" <<'EOPY'
import nbd, sys
h = nbd.NBD()
h.connect_uri(sys.argv[1])
for b in range(256):
    h.pwrite(bytes([b % 251 + 1]) * 65536, b * 65536)
h.flush()
h.shutdown()
EOPY
}

progress() { cat "$T/progress" 2>/dev/null | tr -d ' ' || echo 0; }
# The serving process: .colo/status's pid= (a colofs without it: the one).
worker() {
	local p st
	# A failed read fails the test with its error: guessing a pid here
	# could kill the holder (the lowest pid) instead of the worker.
	st=$(cat "$(live_mnt)/.colo/status") ||
		fail "the worker's pid: $(live_mnt)/.colo/status cannot be read"
	p=$(sed -n "s/^pid=//p" <<<"$st")
	[ -n "$p" ] || p=$(colofs_pid)
	echo "$p"
}

# restart_worker: a planned restart ("restart" on ctl) of the colofs
# serving $(live_mnt), and the next worker serving.
restart_worker() {
	local old
	old=$(worker)
	echo restart >"$(live_mnt)/.colo/ctl"
	wait_for 60 sh -c "p=\$(sed -n 's/^pid=//p' '$(live_mnt)/.colo/status') &&
		[ -n \"\$p\" ] && [ \"\$p\" != $old ]" || fail "ctl restart: same worker"
}

# kill_worker N: N times, kills the worker serving the mount, waits for
# another one to serve and for the I/O process to make progress again.
kill_worker() {
	local n=$1 k old p0
	for ((k = 0; k < n; k++)); do
		old=$(worker)
		[ -n "$old" ] || fail "no worker pid in .colo/status"
		p0=$(progress)
		kill -KILL "$old"
		wait_for 60 sh -c "p=\$(sed -n 's/^pid=//p' '$(live_mnt)/.colo/status') &&
			[ -n \"\$p\" ] && [ \"\$p\" != $old ]" ||
			fail "no new worker after killing $old ($(cat "$T/io.err"))"
		wait_for 60 sh -c "[ \$(tr -d ' ' <'$T/progress') -ge $((p0 + 64)) ]" ||
			fail "I/O made no progress after killing $old: $(cat "$T/io.err")"
		PAUSES="$PAUSES $(sed -n "s/^last_restart_ms=//p" "$(live_mnt)/.colo/status")"
		kill -0 "$IO_PID" 2>/dev/null || break
	done
}

# run_io MODE KILLS
run_io() {
	rm -f "$T/stop" "$T/progress"
	"$PY3" "$HERE_LIVE/live_io.py" "$1" "$(live_mnt)/vda" "$T" >"$T/io.out" 2>"$T/io.err" &
	IO_PID=$!
	at_exit "kill $IO_PID"
	wait_for 60 test -s "$T/progress" ||
		fail "the I/O process did not start: $(cat "$T/io.err")"
	PAUSES=
	kill_worker "$2"
	# The new worker knows the fd is open: a stop would wait for it.
	[ "$(sed -n "s/^disk_files_open=//p" "$(live_mnt)/.colo/status")" = 1 ] ||
		fail "disk_files_open is not 1 after the restarts"
	touch "$T/stop"
	rc=0; wait "$IO_PID" || rc=$?
	[ "$rc" = 0 ] || fail "$1 through an open fd: $(cat "$T/io.err")"
	ok "$1 through one open fd across $2 kill -9: $(cat "$T/io.out"), no error; death to serving:$PAUSES ms"
}

