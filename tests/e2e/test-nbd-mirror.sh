#!/usr/bin/env bash
# The COLO resync path: QEMU's drive-mirror (blockdev-mirror sync=full in
# qemu-storage-daemon) onto the export.  It zeroes the whole target with
# WRITE_ZEROES (requests over 32 MiB), then writes the data out of order;
# afterwards the image equals the source.
. "$(dirname "$0")/lib.sh"
command -v qemu-storage-daemon >/dev/null ||
	skip "qemu-storage-daemon not installed (qemu-system-common)"
HERE=$(cd "$(dirname "$0")" && pwd)

make_image "$T/vda.img" 96M 5e
write_config
start_colofs
at_exit stop_colofs

# The source: data, holes and zeros where the target holds 0x5e.
truncate -s 96M "$T/src.img"
head -c 8M /dev/urandom | dd of="$T/src.img" bs=1M seek=3 conv=notrunc status=none
head -c 20M /dev/urandom | dd of="$T/src.img" bs=1M seek=40 conv=notrunc status=none
pattern 1M 01 | dd of="$T/src.img" bs=1M seek=95 conv=notrunc status=none

qemu-storage-daemon \
	--blockdev driver=file,filename="$T/src.img",node-name=srcf \
	--blockdev driver=raw,file=srcf,node-name=src \
	--chardev socket,path="$T/qmp.sock",server=on,wait=off,id=qmp0 \
	--monitor chardev=qmp0 >"$T/qsd.log" 2>&1 &
qsd=$!
at_exit "kill -9 $qsd"
timeout 180 "$PY3" "$HERE/nbd_mirror.py" "$T/qmp.sock" "$T/nbd.sock" vda ||
	{ cat "$T/qsd.log"; fail "mirror"; }
wait "$qsd" || true

cmp "$T/src.img" "$T/vda.img" || fail "the image differs from the mirror source"
cat "$MNT/.colo/status" | grep "^nbd\."
[ "$(status_get nbd.zeroes)" -ge 1 ] || fail "no WRITE_ZEROES seen"
[ "$(status_get nbd.writes)" -ge 1 ] || fail "no WRITE seen"
[ "$(status_get nbd.request_errors)" = 0 ] || fail "error replies sent"
[ "$(status_get nbd.unclean_disconnects)" = 0 ] || fail "unclean disconnect"
ok "drive-mirror resync onto the export"
