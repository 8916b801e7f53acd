#!/usr/bin/env bash
# A daemon killed with SIGKILL leaves a dead mount: a restart refuses it
# with a message that says what to do, fusermount3 -u removes it, and a
# restart on the same config then works and serves the image.
. "$(dirname "$0")/lib.sh"

make_image "$T/vda.img" 4M 00
write_config
start_colofs
ctl start
nbd_write 0 65536 ab
view_write 65536 4096 cd
pid=$(colofs_pid)
[ -n "$pid" ] || fail "no daemon pid"
kill -KILL "$pid"
wait_for 10 sh -c "! kill -0 $pid 2>/dev/null || grep -q '^[0-9]* (.*) Z' /proc/$pid/stat" ||
	fail "the daemon survived SIGKILL"
grep -q " $MNT fuse" /proc/self/mounts || fail "no mount left after SIGKILL"
stat "$MNT/vda" 2>"$T/err" && fail "the dead mount still serves"
grep -q "not connected" "$T/err" || fail "dead mount: $(cat "$T/err")"
ok "SIGKILL leaves a dead mount (ENOTCONN)"

rc=0; "$COLOFS_BIN" -c "$T/colofs.ini" 2>"$T/err" || rc=$?
[ "$rc" = 1 ] || fail "restart on a dead mount: exit $rc"
grep -q "fusermount3 -u $MNT" "$T/err" ||
	fail "restart on a dead mount: $(cat "$T/err")"
ok "restart on the dead mount refused: $(cat "$T/err")"

fusermount3 -u "$MNT" || fail "fusermount3 -u on the dead mount"
grep -q " $MNT fuse" /proc/self/mounts && fail "fusermount3 -u left the mount"
ok "fusermount3 -u removes it"

# The socket file of the dead listener may remain; a restart copes.
start_colofs
expect_status state none
# The primary's write reached S before the kill; the view's write was in a
# memory buffer and is gone, as after any crash of a running secondary.
expect_bytes "$MNT/vda" 0 65536 ab
expect_bytes "$MNT/vda" 65536 4096 00
expect_status s_consistent 0	# the primary may have written on
nbd_write 131072 4096 ef		# any client: nothing changes
expect_status s_consistent 0
nbdsh_c "$(primary_uri)" 'h.pwrite(bytes([0xef]) * 4096, 131072); h.flush(); h.shutdown()'
expect_status s_consistent 1		# a primary with this generation
ctl start
expect_bytes "$T/vda.img" 131072 4096 ef
ok "restart on the same config works and serves the image"
stop_colofs
assert_not_mounted
