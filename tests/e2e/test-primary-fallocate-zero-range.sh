#!/usr/bin/env bash
# fallocate on the primary's disk file, replicating: ZERO_RANGE keeps the
# blocks of the local image and of the secondary's S (WRITE_ZEROES with
# NO_HOLE), as ZERO_RANGE does on a raw file of the same file system;
# PUNCH_HOLE may free them on both sides.  Both read zeros everywhere.
. "$(dirname "$0")/lib.sh"
. "$(dirname "$0")/pair.sh"
MiB=$((1 << 20))

make_image "$T/ref.img" 16M cc
ref0=$(blocks "$T/ref.img")
fallocate -z -o $((4 * MiB)) -l $MiB "$T/ref.img" ||
	skip "this file system has no ZERO_RANGE to compare with"
[ "$(blocks "$T/ref.img")" -ge "$ref0" ] ||
	skip "ZERO_RANGE frees blocks on this file system"
fallocate -p -o $((8 * MiB)) -l $MiB "$T/ref.img"
ref_p=$(blocks "$T/ref.img")

SIZE=16M
make_image "$T/p.img" 16M cc
make_image "$T/s.img" 16M cc
pair_configs
start_secondary
start_primary
pctl start
wait_pstate replicating

p0=$(blocks "$T/p.img")
s0=$(blocks "$T/s.img")
fallocate -z -o $((4 * MiB)) -l $MiB "$PMNT/vda" || fail "zero range"
[ "$(pget state)" = replicating ] ||
	fail "the zero degraded the pair: $(pget degraded_reason)"
expect_bytes "$PMNT/vda" $((4 * MiB)) $MiB 00
expect_bytes "$T/p.img" $((4 * MiB)) $MiB 00
expect_bytes "$T/s.img" $((4 * MiB)) $MiB 00
expect_bytes "$T/p.img" $((5 * MiB)) 4096 cc
p1=$(blocks "$T/p.img")
s1=$(blocks "$T/s.img")
[ "$p1" -ge "$p0" ] || fail "ZERO_RANGE freed $((p0 - p1)) blocks of the primary's image"
[ "$s1" -ge "$s0" ] || fail "ZERO_RANGE freed $((s0 - s1)) blocks of the secondary's S"
ok "zero range: zeros on both sides, both keep their blocks"

fallocate -p -o $((8 * MiB)) -l $MiB "$PMNT/vda" || fail "punch hole"
expect_bytes "$T/p.img" $((8 * MiB)) $MiB 00
expect_bytes "$T/s.img" $((8 * MiB)) $MiB 00
if [ "$ref_p" -lt "$ref0" ]; then
	[ "$(blocks "$T/p.img")" -lt "$p1" ] ||
		fail "PUNCH_HOLE freed nothing of the primary's image"
fi
cmp "$T/p.img" "$T/s.img" || fail "the disks differ"
ok "punch hole: zeros on both sides, the local image's blocks freed"
