#!/usr/bin/env bash
# buffer_limit: a view write (FUSE) or a primary write (NBD) that would
# take the buffers over the limit fails whole with ENOSPC, the reason is
# in .colo/error, nothing of it is applied, and a checkpoint frees room.
# (dd reads a pipe: iflag=fullblock makes its 32 KiB one write, which is
# what "whole" is about; a short read would make two writes.)
. "$(dirname "$0")/lib.sh"

make_image "$T/vda.img" 4M 11
EXTRA_CONFIG="buffer_limit = 64K" write_config
start_colofs
ctl start
expect_status buffer_limit 65536

# 48 KiB fits; another 32 KiB does not, and must not land in part.
view_write 0 49152 33
expect_status buffer_bytes 49152
if pattern 32768 44 | dd of="$MNT/vda" bs=32768 iflag=fullblock seek=1M oflag=seek_bytes,direct \
	conv=notrunc status=none 2>"$T/dd.err"; then
	fail "a view write over buffer_limit succeeded"
fi
grep -q "No space left on device" "$T/dd.err" || fail "dd said: $(cat "$T/dd.err")"
grep -q buffer_limit "$MNT/.colo/error" || fail ".colo/error: $(cat "$MNT/.colo/error")"
expect_bytes "$MNT/vda" $((1024 * 1024)) 32768 11
expect_status buffer_bytes 49152

# The primary's write needs 32 KiB of saved old data: refused, S untouched.
out=$("$PY3" -m nbd -u "$(nbd_uri)" -c "
try:
    h.pwrite(bytes([0x22]) * 32768, 2 * 1024 * 1024)
    print('written')
except nbd.Error as e:
    print('refused', e.errno)
h.shutdown()" 2>&1)
case "$out" in refused*ENOSPC*|refused*28*) ;; *) fail "primary write over the limit: $out" ;; esac
expect_bytes "$T/vda.img" $((2 * 1024 * 1024)) 32768 11

# A checkpoint frees the buffers: the same writes now succeed.
ctl checkpoint
expect_status buffer_bytes 0
view_write $((1024 * 1024)) 32768 44
nbd_write $((2 * 1024 * 1024)) 32768 22
expect_bytes "$MNT/vda" $((1024 * 1024)) 32768 44
expect_bytes "$T/vda.img" $((2 * 1024 * 1024)) 32768 22
ok "buffer_limit refuses whole writes and a checkpoint frees room"
