#!/usr/bin/env bash
# Clean shutdown with I/O in flight: SIGTERM, SIGINT and fusermount3 -u
# while the view and the primary are writing.  The daemon exits 0, nothing
# stays mounted, every write that was acknowledged is in the image, and no
# 1 MiB request is torn (each block is wholly old or wholly new).  The view
# writer holds the disk file open, so the first signal only marks a stop
# pending (test-durable-sigterm.sh); the second, sent here, forces it.
. "$(dirname "$0")/lib.sh"

MIB=1048576
make_image "$T/vda.img" 64M aa
write_config

# writer KIND BYTE FIRST_BLOCK NBLOCKS LOG: writes 1 MiB blocks of BYTE in a
# loop (the view with O_DIRECT, or the primary over NBD) until an error,
# appending each acknowledged block number to LOG.
writer() {
	exec "$PY3" - "$@" "$MNT/vda" "$(nbd_uri)" <<'EOPY'
import mmap, os, sys
kind, byte, first, n, log, path, uri = sys.argv[1:8]
byte, first, n = int(byte, 16), int(first), int(n)
B = 1 << 20
buf = mmap.mmap(-1, B)
buf.write(bytes([byte]) * B)
out = open(log, "w", buffering=1)
if kind == "view":
    fd = os.open(path, os.O_WRONLY | os.O_DIRECT)
    def write(i):
        if os.pwritev(fd, [buf], i * B) != B:
            raise OSError("short write")
else:
    import nbd
    h = nbd.NBD()
    h.connect_uri(uri)
    data = bytes(buf)
    def write(i):
        h.pwrite(data, i * B)
i = 0
try:
    while True:
        blk = first + i % n
        write(blk)
        out.write("%d\n" % blk)
        i += 1
except Exception as e:
    out.write("stopped: %s\n" % e)
EOPY
}

# check_blocks OLD: every 1 MiB block of the image is wholly OLD or one of
# the writers' bytes; the blocks in the logs are new.
check_blocks() {
	"$PY3" - "$T/vda.img" "$1" "$T"/log.* <<'EOPY'
import sys
img, old, logs = sys.argv[1], int(sys.argv[2], 16), sys.argv[3:]
B = 1 << 20
data = open(img, "rb").read()
acked = {}
for log in logs:
    byte = int(log.rsplit(".", 1)[1], 16)
    for line in open(log):
        if line.strip().isdigit():
            acked[int(line)] = byte
for i in range(len(data) // B):
    blk = data[i * B:(i + 1) * B]
    vals = set(blk)
    if len(vals) != 1:
        sys.exit("FAIL: block %d is torn: %s" % (i, sorted(vals)))
    if i in acked and blk[0] != acked[i]:
        sys.exit("FAIL: block %d was acknowledged with %02x but holds %02x"
                 % (i, acked[i], blk[0]))
print("ok: %d acknowledged blocks present, none torn" % len(acked))
EOPY
}

# run_case HOW: state done (view writes go straight to S) with a view
# writer and, while the primary may still write, a primary writer.
# force_stop SIG PID: the signal, then once colofs has said it waits for
# the open disk file, the same signal again.
force_stop() {
	kill -"$1" "$2"
	wait_for 20 grep -q "SIG$1 while" "$T/colofs.log" ||
		fail "SIG$1: no word of the pending stop"
	kill -"$1" "$2"
}

run_case() {
	local how=$1
	rm -f "$T"/log.*
	rm -rf "$T/state"	# a fresh deployment: the last case left done
	start_colofs_fg
	local pid=$COLOFS_PID
	ctl start
	writer nbd cc 0 16 "$T/log.cc" &
	local w1=$!
	wait_for 20 grep -q . "$T/log.cc" || fail "$how: the primary wrote nothing"
	ctl stop
	wait_for 20 grep -q stopped "$T/log.cc" || fail "$how: primary writer still running after stop"
	writer view bb 32 16 "$T/log.bb" &
	local w2=$!
	wait_for 20 sh -c "[ \$(wc -l <'$T/log.bb') -ge 3 ]" ||
		fail "$how: the view wrote nothing"
	case $how in
	SIGTERM) force_stop TERM "$pid" ;;
	SIGINT) force_stop INT "$pid" ;;
	unmount)
		# Busy: a plain unmount is refused and changes nothing; a lazy
		# one ends the session when the last open file is closed.
		fusermount3 -u "$MNT" 2>/dev/null && fail "unmount while busy"
		alive "$pid" || fail "the daemon died on a refused unmount"
		fusermount3 -u -z "$MNT" || fail "fusermount3 -u -z"
		kill -TERM "$w2"
		;;
	esac
	wait_exit "$pid"
	[ "$EXIT_STATUS" = 0 ] || fail "$how: colofs exited $EXIT_STATUS"
	wait "$w1" "$w2" || true
	[ "$how" = unmount ] || grep -q stopped "$T/log.bb" ||
		fail "$how: the view writer did not stop"
	assert_not_mounted
	check_blocks aa || fail "$how: image damaged"
	grep -q "stopped cleanly" "$T/colofs.log" || fail "$how: no clean stop logged"
	ok "$how with I/O in flight: exit 0, unmounted, image intact"
	: >"$T/colofs.log"
}

run_case SIGTERM
run_case SIGINT
run_case unmount

# Running (view writes in memory buffers): after SIGTERM, the image holds
# exactly the primary's acknowledged writes and none of the view's.
make_image "$T/vda.img" 64M aa
rm -f "$T"/log.* && rm -rf "$T/state"
start_colofs_fg
pid=$COLOFS_PID
ctl start
writer nbd cc 0 16 "$T/log.cc" &
writer view bb 32 16 "$T/log.bb" &
wait_for 20 sh -c "[ \$(wc -l <'$T/log.bb') -ge 3 ] && [ \$(wc -l <'$T/log.cc') -ge 3 ]" ||
	fail "running: the writers did not get going"
force_stop TERM "$pid"
wait_exit "$pid"
[ "$EXIT_STATUS" = 0 ] || fail "running: colofs exited $EXIT_STATUS"
wait || true
assert_not_mounted
rm "$T/log.bb"      # the view's writes must not be in the image at all
check_blocks aa || fail "running: image damaged"
expect_bytes "$T/vda.img" $((32 * MIB)) $((16 * MIB)) aa
ok "running: SIGTERM keeps the primary's writes, the view's never reach S"

# A failover commit under way when the signal comes runs to its end: after
# failover S is the only copy of the disk.
make_image "$T/vda.img" 64M aa
rm -rf "$T/state"
start_colofs_fg
pid=$COLOFS_PID
ctl start
head -c 48M /dev/urandom >"$T/data"
dd if="$T/data" of="$MNT/vda" bs=1M seek=8 conv=notrunc status=none
nbd_write 0 $((16 * MIB)) cc
cp "$MNT/vda" "$T/view"
ctl failover
kill -TERM "$pid"
wait_exit "$pid"
[ "$EXIT_STATUS" = 0 ] || fail "failover: colofs exited $EXIT_STATUS"
assert_not_mounted
cmp "$T/vda.img" "$T/view" || fail "SIGTERM during failover: the image is not the view"
grep -q "waiting for the failover commit" "$T/colofs.log" && echo "(the commit was still running at SIGTERM)"
ok "SIGTERM during a failover commit: the commit completes, image = view"
