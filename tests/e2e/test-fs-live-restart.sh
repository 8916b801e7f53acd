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
. "$(dirname "$0")/live.sh"

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

# ---- state none: the primary's data, read through the VM's fd ----
nbd_pattern
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

# fio with crc32c verification through kills: psync, then libaio with
# O_DIRECT (QEMU's aio=native) and several requests in flight.
run_fio() {
	local kills=0 k old fio rc
	fio --name=v --filename="$MNT/vda" --rw=randwrite --bsrange=4k-256k \
		--size=8M --loops=20 --verify=crc32c --verify_backlog=16 \
		--verify_fatal=1 --verify_state_save=0 --randrepeat=0 "$@" \
		>"$T/fio.log" 2>&1 &
	fio=$!
	at_exit "kill $fio"
	for ((k = 0; k < 3; k++)); do
		kill -0 "$fio" 2>/dev/null || break
		old=$(worker)
		kill -KILL "$old"
		kills=$((kills + 1))
		wait_for 60 sh -c "p=\$(sed -n 's/^pid=//p' '$MNT/.colo/status') &&
			[ -n \"\$p\" ] && [ \"\$p\" != $old ]" ||
			fail "fio: no new worker after killing $old"
	done
	rc=0; wait "$fio" || rc=$?
	[ "$rc" = 0 ] || { cat "$T/fio.log"; fail "fio $* across kills"; }
	grep -q "err= 0" "$T/fio.log" || { cat "$T/fio.log"; fail "fio: errors"; }
	ok "fio $* --verify=crc32c across $kills kill -9: $(grep -o 'WRITE: bw=[^ ]*' "$T/fio.log"), err=0"
}
if command -v fio >/dev/null; then
	run_fio --ioengine=psync
	run_fio --ioengine=libaio --direct=1 --iodepth=8
fi

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
t1=$(date +%s.%N)
wait_for 60 sh -c "! pgrep -f '[c]olofs -c $T/colofs.ini'" || { ps -eo pid,ppid,stat,wchan:30,args | grep "[c]olofs -c $T"; journalctl -t colofs -n 20 --no-pager; fail "colofs did not exit after unmount"; }
assert_not_mounted
ok "stops cleanly: unmounted in $(awk "BEGIN { printf \"%.2f\", $t1 - $t0 }") s, holder and worker gone $(awk "BEGIN { printf \"%.2f\", $(date +%s.%N) - $t1 }") s later"

# SIGTERM to the holder: passed to the worker, which stops (no disk file
# is open); then the holder unmounts and exits 0.
[ -n "$HOLDER" ] || exit 0
start_colofs $HOLDER
old=$(worker)
holder=$(ps -o ppid= -p "$old" | tr -d ' ')
# A disk file open across a restart: the new worker counts it, so a stop
# still waits for the VM.
exec 9<"$MNT/vda"
kill -KILL "$old"
wait_for 60 sh -c "p=\$(sed -n 's/^pid=//p' '$MNT/.colo/status') &&
	[ -n \"\$p\" ] && [ \"\$p\" != $old ]" || fail "no new worker"
expect_status disk_files_open 1
kill -TERM "$holder"
wait_for 60 grep -qx "stop_pending=1" "$MNT/.colo/status" ||
	fail "SIGTERM to the holder did not reach the worker"
head -c 4096 <&9 >/dev/null || fail "the open file fails while a stop waits"
expect_status disk_files_open 1
exec 9<&-
wait_for 60 sh -c "! pgrep -f '[c]olofs -c $T/colofs.ini'" ||
	fail "SIGTERM to the holder: still running after the last close"
assert_not_mounted
ok "SIGTERM to the holder: the worker (restarted once) waits for the open disk file, then both stop and unmount"

# Without a holder a restart would unmount under the VM: refused.
start_colofs
expect_ctl restart ENOTSUP
cp "$MNT/.colo/error" "$T/err"
grep -q -- "--holder" "$T/err" || fail "why: $(cat "$T/err")"
stop_colofs
ok "restart without a holder refused (EOPNOTSUPP): $(cat "$T/err" 2>/dev/null)"
