#!/usr/bin/env bash
# The primary's zero fallback: a secondary without WRITE_ZEROES gets
# writes of zeros, split at its maximum block size (1 MiB here), not one
# write of up to 1 GiB that it refuses.  A large discard on the primary
# then keeps the pair replicating and zeroes the secondary's range.
. "$(dirname "$0")/lib.sh"
HERE=$(cd "$(dirname "$0")" && pwd)
PMNT=$T/pmnt
mkdir -p "$PMNT" "$T/state"
at_exit "fusermount3 -u $PMNT || umount -l $PMNT"
MiB=$((1 << 20))

head -c 32M /dev/urandom >"$T/p.img"
truncate -s 32M "$T/s.img"
"$PY3" "$HERE/nbd_nozero_server.py" "$T/s.sock" "$T/s.img" vda $MiB \
	"$T/stats" 2>"$T/server.log" &
SPID=$!
at_exit "kill $SPID"
wait_for 10 test -S "$T/s.sock" || fail "the NBD server did not start"
start_primary_fg 20s
stat_get() { sed -n "s/^$1=//p" "$T/stats"; }
echo start >"$PMNT/.colo/ctl"
wait_for 120 grep -qx "state=replicating" "$PMNT/.colo/status" ||
	fail "not replicating: $(pget state) $(cat "$PMNT/.colo/error")"
cmp "$T/p.img" "$T/s.img" || fail "the first sync left the disks different"

# A discard of 24 MiB: zeros on both sides, in requests of at most 1 MiB.
fallocate -p -o $((4 * MiB)) -l $((24 * MiB)) "$PMNT/vda" ||
	fail "fallocate on the primary failed"
[ "$(pget state)" = replicating ] ||
	fail "the discard degraded the pair: $(pget degraded_reason)"
expect_bytes "$T/s.img" $((4 * MiB)) $((24 * MiB)) 00
cmp "$T/p.img" "$T/s.img" || fail "the disks differ after the discard"
[ "$(stat_get too_long)" = 0 ] ||
	fail "$(stat_get too_long) requests above the server's 1 MiB maximum (longest $(stat_get max_request))"
[ "$(stat_get zero_requests)" = 0 ] || fail "WRITE_ZEROES sent though not advertised"
ok "a 24 MiB discard went as writes of zeros of at most $(stat_get max_request) bytes"
