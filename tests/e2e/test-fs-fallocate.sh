#!/usr/bin/env bash
# fallocate on the disk file: PUNCH_HOLE|KEEP_SIZE and ZERO_RANGE make the
# view read zeros and leave the image alone while running; other modes are
# refused with EOPNOTSUPP; nothing grows the file.
. "$(dirname "$0")/lib.sh"

make_image "$T/vda.img" 8M cc
write_config
start_colofs
size=$((8 << 20))

# In state none the view cannot be written.
fallocate -p -o 0 -l 4096 "$MNT/vda" 2>"$T/err" && fail "punch hole in none"
ctl start

fallocate -p -o 65536 -l 131072 "$MNT/vda" || fail "punch hole"
expect_bytes "$MNT/vda" 65536 131072 00
expect_bytes "$MNT/vda" 0 65536 cc
expect_bytes "$MNT/vda" 196608 65536 cc
expect_bytes "$T/vda.img" 0 "$size" cc
ok "punch hole: the view reads zeros, the image is untouched"

fallocate -z -o 1048576 -l 1000 "$MNT/vda" || fail "zero range"
expect_bytes "$MNT/vda" 1048576 1000 00
expect_bytes "$MNT/vda" 1049576 4096 cc
fallocate -z -n -o 2097152 -l 4096 "$MNT/vda" || fail "zero range keep size"
expect_bytes "$MNT/vda" 2097152 4096 00
expect_bytes "$T/vda.img" 0 "$size" cc
ok "zero range (byte-exact, with and without KEEP_SIZE)"

# A punch hole that runs past the end is cut at the end, as on any file.
fallocate -p -o $((size - 4096)) -l 65536 "$MNT/vda" || fail "punch past end"
expect_bytes "$MNT/vda" $((size - 4096)) 4096 00
[ "$(stat -c %s "$MNT/vda")" = "$size" ] || fail "size changed"

if fallocate -z -o $((size - 4096)) -l 65536 "$MNT/vda" 2>"$T/err"; then
	fail "zero range growing the file succeeded"
fi
grep -q "No space left" "$T/err" || fail "zero range past end: $(cat "$T/err")"
if fallocate -c -o 0 -l 4096 "$MNT/vda" 2>"$T/err"; then
	fail "collapse range succeeded"
fi
grep -q "not supported" "$T/err" || fail "collapse range: $(cat "$T/err")"
if fallocate -i -o 0 -l 4096 "$MNT/vda" 2>"$T/err"; then
	fail "insert range succeeded"
fi
fallocate -o 0 -l 4096 "$MNT/vda" || fail "plain allocation within the file"
[ "$(stat -c %s "$MNT/vda")" = "$size" ] || fail "size changed"
ok "past the end: ENOSPC; collapse/insert: EOPNOTSUPP; size unchanged"

# Failover commits the zeros into the image.
ctl failover
wait_state done
expect_bytes "$T/vda.img" 65536 131072 00
expect_bytes "$T/vda.img" 1048576 1000 00
expect_bytes "$T/vda.img" 0 65536 cc
cmp "$MNT/vda" "$T/vda.img" || fail "view and image differ after failover"
ok "failover commits the zeroed ranges"
