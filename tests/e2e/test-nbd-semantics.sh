#!/usr/bin/env bash
# What an NBD write means in each replica state:
#   before start: straight to the image, and the view shows it;
#   after start:  the image changes, the view keeps the old data until
#                 "checkpoint", then shows the new;
#   failover:     a write on an open connection gets NBD_ESHUTDOWN and the
#                 connection closes; new connections are refused; the image
#                 keeps no trace of the refused write.
. "$(dirname "$0")/lib.sh"
"$PY3" -c 'import nbd' 2>/dev/null || skip "python3-libnbd not installed"
HERE=$(cd "$(dirname "$0")" && pwd)
RAW() { "$PY3" "$HERE/nbd_raw.py" "unix:$T/nbd.sock" vda "$@"; }

make_image "$T/vda.img" 4M
write_config
start_colofs
at_exit stop_colofs

nbd_write 0 65536 a1 || fail "write before start"
expect_bytes "$T/vda.img" 0 65536 a1
expect_bytes "$MNT/vda" 0 65536 a1

ctl start
wait_state running
nbd_write 0 65536 b2 || fail "write after start"
expect_bytes "$T/vda.img" 0 65536 b2
expect_bytes "$MNT/vda" 0 65536 a1
# NBD reads return S, not the view.
nbdsh_c "$(nbd_uri)" 'assert h.pread(512, 0) == b"\xb2" * 512; h.shutdown()' ||
	fail "NBD read does not return the secondary disk"
ctl checkpoint
expect_bytes "$MNT/vda" 0 65536 b2

nbd_write 65536 4096 c3 || fail "write after checkpoint"
expect_bytes "$MNT/vda" 65536 4096 00
expect_bytes "$T/vda.img" 65536 4096 c3

# A connection opened before failover: its next write is refused.
RAW write-error 108 "echo failover > '$MNT/.colo/ctl'" || fail "write after failover"
expect_bytes "$T/vda.img" 0 512 b2
RAW refused || fail "new connection after failover"
[ "$(status_get nbd.refused)" -ge 1 ] || fail "nbd.refused not counted"
if nbd_write 0 512 dd 2>/dev/null; then
	fail "nbdsh wrote after failover"
fi
expect_bytes "$T/vda.img" 0 512 b2
[ "$(status_get nbd.unclean_disconnects)" = 0 ] ||
	fail "failover closes counted as unclean"
ok "NBD writes per replica state"
