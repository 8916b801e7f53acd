#!/usr/bin/env bash
# Incremental re-protect with the old primary's own writes (issue 20): the
# old primary X goes on writing after Y failed over (its mirror fails, the
# granules are marked in its bitmap); X comes back as a secondary with
# that bitmap as its leftover, and Y's protect copies its own granules
# since the failover plus X's leftover (rolling X's back), not the disk.
# Then the mismatch: X killed while replicating cannot vouch for its data,
# so it comes back in a generation of its own and the protect copies the
# whole disk.  The views and, at the end, the images are equal (cmp).
. "$(dirname "$0")/lib.sh"
. "$(dirname "$0")/protect.sh"

pair_written 5
same_views "X primary"

# Y fails over while X runs on: X's next writes cannot reach Y.
hctl y failover
wait_hstate y done
wr x 70 2
wait_hstate x degraded
[ "$(hget x dirty_bytes)" = $((2 * GRANB)) ] ||
	fail "X marked $(hget x dirty_bytes) bytes, want its 2 unreplicated granules"
stop x
wr y 100 3

run x secondary
grep -q "vda: returning primary: generation" "$T/x.log" ||
	fail "X did not come back as the pair's returning primary"
hctl y "protect $XURI"
wait_hstate y replicating
tracked y $((3 * GRANB))
grep -q "vda: the secondary was a primary of this pair: $((2 * GRANB)) more bytes" "$T/y.log" ||
	fail "Y did not take X's 2 leftover granules"
copied y $((5 * GRANB))
ok "Y copied its 3 granules and X's 2 leftover ones ($((5 * GRANB)) of $((32 << 20)) bytes)"
hctl x start
wr y 120 1
hctl y checkpoint
hctl x checkpoint
same_views "Y protected by X, X's own writes rolled back"

# The mismatch: X fails over, protects Y back, and is killed -9 while
# replicating, so that X's bitmap cannot say what it had in flight.
stop y
hctl x failover
wait_hstate x done
wr x 130 1
run y secondary --demote
hctl x "protect $YURI"
wait_hstate x replicating
# Its granule since the failover, and its own leftover of before, kept
# marked since its start (Y's sync rolled it back already: a copy too many).
copied x $((3 * GRANB))
hctl y start
wr x 140 2
hctl x checkpoint
hctl y checkpoint
same_views "X protected by Y"
crash x
hctl y failover
wait_hstate y done
wr y 150 1
# X's bitmap says it died replicating: no generation of the pair, a full
# sync.  (X's state file says done, protected: --demote.)
run x secondary --demote
grep -q "vda: this disk was a primary, but it stopped while replicating" "$T/x.log" ||
	fail "X did not say why it cannot return incrementally"
hctl y "protect $XURI"
wait_hstate y replicating
copied y $((32 << 20))
ok "a returning primary that died replicating gets the whole disk"
hctl x start
hctl y checkpoint
hctl x checkpoint
same_views "Y protected by X after X's crash"
end_equal
