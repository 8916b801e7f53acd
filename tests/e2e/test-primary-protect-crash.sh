#!/usr/bin/env bash
# Protect in place across restarts: the dirty tracking of a done secondary
# keeps its marks in memory and saves them at a clean stop, so a restart in
# done still protects with only the granules written since the failover;
# after kill -9 in done the marks are lost (the bitmap says so: it was set
# unclean, durably, before the first marked write), and the protect copies
# the whole disk; "protect full" copies the whole disk while the VM writes
# (a checksummed workload, found whole on the new secondary).  The images
# are equal byte for byte at the end (cmp).
. "$(dirname "$0")/lib.sh"
. "$(dirname "$0")/protect.sh"

pair_written 5
same_views "X primary"

# Failover to Y; its VM writes 2 granules; a clean stop; a restart comes
# back in done and its VM writes 1 more.
stop x
hctl y failover
wait_hstate y done
wr y 10 2
stop y
run y secondary
[ "$(hget y state)" = done ] || fail "Y did not come back in done"
wr y 20 1

run x secondary
hctl y "protect $XURI"
wait_hstate y replicating
tracked y $((3 * GRANB))
ok "after a clean restart in done, Y still tracked exactly the 3 granules"
copied y $((3 * GRANB))
ok "and its protect copied only those"
hctl x start
wr y 30 2
hctl y checkpoint
hctl x checkpoint
same_views "Y protected by X after a crash"

# Back to X, then "protect full": the whole disk, whatever the bitmap.
stop y
hctl x failover
wait_hstate x done
wr x 40 1
run y secondary --demote
# X's VM keeps writing (a checksummed workload) across the switch.
"$PY3" "$(dirname "$0")/pattern_writes.py" write "$XMNT/vda" 11 400 \
	>"$T/manifest" 2>"$T/writer.err" &
WRITER=$!
hctl x "protect full $YURI"
wait "$WRITER" || fail "a VM write failed across the protect: $(cat "$T/writer.err")"
wait_hstate x replicating
[ "$(hget x sync_total_bytes)" = $((32 * 1024 * 1024)) ] ||
	fail "protect full copied $(hget x sync_total_bytes) bytes, want the whole disk"
ok "protect full copied the whole disk"
hctl y start
wr x 50 1
hctl x checkpoint
hctl y checkpoint
same_views "X protected by Y (full)"
"$PY3" "$(dirname "$0")/pattern_writes.py" check "$YMNT/vda" "$T/manifest" \
	"$((50 * GRANB)):$GRANB" || fail "the workload's blocks on Y"
ok "the workload written across the protect is on Y"

# Y fails over again; kill -9 in done after its VM wrote: the marks in
# memory are gone, the restart finds the bitmap unclean, and the protect
# copies the whole disk.
stop x
hctl y failover
wait_hstate y done
wr y 60 1
crash y
run y secondary
[ "$(hget y state)" = done ] || fail "Y did not come back in done"
grep -q "stopped without saving its marks, so the whole disk is dirty" "$T/y.log" ||
	fail "Y's restart did not find its bitmap unclean"
wr y 61 1
run x secondary --demote
hctl y "protect $XURI"
wait_hstate y replicating
copied y $((32 * 1024 * 1024))
ok "after kill -9 in done, protect copied the whole disk"
hctl x start
hctl y checkpoint
hctl x checkpoint
same_views "Y protected by X after kill -9 in done"
end_equal
