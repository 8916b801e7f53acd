#!/usr/bin/env bash
# Live restart (colofs --holder): the worker is killed with SIGKILL while a
# process holds the disk file open (as a VM does) and does I/O through it.
# The file descriptor keeps working: no EIO, no ENOTCONN, and every byte
# read back is the byte written.  In state none the view is read-only: a
# reader checks a pattern the primary wrote; in done a writer writes and
# reads back.  Each kill is followed by proof of progress (the I/O
# process's counter moves on), not by a sleep.  Without the holder (main
# before it), the first kill turns the fd's next access into ENOTCONN.
. "$(dirname "$0")/lib.sh"

HOLDER=--holder
"$COLOFS_BIN" --help | grep -q -- --holder || HOLDER=

make_image "$T/vda.img" 16M
write_config
# The test hook: a disk write that finds this file hangs (once).
export COLOFS_TEST_HANG=$T/hang
start_colofs $HOLDER
# On failure: the holder and its worker (pids, read at exit) go too, which
# also ends an I/O process stuck on the connection.
at_exit 'for p in $(pgrep -f -- "[c]olofs -c $T/colofs.ini"); do kill -9 $p; done'

# io.py MODE: reads (none) or writes and reads back (done) 64 KiB blocks
# through one fd until $T/stop exists; counts ops in $T/progress; exits 1
# at the first error or mismatch, with the reason on stderr.
cat >"$T/io.py" <<'EOPY'
import errno, os, sys
mode, path, t = sys.argv[1], sys.argv[2], sys.argv[3]
fd = os.open(path, os.O_RDWR)
prog = os.open(t + "/progress", os.O_WRONLY | os.O_CREAT, 0o644)
blk, nblk, i = 65536, 256, 0
while not os.path.exists(t + "/stop"):
    off = (i * 7919 % nblk) * blk
    try:
        if mode == "write":
            want = bytes([(i * 13 + off // blk) % 251 + 1]) * blk
            os.pwrite(fd, want, off)
        else:
            want = bytes([(off // blk) % 251 + 1]) * blk
        got = os.pread(fd, blk, off)
    except OSError as e:
        sys.stderr.write("op %d at %d: %s\n" % (i, off,
                         errno.errorcode.get(e.errno, str(e.errno))))
        sys.exit(1)
    if got != want:
        sys.stderr.write("op %d at %d: read back other bytes\n" % (i, off))
        sys.exit(1)
    i += 1
    if i % 16 == 0:
        os.pwrite(prog, b"%12d\n" % i, 0)
print("ops %d" % i)
EOPY

progress() { cat "$T/progress" 2>/dev/null | tr -d ' ' || echo 0; }
# The serving process: .colo/status's pid= (a colofs without it: the one).
worker() {
	local p
	p=$(status_get pid 2>/dev/null || true)
	[ -n "$p" ] || p=$(colofs_pid)
	echo "$p"
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
		wait_for 60 sh -c "p=\$(sed -n 's/^pid=//p' '$MNT/.colo/status') &&
			[ -n \"\$p\" ] && [ \"\$p\" != $old ]" ||
			fail "no new worker after killing $old ($(cat "$T/io.err"))"
		wait_for 60 sh -c "[ \$(tr -d ' ' <'$T/progress') -ge $((p0 + 64)) ]" ||
			fail "I/O made no progress after killing $old: $(cat "$T/io.err")"
		PAUSES="$PAUSES $(status_get last_restart_ms)"
		kill -0 "$IO_PID" 2>/dev/null || break
	done
}

# run_io MODE KILLS
run_io() {
	rm -f "$T/stop" "$T/progress"
	"$PY3" "$T/io.py" "$1" "$MNT/vda" "$T" >"$T/io.out" 2>"$T/io.err" &
	IO_PID=$!
	at_exit "kill $IO_PID"
	wait_for 60 test -s "$T/progress" ||
		fail "the I/O process did not start: $(cat "$T/io.err")"
	PAUSES=
	kill_worker "$2"
	# The new worker knows the fd is open: a stop would wait for it.
	expect_status disk_files_open 1
	touch "$T/stop"
	rc=0; wait "$IO_PID" || rc=$?
	[ "$rc" = 0 ] || fail "$1 through an open fd: $(cat "$T/io.err")"
	ok "$1 through one open fd across $2 kill -9: $(cat "$T/io.out"), no error; death to serving:$PAUSES ms"
}

# ---- state none: the primary's data, read through the VM's fd ----
"$PY3" - "$(nbd_uri)" <<'EOPY'
import nbd, sys
h = nbd.NBD()
h.connect_uri(sys.argv[1])
for b in range(256):
    h.pwrite(bytes([b % 251 + 1]) * 65536, b * 65536)
h.flush()
h.shutdown()
EOPY
expect_status state none
run_io read 3
expect_status state none
expect_status restarts 3
# The listener came back on the same socket: the primary writes again.
nbd_write 0 65536 ee
expect_bytes "$MNT/vda" 0 65536 ee
expect_bytes "$T/vda.img" 0 65536 ee
ok "the NBD listener serves after the restarts"

# ---- planned restart through ctl, in none ----
old=$(worker)
ctl restart
wait_for 60 sh -c "p=\$(sed -n 's/^pid=//p' '$MNT/.colo/status') &&
	[ -n \"\$p\" ] && [ \"\$p\" != $old ]" || fail "ctl restart: same worker"
expect_status restarts 4
expect_bytes "$MNT/vda" 0 65536 ee
ok "echo restart > ctl: worker $old replaced by $(worker) in $(status_get last_restart_ms) ms"
out=$("$COLOFS_BUILD/colofsctl" -m "$MNT" restart) || fail "colofsctl restart"
expect_status restarts 5
ok "colofsctl restart: $out"

# ---- state done: the VM writes and reads back ----
ctl start
expect_ctl restart EBUSY
grep -q "running" "$MNT/.colo/error" || fail "restart in running: $(cat "$MNT/.colo/error")"
ctl failover
wait_state done
run_io write 3
expect_status state done

# ---- a write in flight at the kill (Linux 6.9+: FUSE_NOTIFY_RESEND) ----
kv=$(uname -r | sed 's/^\([0-9]*\)\.\([0-9]*\).*/\1 \2/')
if [ "$(echo "$kv" | awk '{ print ($1 > 6 || ($1 == 6 && $2 >= 9)) }')" = 1 ]; then
	minor=$(findmnt -no MAJ:MIN --mountpoint "$MNT" | cut -d: -f2)
	touch "$T/hang"
	"$PY3" -c '
import os, sys
fd = os.open(sys.argv[1], os.O_RDWR)
os.pwrite(fd, b"\x5a" * 65536, 1 << 20)
' "$MNT/vda" 2>"$T/hang.err" &
	hung=$!
	wait_for 60 test ! -e "$T/hang" || fail "the hook did not take the write"
	# fusectl's count, where it is mounted.
	w=/sys/fs/fuse/connections/$minor/waiting
	if [ -r "$w" ]; then
		[ "$(cat "$w")" -ge 1 ] || fail "no request waiting in $w"
	fi
	old=$(worker)
	kill -KILL "$old"
	rc=0; wait "$hung" || rc=$?
	[ "$rc" = 0 ] || fail "the write in flight at the kill: $(cat "$T/hang.err")"
	expect_bytes "$MNT/vda" $((1 << 20)) 65536 5a
	expect_bytes "$T/vda.img" $((1 << 20)) 65536 5a
	if [ -r "$w" ]; then
		wait_for 60 sh -c "[ \$(cat $w) = 0 ]" ||
			fail "$w stays at $(cat "$w")"
	fi
	ok "a write the worker had read when killed was resent and completed"
else
	echo "kernel $(uname -r) < 6.9: no FUSE_NOTIFY_RESEND, in-flight case skipped"
fi

# In done the view is S: what the writer left is on the image.
if "$PY3" - "$MNT/vda" "$T/vda.img" <<'EOPY'
import sys
a = open(sys.argv[1], "rb").read()
b = open(sys.argv[2], "rb").read()
sys.exit(0 if a == b else 1)
EOPY
then :; else fail "the view and the image differ in done"; fi
t0=$(date +%s.%N)
fusermount3 -u "$MNT"
wait_for 60 sh -c "! pgrep -f '[c]olofs -c $T/colofs.ini'" || { ps -eo pid,ppid,stat,wchan:30,args | grep "[c]olofs -c $T"; journalctl -t colofs -n 20 --no-pager; fail "colofs did not exit after unmount"; }
assert_not_mounted
ok "stops cleanly: holder and worker gone in $(awk "BEGIN { printf \"%.2f\", $(date +%s.%N) - $t0 }") s, nothing mounted"

# SIGTERM to the holder: passed to the worker, which stops (no disk file
# is open); then the holder unmounts and exits 0.
[ -n "$HOLDER" ] || exit 0
start_colofs $HOLDER
holder=$(colofs_pid)
[ "$holder" != "$(worker)" ] || fail "the holder serves itself"
kill -TERM "$holder"
wait_for 60 sh -c "! pgrep -f '[c]olofs -c $T/colofs.ini'" ||
	fail "SIGTERM to the holder: still running"
assert_not_mounted
ok "SIGTERM to the holder stops both and unmounts"

# Without a holder a restart would unmount under the VM: refused.
start_colofs
expect_ctl restart ENOTSUP
cp "$MNT/.colo/error" "$T/err"
grep -q -- "--holder" "$T/err" || fail "why: $(cat "$T/err")"
stop_colofs
ok "restart without a holder refused (EOPNOTSUPP): $(cat "$T/err" 2>/dev/null)"
