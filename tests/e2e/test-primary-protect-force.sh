#!/usr/bin/env bash
# Protect in place when the tracking cannot know: a secondary killed while
# running comes back with S maybe behind the primary (s_consistent=0);
# after "start force" and a failover, protect copies the whole disk, not
# just the granules its VM wrote, and the images end equal (cmp).
. "$(dirname "$0")/lib.sh"
. "$(dirname "$0")/protect.sh"

pair_written 2

crash y
run y secondary
[ "$(hget y s_consistent)" = 0 ] ||
	fail "Y restarted after running without s_consistent=0"
hctl y "start force"
stop x
hctl y failover
wait_hstate y done
wr y 10 1

run x secondary
hctl y "protect $XURI"
wait_hstate y replicating
[ "$(hget y sync_total_bytes)" = $((32 * 1024 * 1024)) ] ||
	fail "after start force, protect copied $(hget y sync_total_bytes) bytes, want the whole disk"
ok "after start force, protect copied the whole disk"
hctl x start
wr y 20 1
hctl y checkpoint
hctl x checkpoint
same_views "Y protected by X"
end_equal
