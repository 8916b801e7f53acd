#!/usr/bin/env bash
# NBD_CMD_WRITE_ZEROES with NBD_CMD_FLAG_NO_HOLE: the zeroes must be
# allocated (clients use it to preallocate on thin storage), so S has no
# hole there afterwards (SEEK_HOLE); without the flag colofs may punch one.
. "$(dirname "$0")/lib.sh"

make_image "$T/vda.img" 8M 5a
write_config
start_colofs_fg
at_exit stop_colofs
MiB=$((1 << 20))
# first_hole OFFSET: SEEK_HOLE on S from OFFSET.
first_hole() {
	"$PY3" -c 'import os, sys
fd = os.open(sys.argv[1], os.O_RDONLY)
print(os.lseek(fd, int(sys.argv[2]), os.SEEK_HOLE))' "$T/vda.img" "$1"
}

nbdsh_c "$(nbd_uri)" "
h.zero($MiB, 1 * $MiB, nbd.CMD_FLAG_NO_HOLE)
h.flush()
assert h.pread($MiB, 1 * $MiB) == bytes($MiB)
h.shutdown()"
hole=$(first_hole $MiB)
[ "$hole" -ge $((2 * MiB)) ] ||
	fail "WRITE_ZEROES with NO_HOLE left a hole in S at $hole"
expect_bytes "$T/vda.img" $MiB $MiB 00
expect_bytes "$T/vda.img" $((2 * MiB)) $MiB 5a
ok "WRITE_ZEROES with NO_HOLE: S reads zeros and has no hole there"

nbdsh_c "$(nbd_uri)" "
h.zero($MiB, 4 * $MiB)
h.flush()
assert h.pread($MiB, 4 * $MiB) == bytes($MiB)
h.shutdown()"
expect_bytes "$T/vda.img" $((4 * MiB)) $MiB 00
hole=$(first_hole $((4 * MiB)))
[ "$hole" -lt $((5 * MiB)) ] ||
	echo "note: this file system punched no hole without NO_HOLE either"
ok "WRITE_ZEROES without NO_HOLE: S reads zeros"
