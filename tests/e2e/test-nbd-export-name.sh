#!/usr/bin/env bash
# Two disks, one with "export =": each is its own export under its name,
# listed by NBD_OPT_LIST, and writes land in the right image.
. "$(dirname "$0")/lib.sh"
command -v nbdinfo >/dev/null || skip "nbdinfo not installed (libnbd-bin)"

make_image "$T/vda.img" 4M
make_image "$T/vdb.img" 2M
write_config
cat >>"$T/colofs.ini" <<EOC

[disk "vdb"]
image = $T/vdb.img
export = second
EOC
start_colofs
at_exit stop_colofs

list=$(nbdinfo --list "nbd+unix://?socket=$T/nbd.sock") || fail "--list"
grep -qx 'export="vda":' <<<"$list" || fail "no vda in --list"
grep -qx 'export="second":' <<<"$list" || fail "no 'second' in --list"
[ "$(nbdinfo --size "$(nbd_uri second)")" = 2097152 ] || fail "size of second"
if nbdinfo --size "$(nbd_uri vdb)" 2>/dev/null; then
	fail "vdb served under its disk name despite export = second"
fi
nbdsh_c "$(nbd_uri second)" 'h.pwrite(b"\x3c" * 4096, 8192); h.flush(); h.shutdown()' ||
	fail "write to second"
expect_bytes "$T/vdb.img" 8192 4096 3c
expect_bytes "$T/vda.img" 8192 4096 00
ok "exports by name"
