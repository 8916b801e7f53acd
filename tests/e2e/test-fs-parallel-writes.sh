#!/usr/bin/env bash
# Writes to one disk file run in parallel.  While an O_DIRECT write is held
# inside colofs (test hook COLOFS_TEST_HOLD_WRITE), a write to another
# range of the same file completes and reads back.  The kernel serializes
# a FUSE file's writes unless the open reply carries
# FOPEN_PARALLEL_DIRECT_WRITES, which libfuse 3.14's fuse_reply_open cannot
# say (fs/fuse/fusefs.c reply_open_disk).  Overlapping writes stay ordered
# by the engines' range locks (tests/unit).
. "$(dirname "$0")/lib.sh"

# direct_write OFFSET BYTE(hex) MARK: 64 KiB of BYTE at OFFSET in one
# O_DIRECT write; creates MARK once the write has returned (before the
# close: an fsync or a close may wait for writes in flight).
direct_write() {
	"$PY3" - "$VIEW" "$1" "$2" "$3" <<'EOPY'
import mmap, os, sys
fd = os.open(sys.argv[1], os.O_WRONLY | os.O_DIRECT)
buf = mmap.mmap(-1, 65536)
buf.write(bytes([int(sys.argv[3], 16)]) * 65536)
if os.pwritev(fd, [buf], int(sys.argv[2])) != 65536:
    sys.exit("short write")
open(sys.argv[4], "w").close()
os.close(fd)
EOPY
}

# parallel_writes WHAT: the check on the disk file $VIEW.
parallel_writes() {
	local first second
	rm -f "$T/first" "$T/second"
	: >"$T/hold"
	direct_write 0 11 "$T/first" &
	first=$!
	wait_for 20 test -e "$T/hold.held" ||
		fail "$1: the first write never reached colofs"
	direct_write $((16 * 65536)) 22 "$T/second" &
	second=$!
	# Not a timing: on a serialized file the second write never returns
	# while the first is held, so release the first before failing.
	if ! wait_for 20 test -e "$T/second"; then
		rm -f "$T/hold.held"
		wait "$first" "$second"
		fail "$1: a write to another range waited for the held one"
	fi
	[ -e "$T/first" ] && fail "$1: the held write returned before its release"
	expect_bytes "$VIEW" $((16 * 65536)) 65536 22
	rm "$T/hold.held"
	wait "$first" || fail "$1: the held write failed"
	wait "$second" || fail "$1: the second write failed"
	expect_bytes "$VIEW" 0 65536 11
	ok "$1: a write to another range returns while one is held in colofs"
}

make_image "$T/vda.img" 4M 00
write_config
export COLOFS_TEST_HOLD_WRITE=$T/hold
start_colofs
ctl start
VIEW=$MNT/vda
parallel_writes secondary
ctl failover
wait_for 20 eval '[ "$(status_get state)" = done ]' ||
	fail "no failover: $(cat "$MNT/.colo/status")"
parallel_writes "done disk"

# A primary's disk file (its secondary not there: writes are tracked).
PMNT=$T/pmnt
mkdir "$PMNT"
at_exit "fusermount3 -u $PMNT || umount -l $PMNT"
make_image "$T/p.img" 4M 00
start_primary_fg 5
VIEW=$PMNT/vda
parallel_writes primary
