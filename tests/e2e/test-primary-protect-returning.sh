#!/usr/bin/env bash
# A returning primary that is promoted itself instead of being synced: X,
# a primary whose secondary Y died, writes on alone (2 granules Y never
# got), stops, comes back as a secondary in the pair's generation with
# those 2 as its leftover, is started and failed over without any primary
# in between, and protects Y, which still is in that generation.  The
# protect must copy the leftover as well as the granules written since
# the failover: they are kept marked from the start on.  cmp at the end.
. "$(dirname "$0")/lib.sh"
. "$(dirname "$0")/protect.sh"

pair_written 5
same_views "X primary"

# Y dies (its generation stays: no promotion); X writes on, degraded.
crash y
wr x 70 2
wait_hstate x degraded
stop x

run x secondary
grep -q "vda: leftover: $((2 * GRANB)) bytes" "$T/x.log" ||
	fail "X did not come back with its 2 leftover granules"
hctl x start
hctl x failover
wait_hstate x done
wr x 100 1

run y secondary
hctl x "protect $YURI"
wait_hstate x replicating
copied x $((3 * GRANB))
ok "X's protect copied its leftover and the granule since its failover"
hctl y "start force"
hctl x checkpoint
hctl y checkpoint
same_views "X protected by Y"
end_equal
