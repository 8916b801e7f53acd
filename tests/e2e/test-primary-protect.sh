#!/usr/bin/env bash
# The whole cycle, in place (issue 20): host X primary -> failover to Y ->
# Y protects with X as secondary ("protect URI" on Y's running mount, no
# unmount) -> failover back to X -> X protects with Y.  Data is written at
# every step, each protect copies only the granules written since its
# failover (read from the status), a file held open across the switch keeps
# working, a restart of a protected side comes back as a primary, and at the
# end the two images are equal byte for byte (cmp).  The returning old
# primary presents the generation of the pair it left, so each protect's
# sync copies those granules only (sync_total_bytes), not the disk.
. "$(dirname "$0")/lib.sh"
. "$(dirname "$0")/protect.sh"

# 1. X primary, Y secondary: the first (full) sync, then writes.
pair_up
# Protect is for done: a running secondary refuses it and stays one.
echo "protect $XURI" >"$YMNT/.colo/ctl" 2>/dev/null &&
	fail "protect succeeded on a running secondary"
grep -q "protect is for done" "$YMNT/.colo/error" ||
	fail "protect refused without saying why: $(cat "$YMNT/.colo/error")"
[ "$(hget y state)" = running ] || fail "a refused protect changed Y's state"
wr x 3 5
hctl x checkpoint
hctl y checkpoint
same_views "X primary"

# Since that checkpoint: Y's VM writes granule 50 (its active buffer) and
# X writes granule 60 (Y's hidden buffer keeps the old data).  The
# failover commits both into Y's S: both differ from X now, both count.
wr y 50 1
wr x 60 1

# 2. X goes away cleanly; failover to Y; Y's VM writes 3 granules, one of
# them twice.
stop x
hctl y failover
wait_hstate y done
wr y 100 2
wr y 100 1

# 3. X comes back as a secondary; Y protects in place.  A file opened
# before (fd 7; after X started, which must not inherit it) stays open
# across the protect and writes before and after it.
run x secondary
exec 7<>"$YMNT/vda"
dd if=/dev/urandom bs=$GRANB count=1 status=none | dd of=/dev/fd/7 bs=$GRANB \
	seek=200 conv=notrunc,fsync status=none || fail "the fd's write in done"
hctl y "protect $XURI"
[ "$(hget y mode)" = primary ] || fail "Y's status does not say mode=primary"
wait_hstate y replicating
tracked y $((5 * GRANB))
ok "Y tracked exactly the 5 granules written since the failover (2 by the failover commit)"
# X left the pair cleanly: it comes back in that pair's generation with
# nothing of its own, so Y copies those 5 granules, not the disk.
grep -q "vda: returning primary: generation" "$T/x.log" ||
	fail "X did not come back as the pair's returning primary"
copied y $((5 * GRANB))
ok "Y's protect copied only the 5 granules ($((5 * GRANB)) of $((32 << 20)) bytes)"
hctl x start
# The fd opened in done writes through the primary now.
dd if=/dev/urandom bs=$GRANB count=1 status=none | dd of=/dev/fd/7 bs=$GRANB \
	seek=300 conv=notrunc,fsync status=none || fail "the old fd's write"
exec 7>&-
wr y 400 4
hctl y checkpoint
hctl x checkpoint
same_views "Y protected by X"

# A restart of the protected side comes back as a primary (no --demote).
stop y
run y secondary
[ "$(hget y mode)" = primary ] || fail "Y did not restart as a primary"
hctl y start
wait_hstate y replicating
[ "$(hget y sync_total_bytes)" = 0 ] ||
	fail "Y's restart resynced $(hget y sync_total_bytes) bytes, want 0"
wr y 450 1
hctl y checkpoint
hctl x checkpoint
same_views "Y restarted as a primary"

# 4. Failover back to X; X's VM writes 2 granules.
stop y
hctl x failover
wait_hstate x done
wr x 460 2

# 5. Y comes back as a secondary (its state file says primary: --demote);
# X protects in place.
run y secondary --demote
[ "$(hget y mode)" = secondary ] || fail "Y --demote is not a secondary"
# This one through colofsctl.
"$(dirname "$COLOFS_BIN")/colofsctl" -m "$XMNT" protect "$YURI" ||
	fail "colofsctl protect: $(cat "$XMNT/.colo/error")"
wait_hstate x replicating
tracked x $((2 * GRANB))
ok "X tracked exactly the 2 granules written since its failover"
copied x $((2 * GRANB))
ok "X's protect copied only those 2 granules"
hctl y start
wr x 480 3
hctl x checkpoint
hctl y checkpoint
same_views "X protected by Y"

end_equal
