#!/usr/bin/env bash
# Space: a write never fails for space that a completed checkpoint freed
# (buffer_dir on a small tmpfs); zeroed and trimmed ranges take no room
# under buffer_limit; a view write refused for space says why in
# .colo/error.
. "$(dirname "$0")/lib.sh"

MIB=1048576
make_image "$T/vda.img" 256M 11
mkdir -p "$T/buf"
mount -t tmpfs -o size=64M,mode=0700 colofs-test "$T/buf" || skip "cannot mount a tmpfs"
at_exit "umount -l $T/buf"
BUFFER=file EXTRA_CONFIG="buffer_dir = $T/buf" write_config
start_colofs
ctl start

# Fill the tmpfs with the VM's writes, then checkpoint: those buffers are
# dropped, and the very next writes must find their room.
view_write 0 $((56 * MIB)) 22
ctl checkpoint
view_write $((64 * MIB)) $((24 * MIB)) 33 || fail "a view write right after the checkpoint failed"
for i in $(seq 0 9); do
	view_write $(((120 + i) * MIB)) $MIB 4$i ||
		fail "view write $i after the checkpoint failed"
done
"$PY3" - "$(nbd_uri)" <<'EOPY' || fail "primary writes after the checkpoint failed"
import nbd, sys
h = nbd.NBD()
h.connect_uri(sys.argv[1])
for i in range(10):
    h.pwrite(bytes([0x50 + i]) * (1 << 20), (140 + i) << 20)
h.flush()
h.shutdown()
EOPY
expect_bytes "$MNT/vda" $((64 * MIB)) $((24 * MIB)) 33
ok "writes right after a checkpoint use the room it freed"

# The checkpoint keeps the dropped buffers' blocks for the next epochs
# (buffer_retained_bytes); a write that finds the file system full gets
# them back first.
ctl checkpoint
head -c $((60 * MIB)) /dev/zero >"$T/buf/filler" 2>/dev/null || true
view_write $((180 * MIB)) $((8 * MIB)) 55 ||
	fail "a view write did not get the retained blocks back"
expect_status buffer_retained_bytes 0
ok "a full buffer_dir gives the retained blocks back first"

# No room at all: the view write fails with ENOSPC, and says why.
head -c $((60 * MIB)) /dev/zero >"$T/buf/filler2" 2>/dev/null || true
: >"$MNT/.colo/error"
if view_write $((200 * MIB)) $((8 * MIB)) 66 2>"$T/dd.err"; then
	fail "a view write into a full buffer_dir succeeded"
fi
grep -q "No space left" "$T/dd.err" || fail "dd said: $(cat "$T/dd.err")"
grep -q "view write at .* failed: No space left on device" "$MNT/.colo/error" ||
	fail ".colo/error: $(cat "$MNT/.colo/error")"
rm -f "$T/buf/filler" "$T/buf/filler2"
ok "a view write refused for space: $(cat "$MNT/.colo/error")"
stop_colofs
umount "$T/buf"

# buffer_limit counts bytes that take room, not trimmed or zeroed ranges.
rm -rf "$T/state"
EXTRA_CONFIG="buffer_limit = 16M" write_config
start_colofs
ctl start
fallocate -p -o 0 -l $((100 * MIB)) "$MNT/vda" || fail "fallocate -p of 100 MiB under a 16M limit"
fallocate -z -o $((100 * MIB)) -l $((100 * MIB)) "$MNT/vda" || fail "fallocate -z of 100 MiB"
expect_status buffer_bytes 0
expect_bytes "$MNT/vda" 0 $((200 * MIB)) 00
view_write 0 $((8 * MIB)) 77
expect_status buffer_bytes $((8 * MIB))
fallocate -p -o 0 -l $((8 * MIB)) "$MNT/vda" || fail "punching the written range"
expect_status buffer_bytes 0
view_write 0 $((12 * MIB)) 78 || fail "a 12 MiB write after the trims"
expect_bytes "$MNT/vda" 0 $((12 * MIB)) 78
ok "trims and zeroes take no room under buffer_limit"
