#!/usr/bin/env bash
# A secondary restarted after kill -9 in running may be behind its primary
# (s_consistent=0, start refused).  Only a primary that presents this
# disk's current generation at NBD GO (a colofs primary about to sync it)
# clears that: any other NBD client (nbdsh here) leaves it, and start is
# still refused; the primary's resync clears it, and start works.
. "$(dirname "$0")/lib.sh"
. "$(dirname "$0")/protect.sh"

pair_written 2
crash y
run y secondary
[ "$(hget y s_consistent)" = 0 ] || fail "Y restarted after running without s_consistent=0"

# A plain NBD client: a full GO, a read, gone.
nbdsh_c "$YURI" 'assert len(h.pread(512, 0)) == 512' ||
	fail "nbdsh could not read Y"
[ "$(hget y s_consistent)" = 0 ] ||
	fail "a plain NBD client set s_consistent=1 on Y"
echo start >"$YMNT/.colo/ctl" 2>/dev/null && fail "start succeeded after a plain client"
ok "a plain NBD client leaves s_consistent=0 and start refused"

# The primary (degraded since Y went away) resyncs: it presents Y's
# generation.
wr x 10 1
wait_hstate x degraded
hctl x resync
wait_hstate x replicating
[ "$(hget y s_consistent)" = 1 ] ||
	fail "the primary's resync did not set s_consistent=1 on Y"
grep -q "presents this disk's generation" "$T/y.log" ||
	fail "Y did not log the primary's generation"
hctl y start
wr x 11 1
hctl x checkpoint
hctl y checkpoint
same_views "after the primary's resync"
ok "the primary that presents the generation clears s_consistent; start works"
