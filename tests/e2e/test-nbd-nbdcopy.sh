#!/usr/bin/env bash
# nbdcopy in both directions with its default multi-connection mode
# (the export advertises CAN_MULTI_CONN), compared with cmp.
. "$(dirname "$0")/lib.sh"
command -v nbdcopy >/dev/null || skip "nbdcopy not installed (libnbd-bin)"

make_image "$T/vda.img" 48M
write_config
start_colofs
at_exit stop_colofs
U=$(nbd_uri)

head -c 48M /dev/urandom >"$T/src.img"
# holes too: nbdcopy sends WRITE_ZEROES for them
dd if=/dev/zero of="$T/src.img" bs=1M seek=10 count=5 conv=notrunc status=none
make_image "$T/vda.img.pre" 1M 99
dd if="$T/vda.img.pre" of="$T/vda.img" bs=1M seek=10 conv=notrunc status=none

nbdcopy --flush "$T/src.img" "$U" || fail "nbdcopy file -> nbd"
cmp "$T/src.img" "$T/vda.img" || fail "image differs from the source"
nbdcopy "$U" "$T/back.img" || fail "nbdcopy nbd -> file"
cmp "$T/src.img" "$T/back.img" || fail "copy back differs"
[ "$(status_get nbd.connections_total)" -ge 3 ] ||
	fail "nbdcopy did not open several connections"
[ "$(status_get nbd.unclean_disconnects)" = 0 ] || fail "unclean disconnects"
ok "nbdcopy both ways"
