#!/usr/bin/env bash
# A request in progress when the session ends may wait for requests still
# in the kernel: a checkpoint writes back the pages dirtied through a
# shared mmap (page_cache = true), and the kernel sends those writes as
# FUSE requests.  A second SIGTERM arriving meanwhile must not leave the
# checkpoint waiting for ever (and colofs with it): the loop reads on
# until the requests it had taken are answered (fs/fuse/fuse-loop.c).
. "$(dirname "$0")/lib.sh"

make_image "$T/vda.img" 4M 11
EXTRA_CONFIG="page_cache = true" write_config
export COLOFS_TEST_HOLD_CTL=$T/hold
start_colofs_fg
pid=$COLOFS_PID
# Should colofs hang, its checkpoint thread sleeps in the kernel for a
# write nobody reads, and kill -9 cannot end it: abort the connection.
conn=$(mountpoint -d "$MNT" | cut -d: -f2)
at_exit "echo 1 >/sys/fs/fuse/connections/$conn/abort"
ctl start

# The VM: pages dirtied through a writable shared mapping, kept dirty.
"$PY3" - "$MNT/vda" "$T/mapped" <<'EOPY' &
import mmap, os, sys, time
fd = os.open(sys.argv[1], os.O_RDWR)
m = mmap.mmap(fd, 1 << 20, mmap.MAP_SHARED, mmap.PROT_READ | mmap.PROT_WRITE)
m[0:8192] = b"\x99" * 8192
open(sys.argv[2], "w").close()
time.sleep(600)
EOPY
vm=$!
at_exit "kill -9 $vm"
wait_for 20 test -e "$T/mapped" || fail "the mapping was not made"

# The checkpoint is taken and held before it writes the pages back.
: >"$T/hold"
sh -c "echo checkpoint >'$MNT/.colo/ctl'" 2>/dev/null &
ckpt=$!
at_exit "kill -9 $ckpt"
wait_for 20 test -e "$T/hold.held" || fail "the checkpoint was not taken"

kill -TERM "$pid"
wait_for 20 grep -q "SIGTERM while 1 disk file is open" "$T/colofs.log" ||
	fail "no deferral: $(cat "$T/colofs.log")"
kill -TERM "$pid"
# The loop has ended: it logs that it reads on for the checkpoint (or, as
# before, no thread of it waits in read(/dev/fuse) any more).
in_kernel() { grep -l fuse_dev_do_read /proc/"$pid"/task/*/wchan 2>/dev/null |
	wc -l; }
ended() {
	grep -q "the session ended with 1 request in progress" "$T/colofs.log" ||
		[ "$(in_kernel)" = 0 ]
}
wait_for 20 ended || fail "the loop did not end: $(cat "$T/colofs.log")"
rm "$T/hold.held"		# the checkpoint writes the pages back now
wait_exit "$pid"
[ "$EXIT_STATUS" = 0 ] || fail "exit $EXIT_STATUS: $(cat "$T/colofs.log")"
wait "$ckpt" || fail "the checkpoint failed"
ok "a second SIGTERM during a checkpoint's write-back: answered, colofs exits"
