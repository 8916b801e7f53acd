#!/usr/bin/env bash
# A raw disk is never probed: the guest writes byte 0 of its own disk, and
# a qcow2 header there must not turn the disk into a qcow2 image (with its
# metadata read by libqcow) at the next start.  Without a format line the
# disk is raw; with format = raw a qcow2 header does not stop the start.
. "$(dirname "$0")/lib.sh"

size=$((4 << 20))
make_image "$T/vda.img" "$size"
qemu-img create -q -f qcow2 "$T/hdr.qcow2" 1G
# The guest's bytes: a whole qcow2 image at the start of its raw disk.
dd if="$T/hdr.qcow2" of="$T/vda.img" conv=notrunc status=none
mkdir -p "$T/buffers"
EXTRA_CONFIG="buffer_dir = $T/buffers"

check_raw() {
	local got
	got=$(stat -c %s "$MNT/vda")
	[ "$got" = "$size" ] || fail "$1: the disk is $got bytes, want $size (raw)"
	cmp -s -n 196624 "$MNT/vda" "$T/hdr.qcow2" ||
		fail "$1: the disk does not show the guest's bytes at 0"
	[ -z "$(ls -A "$T/buffers")" ] ||
		fail "$1: an overlay was made: $(ls "$T/buffers")"
}

write_config
start_colofs
check_raw "no format line"
stop_colofs
ok "without a format line a raw image with a qcow2 header stays raw"

write_config
printf 'format = raw\n' >>"$T/colofs.ini"
start_colofs
check_raw "format = raw"
stop_colofs
ok "format = raw starts whatever the guest wrote at byte 0"

write_config
"$COLOFS_BIN" -c "$T/colofs.ini" --dump-config | grep -qx "format = raw" ||
	fail "the default format is not raw"
ok "the default format is raw"
