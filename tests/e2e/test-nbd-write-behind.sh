#!/usr/bin/env bash
# Write-behind (write_behind, default 8M): the primary's writes into a
# running secondary reach S's disk within seconds, not when the kernel's
# dirty_expire_centisecs (30 s) runs out, so that a failover's final
# fdatasync of S has little left to write.  S's dirty and under-writeback
# pages are read with cachestat(2) after an nbdcopy without --flush.
. "$(dirname "$0")/lib.sh"
command -v nbdcopy >/dev/null || skip "nbdcopy not installed (libnbd-bin)"
expire=$(cat /proc/sys/vm/dirty_expire_centisecs)
[ "$expire" -ge 2000 ] ||
	skip "dirty_expire_centisecs is $expire: the kernel writes back early anyway"
CS=$(dirname "$0")/cachestat.py

# unsettled FILE: S's pages still to reach the disk (dirty + writeback).
unsettled() {
	local dirty wb
	read -r _ dirty wb < <("$PY3" "$CS" "$1") || return 1
	echo $((dirty + wb))
}
settled() { [ "$(unsettled "$1")" -le 256 ]; }	# 1 MiB of 4 KiB pages

make_image "$T/vda.img" 64M
sync "$T/vda.img"
rc=0
"$PY3" "$CS" "$T/vda.img" >"$T/cs.out" || rc=$?
[ "$rc" = 77 ] && skip "$(cat "$T/cs.out")"
[ "$rc" = 0 ] || fail "cachestat: $(cat "$T/cs.out")"
head -c 64M /dev/urandom >"$T/src.img"

write_config
start_colofs
at_exit stop_colofs
ctl start
wait_state running
# Another writer syncing all along: under that I/O pressure the kernel
# passes over some of the pages a write-behind starts (WB_SYNC_NONE), and
# only the sweep after the burst gets them out before the expiry.
sh -c "while :; do dd if=/dev/zero of=$T/load bs=1M count=128 conv=fsync status=none; done" &
LOAD=$!
at_exit "kill $LOAD; pkill -P $LOAD"
nbdcopy "$T/src.img" "$(nbd_uri)" || fail "nbdcopy"
# The primary's writes went into S's page cache (before the pages are
# saved or written back, a check that the test sees them at all).
echo "after nbdcopy: $(unsettled "$T/vda.img") pages unsettled"
# 10 s: a third of the kernel's own 30 s expiry.
wait_for 10 settled "$T/vda.img" ||
	fail "S still has $(unsettled "$T/vda.img") dirty or writeback pages 10 s after the primary's writes"
ok "S written back $(unsettled "$T/vda.img") pages left"
