#!/usr/bin/env bash
# QEMU's NBD client (qemu-io, qemu-img) over nbd+unix:// and over TCP
# (nbd://127.0.0.1:PORT): every command, FUA, a 40 MiB write split at
# 32 MiB, info, convert and compare.
. "$(dirname "$0")/lib.sh"
command -v qemu-io >/dev/null || skip "qemu-io not installed (qemu-utils)"
command -v qemu-img >/dev/null || skip "qemu-img not installed (qemu-utils)"

PORT=$("$PY3" -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
make_image "$T/vda.img" 64M
make_image "$T/vdb.img" 64M
write_config
cat >>"$T/colofs.ini" <<EOC

[disk "vdb"]
image = $T/vdb.img
EOC
sed -i "s|^listen = .*|listen = 127.0.0.1:$PORT|" "$T/colofs.ini"
start_colofs
at_exit stop_colofs
[ "$(status_get nbd.listen)" = "127.0.0.1:$PORT" ] ||
	fail "nbd.listen=$(status_get nbd.listen), want 127.0.0.1:$PORT"

# expect_big FILE OFFSET LENGTH BYTE: as expect_bytes, fast for big ranges.
expect_big() {
	cmp <(dd if="$1" bs=1M iflag=skip_bytes,count_bytes skip="$2" count="$3" \
		status=none) <(pattern "$3" "$4") || fail "$1 [$2,+$3) is not all $4"
}

# Each client talks to its own disk.
TCP=nbd://127.0.0.1:$PORT/vda

run_io() {
	qemu-io -t writeback -f raw "$1" \
		-c 'write -P 0xab 0 64k' -c 'read -P 0xab 0 64k' \
		-c 'flush' \
		-c 'write -z 64k 64k' -c 'read -P 0 64k 64k' \
		-c 'write -z -u 128k 64k' -c 'read -P 0 128k 64k' \
		-c 'discard 0 64k' -c 'read -P 0 0 64k' \
		-c 'write -f -P 1 0 4k' -c 'read -P 1 0 4k' \
		-c 'write -z -f 4k 4k' -c 'read -P 0 4k 4k' \
		-c 'write -P 0x5a 1M 40M' -c 'read -P 0x5a 1M 40M' \
		-c 'write -P 0x17 1 3' -c 'read -P 0x17 1 3' >"$T/qemu-io.log" 2>&1 ||
		{ cat "$T/qemu-io.log"; fail "qemu-io on $1"; }
	grep -q 'Pattern verification failed' "$T/qemu-io.log" &&
		fail "qemu-io pattern mismatch on $1"
	return 0
}

run_io "$TCP"
expect_bytes "$T/vda.img" 0 1 01
expect_bytes "$T/vda.img" 1 3 17
expect_bytes "$T/vda.img" 4096 $((60 << 10)) 00
expect_big "$T/vda.img" $((1 << 20)) $((40 << 20)) 5a
# the same through the unix socket... of a second instance? No: the
# listener has one address, so the unix path is covered by a restart.
stop_colofs
sed -i "s|^listen = .*|listen = unix:$T/nbd.sock|" "$T/colofs.ini"
start_colofs
run_io "nbd+unix:///vdb?socket=$T/nbd.sock"
expect_big "$T/vdb.img" $((1 << 20)) $((40 << 20)) 5a
expect_bytes "$T/vdb.img" 1 3 17

UNIX=nbd+unix:///vda?socket=$T/nbd.sock
qemu-img info --output=json "$UNIX" | grep -q '"virtual-size": 67108864' ||
	fail "qemu-img info"
qemu-img convert -f raw -O raw "$UNIX" "$T/out.img" || fail "qemu-img convert"
cmp "$T/vda.img" "$T/out.img" || fail "convert differs from the image"
qemu-img compare -U -f raw -F raw "$T/vda.img" "$UNIX" || fail "qemu-img compare"
head -c 64M /dev/urandom >"$T/rnd.img"
qemu-img convert -n -f raw -O raw "$T/rnd.img" "$UNIX" || fail "convert to nbd"
cmp "$T/rnd.img" "$T/vda.img" || fail "convert into nbd differs"
if qemu-io -f raw "nbd+unix:///nosuch?socket=$T/nbd.sock" -c 'read 0 512' 2>/dev/null; then
	fail "qemu-io opened an unknown export"
fi
[ "$(status_get nbd.unclean_disconnects)" = 0 ] ||
	fail "qemu clients counted as unclean"
ok "qemu-io and qemu-img over unix and tcp"
