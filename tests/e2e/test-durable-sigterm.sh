#!/usr/bin/env bash
# SIGTERM never pulls a disk from under a VM: with a disk file open, colofs
# keeps serving (the holder reads correct data after the signal), says why
# in the log and .colo/status, and stops once the file is closed; a second
# signal stops it at once; with nothing open, SIGTERM stops it as before.
. "$(dirname "$0")/lib.sh"

make_image "$T/vda.img" 4M 00
write_config
start_colofs_fg
ctl start
nbd_write 0 65536 ab
view_write 65536 4096 cd

exec 3<"$MNT/vda"		# the VM holds its disk
expect_status disk_files_open 1
kill -TERM "$COLOFS_PID"
wait_for 10 grep -q "SIGTERM while 1 disk file is open: serving until" "$T/colofs.log" ||
	fail "no log line: $(cat "$T/colofs.log")"
alive "$COLOFS_PID" || fail "colofs exited with the disk file open"
mountpoint -q "$MNT" || fail "unmounted with the disk file open"
expect_status stop_pending 1
# read_at OFFSET: the distinct bytes of 4 KiB at OFFSET, read (pread) by
# the holder of fd 3.
read_at() {
	"$PY3" -c 'import os, sys
print(" ".join(sorted("%02x" % b for b in set(os.pread(3, 4096, int(sys.argv[1]))))))' "$1"
}
[ "$(read_at 65536)" = cd ] || fail "the holder read {$(read_at 65536)} after SIGTERM, want cd"
[ "$(read_at 0)" = 00 ] || fail "V at 0 before the checkpoint: $(read_at 0)"
expect_ctl checkpoint ok	# the FT manager still drives it
[ "$(read_at 0)" = ab ] || fail "V at 0 after the checkpoint: $(read_at 0)"
ok "SIGTERM with the disk file open: still serving, log and status say why"

exec 3<&-
wait_exit "$COLOFS_PID"
[ "$EXIT_STATUS" = 0 ] || fail "exit $EXIT_STATUS after the last close"
assert_not_mounted
grep -q "the last disk file was closed: stopping" "$T/colofs.log" || fail "log: $(cat "$T/colofs.log")"
ok "stops once the last disk file is closed"

# A second signal forces the stop.
start_colofs_fg
exec 3<"$MNT/vda"
kill -TERM "$COLOFS_PID"
wait_for 10 grep -q "SIGTERM while 1 disk file is open" "$T/colofs.log" || fail "no deferral"
kill -TERM "$COLOFS_PID"
wait_exit "$COLOFS_PID"
exec 3<&-
[ "$EXIT_STATUS" = 0 ] || fail "exit $EXIT_STATUS after the second signal"
assert_not_mounted
ok "a second SIGTERM stops at once"

# Nothing open: SIGTERM stops as before.
start_colofs_fg
kill -TERM "$COLOFS_PID"
wait_exit "$COLOFS_PID"
[ "$EXIT_STATUS" = 0 ] || fail "exit $EXIT_STATUS"
assert_not_mounted
ok "with no disk file open SIGTERM stops at once"
