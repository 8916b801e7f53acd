#!/usr/bin/env bash
# Malformed input never crashes the daemon or touches data: bad magics,
# unknown commands and options, oversized and truncated options, too many
# options, requests over 32 MiB and beyond the end, a WRITE whose payload
# never fully arrives, clients vanishing mid-request, half-open
# handshakes, 1000 quick connects.  Meanwhile another connection keeps
# working, and afterwards the server serves correct data.
. "$(dirname "$0")/lib.sh"
HERE=$(cd "$(dirname "$0")" && pwd)
RAW() { timeout 120 "$PY3" "$HERE/nbd_raw.py" "unix:$T/nbd.sock" vda "$@"; }

make_image "$T/vda.img" 8M 5c
write_config
start_colofs
at_exit stop_colofs
pid=$(colofs_pid)
[ -n "$pid" ] || fail "no colofs pid"

RAW hold $((6 << 20)) "$T/ready" "$T/go" &
hold=$!
at_exit "kill $hold"
wait_for 20 test -e "$T/ready" || fail "the holding client did not start"

for c in bad-request-magic bad-option-magic bad-client-flags \
	unknown-command unknown-options list oversized-option \
	truncated-option too-many-options "export-name 3" "export-name 1" \
	bounds vanish "pipeline $((2 << 20))"; do
	RAW $c || fail "case $c"
	alive "$pid" || fail "colofs died in case $c"
done

# A WRITE cut off mid-payload is not applied, not even in part.
RAW truncated-write $((4 << 20)) $((1 << 20)) 77 || fail "truncated write"
RAW truncated-write $((4 << 20)) 4096 78 || fail "truncated small write"
# Their connections are over once only the holding client's is counted.
wait_for 20 sh -c "grep -qx 'nbd.connections=1' '$MNT/.colo/status'" ||
	fail "nbd.connections=$(status_get nbd.connections), want 1 (the holding client)"
expect_bytes "$T/vda.img" $((4 << 20)) $((1 << 20)) 5c

RAW half-open 40 || fail "half-open handshakes"
RAW storm 1000 || fail "1000 connects"
alive "$pid" || fail "colofs died in the storm"

touch "$T/go"
wait "$hold" || fail "the other connection broke during the abuse"
expect_bytes "$T/vda.img" $((6 << 20)) 4096 4b
expect_bytes "$T/vda.img" $(((6 << 20) + 4096)) 4096 4c

RAW still-serves || fail "not serving after the abuse"
qemu-io -f raw "$(nbd_uri)" -c "read -P 0x5c 0 1M" -c "read -P 0x5c 4M 1M" |
	grep -q 'Pattern verification failed' && fail "data changed"
expect_bytes "$T/vda.img" 0 $((2 << 20)) 5c
[ "$(status_get nbd.unclean_disconnects)" -ge 3 ] ||
	fail "unclean disconnects not counted: $(status_get nbd.unclean_disconnects)"
wait_for 10 sh -c "grep -qx 'nbd.negotiating=0' '$MNT/.colo/status'" ||
	fail "handshakes left over"
wait_for 10 sh -c "grep -qx 'nbd.connections=0' '$MNT/.colo/status'" ||
	fail "connections left over"
ok "robustness"
