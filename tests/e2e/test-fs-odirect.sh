#!/usr/bin/env bash
# O_DIRECT I/O on the disk file (QEMU's cache=none): writes land in the view
# and not in the image while running; reads see them; checkpoint and
# failover behave as with buffered I/O.
. "$(dirname "$0")/lib.sh"

make_image "$T/vda.img" 32M aa
write_config
start_colofs
ctl start

head -c 4M /dev/urandom >"$T/data"
dd if="$T/data" of="$MNT/vda" bs=1M seek=4 oflag=direct conv=notrunc \
	status=none || fail "dd oflag=direct"
dd if="$MNT/vda" of="$T/back" bs=1M skip=4 count=4 iflag=direct \
	status=none || fail "dd iflag=direct"
cmp "$T/data" "$T/back" || fail "O_DIRECT read-back differs"
expect_bytes "$T/vda.img" $((4 << 20)) $((4 << 20)) aa
ok "O_DIRECT writes and reads the view; image untouched"

# Small and unaligned direct I/O (FUSE has no alignment rule of its own).
dd if="$T/data" of="$MNT/vda" bs=4096 count=1 seek=1 oflag=direct \
	conv=notrunc status=none || fail "dd 4 KiB oflag=direct"
dd if="$MNT/vda" of="$T/b4k" bs=4096 skip=1 count=1 iflag=direct \
	status=none || fail "dd 4 KiB iflag=direct"
cmp <(head -c 4096 "$T/data") "$T/b4k" || fail "4 KiB direct read-back"
ok "4 KiB O_DIRECT"

# A buffered reader of the same range agrees with the direct writer.
cmp <(dd if="$MNT/vda" bs=1M skip=4 count=4 status=none) "$T/data" ||
	fail "buffered read after O_DIRECT write differs"

ctl failover
wait_state done
cmp <(dd if="$T/vda.img" bs=1M skip=4 count=4 status=none) "$T/data" ||
	fail "failover did not commit the O_DIRECT writes"
dd if="$MNT/vda" of="$T/back2" bs=1M count=32 iflag=direct status=none
cmp "$T/back2" "$T/vda.img" || fail "view and image differ after failover"
ok "failover commits O_DIRECT writes into the image"
