#!/usr/bin/env bash
# fallocate ZERO_RANGE on the disk file behaves as on a raw file: the
# range reads zeros in every state that takes view writes, and where the
# view's bytes live in S (done), S's blocks stay allocated, as ZERO_RANGE
# keeps them on a raw file of the same file system; PUNCH_HOLE may free
# them, as on that raw file.  (fallocate(1): -z ZERO_RANGE, -p PUNCH_HOLE.)
. "$(dirname "$0")/lib.sh"

MiB=$((1 << 20))
make_image "$T/vda.img" 8M cc
write_config
start_colofs

# seek FILE OFFSET: "DATA HOLE" as SEEK_DATA and SEEK_HOLE from OFFSET see it.
seek() {
	"$PY3" -c 'import os, sys
fd = os.open(sys.argv[1], os.O_RDONLY)
off = int(sys.argv[2])
try:
    d = os.lseek(fd, off, os.SEEK_DATA)
except OSError:
    d = -1
print(d, os.lseek(fd, off, os.SEEK_HOLE))' "$1" "$2"
}

# The reference: what this file system does to a raw file.  SEEK_DATA
# and SEEK_HOLE are asked right after the fallocate, before anything reads
# the range: ext4 reports a ZERO_RANGE'd range as a hole until a read puts
# zeroed pages in its cache.
make_image "$T/ref.img" 8M cc
ref0=$(blocks "$T/ref.img")
fallocate -z -o $((4 * MiB)) -l $MiB "$T/ref.img" ||
	skip "this file system has no ZERO_RANGE to compare with"
ref_seek=$(seek "$T/ref.img" $((4 * MiB)))
ref_z=$(blocks "$T/ref.img")
[ "$ref_z" -ge "$ref0" ] || skip "ZERO_RANGE frees blocks on this file system"
fallocate -p -o $((6 * MiB)) -l $MiB "$T/ref.img"
ref_p=$(blocks "$T/ref.img")

# none: V = S, which the VM may not write.
fallocate -z -o 0 -l 4096 "$MNT/vda" 2>/dev/null && fail "zero range in none"
expect_bytes "$T/vda.img" 0 $((8 * MiB)) cc
ok "none: zero range refused, S untouched"

# running: the primary overwrote [1M, 1M+256K) (hidden keeps cc), the VM
# wrote [1M+128K, 1M+384K) (active); zero [1M, 1.5M) over both layers.
ctl start
nbd_write $MiB 262144 aa
view_write $((MiB + 131072)) 262144 bb
img0=$(blocks "$T/vda.img")
fallocate -z -o $MiB -l 524288 "$MNT/vda" || fail "zero range in running"
expect_bytes "$MNT/vda" $MiB 524288 00
expect_bytes "$MNT/vda" $((MiB - 4096)) 4096 cc
expect_bytes "$MNT/vda" $((MiB + 524288)) 4096 cc
expect_bytes "$T/vda.img" $MiB 262144 aa
expect_bytes "$T/vda.img" $((MiB + 262144)) 262144 cc
[ "$(blocks "$T/vda.img")" -ge "$img0" ] || fail "running: S lost blocks"
ok "running: zeros over hidden and active, S untouched"

# failover commits the zeros as data: S allocated there.
ctl failover
wait_state done
expect_bytes "$T/vda.img" $MiB 524288 00
[ "$(blocks "$T/vda.img")" -ge "$img0" ] || fail "failover: S lost blocks"
cmp "$MNT/vda" "$T/vda.img" || fail "view and image differ after failover"
ok "failover: the zeros are committed, S keeps its blocks"

# done: the view is S.  ZERO_RANGE keeps S's blocks, as on the raw file.
img1=$(blocks "$T/vda.img")
fallocate -z -o $((4 * MiB)) -l $MiB "$MNT/vda" || fail "zero range in done"
got=$(seek "$T/vda.img" $((4 * MiB)))
[ "$got" = "$ref_seek" ] ||
	fail "done: S's SEEK_DATA/SEEK_HOLE at 4M: $got, a raw file's: $ref_seek"
img2=$(blocks "$T/vda.img")
[ "$img2" -ge "$img1" ] ||
	fail "done: ZERO_RANGE freed $((img1 - img2)) blocks of S (a raw file: $((ref0 - ref_z)))"
expect_bytes "$MNT/vda" $((4 * MiB)) $MiB 00
expect_bytes "$T/vda.img" $((4 * MiB)) $MiB 00
expect_bytes "$T/vda.img" $((5 * MiB)) 4096 cc
ok "done: zero range reads zeros and S keeps its blocks (like a raw file)"

fallocate -p -o $((6 * MiB)) -l $MiB "$MNT/vda" || fail "punch hole in done"
expect_bytes "$MNT/vda" $((6 * MiB)) $MiB 00
expect_bytes "$T/vda.img" $((6 * MiB)) $MiB 00
if [ "$ref_p" -lt "$ref_z" ]; then
	[ "$(blocks "$T/vda.img")" -lt "$img2" ] ||
		fail "done: PUNCH_HOLE freed nothing in S (a raw file frees)"
fi
ok "done: punch hole reads zeros and frees S's blocks as a raw file does"
