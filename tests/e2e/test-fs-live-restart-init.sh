#!/usr/bin/env bash
# FUSE_INIT across restarts.  A worker killed while it answers the
# kernel's INIT: the next one answers the resent INIT.  A worker whose
# FUSE settings differ from those the kernel negotiated at mount (say a new binary with another max_write) must not serve: it
# refuses, the holder keeps the mount and tries again (with a back-off),
# and the VM's I/O waits instead of failing.  The test makes the
# difference by changing max_write in the saved INIT reply, in the
# holder's state memfd (holder.h's struct holder_state: init_out at byte
# 276, the reply's max_write 36 bytes in; restarts at byte 532), then puts
# it back: the next worker serves, and the reader never saw an error.
. "$(dirname "$0")/lib.sh"
. "$(dirname "$0")/live.sh"
"$COLOFS_BIN" --help | grep -q -- --holder || fail "colofs has no --holder"

make_image "$T/vda.img" 16M
write_config
# The first worker is killed while it answers FUSE_INIT (a test hook holds
# it there): the kernel resends the INIT to the next one, which answers it.
# Until then a stat of the mount waits; findmnt reads only mountinfo.
touch "$T/hang-init"
COLOFS_TEST_HANG_INIT=$T/hang-init env --default-signal=INT,QUIT \
	"$COLOFS_BIN" -c "$T/colofs.ini" --holder -f 2>>"$T/colofs.log" &
holder=$!
at_exit 'for p in $(pgrep -f -- "[c]olofs -c $T/colofs.ini"); do kill -9 $p; done'
wait_for 60 test ! -e "$T/hang-init" || fail "the INIT hook did not run: $(cat "$T/colofs.log")"
findmnt --mountpoint "$MNT" >/dev/null || fail "not mounted"
first=$(pgrep -P "$holder")
[ -n "$first" ] || fail "no worker"
kill -KILL "$first"
wait_for 60 sh -c "p=\$(sed -n 's/^pid=//p' '$MNT/.colo/status') &&
	[ -n \"\$p\" ] && [ \"\$p\" != $first ]" ||
	fail "the mount does not serve after the kill in INIT: $(tail "$T/colofs.log")"
ok "killed while answering FUSE_INIT: the next worker got it again and serves"
nbd_pattern

old=$(worker)
holder=$(ps -o ppid= -p "$old" | tr -d ' ')
memfd=
for f in /proc/"$holder"/fd/*; do
	case $(readlink "$f") in /memfd:colofs-state*) memfd=$f ;; esac
done
[ -n "$memfd" ] || fail "no state memfd in the holder $holder"

# state OFFSET [VALUE]: reads (or writes) a u32 of the state memfd.
state() {
	"$PY3" - "$memfd" "$@" <<'EOPY'
import os, struct, sys
fd = os.open(sys.argv[1], os.O_RDWR)
off = int(sys.argv[2])
if len(sys.argv) > 3:
    os.pwrite(fd, struct.pack("<I", int(sys.argv[3])), off)
print(struct.unpack("<I", os.pread(fd, 4, off))[0])
EOPY
}
max_write=$(state 312)
[ "$max_write" = 1048576 ] || fail "saved max_write is $max_write, not 1 MiB"

rm -f "$T/stop" "$T/progress"
"$PY3" "$HERE_LIVE/live_io.py" read "$MNT/vda" "$T" >"$T/io.out" 2>"$T/io.err" &
IO_PID=$!
at_exit "kill $IO_PID"
wait_for 60 test -s "$T/progress" || fail "the reader did not start: $(cat "$T/io.err")"

r0=$(state 532)
state 312 65536 >/dev/null
kill -KILL "$old"
wait_for 60 sh -c "[ \$(grep -c 'negotiates other FUSE settings' '$T/colofs.log') -ge 2 ]" ||
	fail "no worker refused the other settings: $(tail "$T/colofs.log")"
mountpoint -q "$MNT" || fail "the mount went"
ok "workers that would negotiate max_write 64 KiB refuse to serve ($(($(state 532) - r0)) starts); the mount stays"

p0=$(progress)
state 312 "$max_write" >/dev/null
wait_for 60 sh -c "[ \$(tr -d ' ' <'$T/progress') -ge $((p0 + 64)) ]" ||
	fail "no progress once the settings match: $(cat "$T/io.err"; tail "$T/colofs.log")"
touch "$T/stop"
rc=0; wait "$IO_PID" || rc=$?
[ "$rc" = 0 ] || fail "the reader: $(cat "$T/io.err")"
ok "with the settings back, a worker serves; the reader waited and saw no error ($(cat "$T/io.out"))"
fusermount3 -u "$MNT"
wait_for 60 sh -c "! pgrep -f '[c]olofs -c $T/colofs.ini'" || fail "did not stop"
