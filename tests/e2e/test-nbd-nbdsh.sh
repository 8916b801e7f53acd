#!/usr/bin/env bash
# nbdsh: read, write, flush, write+FUA, trim, write-zeroes with and
# without NO_HOLE, and a pipelined burst; each checked through the image.
. "$(dirname "$0")/lib.sh"
"$PY3" -c 'import nbd' 2>/dev/null || skip "python3-libnbd not installed"

make_image "$T/vda.img" 16M ee
write_config
start_colofs
at_exit stop_colofs
U=$(nbd_uri)

# READ returns the image.
nbdsh_c "$U" '
assert h.pread(4096, 1 << 20) == b"\xee" * 4096, "read"
h.shutdown()' || fail "read"

nbdsh_c "$U" 'h.pwrite(b"\x11" * 65536, 0); h.shutdown()' || fail "write"
expect_bytes "$T/vda.img" 0 65536 11
nbdsh_c "$U" 'h.pwrite(b"\x22" * 4096, 65536); h.flush(); h.shutdown()' ||
	fail "write+flush"
expect_bytes "$T/vda.img" 65536 4096 22
nbdsh_c "$U" 'h.pwrite(b"\x33" * 4096, 3, nbd.CMD_FLAG_FUA); h.shutdown()' ||
	fail "write with FUA"
expect_bytes "$T/vda.img" 3 4096 33
nbdsh_c "$U" 'h.trim(1 << 20, 2 << 20); h.shutdown()' || fail "trim"
expect_bytes "$T/vda.img" $((2 << 20)) $((1 << 20)) 00
nbdsh_c "$U" 'h.zero(5000, 4 << 20); h.shutdown()' || fail "zero"
expect_bytes "$T/vda.img" $((4 << 20)) 5000 00
nbdsh_c "$U" 'h.zero(7777, 5 << 20, nbd.CMD_FLAG_NO_HOLE | nbd.CMD_FLAG_FUA); h.shutdown()' ||
	fail "zero with NO_HOLE and FUA"
expect_bytes "$T/vda.img" $((5 << 20)) 7777 00
expect_bytes "$T/vda.img" $(((5 << 20) + 7777)) 4096 ee

# A pipelined burst: 64 writes in flight, completions in any order.
nbdsh_c "$U" '
cmds = [h.aio_pwrite(nbd.Buffer.from_bytearray(bytearray([i + 1]) * 65536),
                     (8 << 20) + i * 65536) for i in range(64)]
assert h.aio_in_flight() > 16
while h.aio_in_flight() > 0:
    h.poll(-1)
assert all(h.aio_command_completed(c) for c in cmds)
for i in range(64):
    assert h.pread(65536, (8 << 20) + i * 65536) == bytes([i + 1]) * 65536, i
h.flush()
h.shutdown()' || fail "pipelined writes"
for i in 0 17 63; do
	expect_bytes "$T/vda.img" $(((8 << 20) + i * 65536)) 65536 "$(printf %02x $((i + 1)))"
done

# Errors from the server reach the client.
nbdsh_c "$U" '
h.set_strict_mode(0)
try:
    h.pread(4096, 16 << 20)
    raise SystemExit("read beyond the end succeeded")
except nbd.Error as e:
    assert e.errnum == 22, e
h.shutdown()' || fail "read beyond the end"
[ "$(status_get nbd.unclean_disconnects)" = 0 ] ||
	fail "clean clients counted as unclean: $(status_get nbd.unclean_disconnects)"
ok "nbdsh data path"
