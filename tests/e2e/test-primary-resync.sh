#!/usr/bin/env bash
# The primary when the secondary goes away, and the incremental resync:
#   - kill -9 of the secondary in the middle of a dd: dd sees no error,
#     the primary degrades, its next checkpoint fails and says why; the
#     secondary restarts (in none), resync copies the dirty granules only
#     (what the link sent and what the secondary received equal the
#     dirty bytes, far below the disk's size), then the disks are equal;
#   - a secondary that stops answering (SIGSTOP): the write completes after
#     secondary_timeout, the primary degrades ("no reply");
#   - kill -9 of the primary while degraded: after a restart the bitmap
#     holds exactly the granules written, and the resync is incremental.
. "$(dirname "$0")/lib.sh"
SIZE=64M TIMEOUT=1s GRAN=64K
. "$(dirname "$0")/pair.sh"

make_image "$T/s.img" "$SIZE"
head -c "$SIZE" /dev/urandom >"$T/p.img"
pair_configs
start_secondary
start_primary
pctl start
wait_pstate replicating
sctl start

# 1. kill -9 of the secondary mid-workload: a writer that goes on until
# told to stop (64 KiB direct writes over the first 16 MiB, round and
# round); it fails if any write fails.
pair_writer
written() { sed -n 's/^vda.write_bytes=//p' "$PMNT/.colo/status"; }
wait_for 20 sh -c "[ \$(sed -n 's/^vda.write_bytes=//p' $PMNT/.colo/status) -ge 1048576 ]" ||
	fail "the writer made no progress"
kill9 "$SEC_PID" "$SMNT"
w=$(written)
wait_for 20 sh -c "[ \$(sed -n 's/^vda.write_bytes=//p' $PMNT/.colo/status) -ge $((w + 1048576)) ]" ||
	fail "the writer stalled after the secondary died"
touch "$T/stop"
wait "$DD" || fail "a write on the primary failed when the secondary died: $(cat "$T/dd.err")"
ok "the writer saw no error when the secondary was killed"
wait_pstate degraded
[ -n "$(pget degraded_reason)" ] || fail "no degraded_reason"
pctl checkpoint 2>/dev/null && fail "checkpoint succeeded while degraded"
grep -q "checkpoint: degraded: vda: secondary" "$PMNT/.colo/error" ||
	fail "the checkpoint's error says nothing: $(cat "$PMNT/.colo/error")"
ok "degraded; the checkpoint fails with: $(cat "$PMNT/.colo/error")"
dd if=/dev/urandom of="$PMNT/vda" bs=64K count=3 seek=500 conv=notrunc status=none
dirty=$(pget dirty_bytes)
# The writer's 16 MiB (at most) and the 3 granules at 500.
[ "$dirty" -gt 0 ] && [ "$dirty" -le $(((16 << 20) + 3 * 65536)) ] ||
	fail "dirty_bytes $dirty, want 1 to 16 MiB + 192 KiB"

start_secondary
[ "$(sget state)" = none ] || fail "the secondary did not restart in none"
pctl resync
wait_pstate replicating
sent=$(pget vda.link_bytes)
got=$(sget vda.primary_write_bytes)
[ "$sent" = "$dirty" ] || fail "resync sent $sent bytes, $dirty were dirty"
[ "$got" = "$dirty" ] || fail "the secondary received $got bytes, $dirty were dirty"
[ "$(pget dirty_bytes)" = 0 ] || fail "still dirty after the resync"
same_disks "incremental resync of $dirty bytes (disk: $((64 << 20)))"
pctl checkpoint || fail "checkpoint after the resync: $(cat "$PMNT/.colo/error")"

# 2. A secondary that stops answering: degraded after the timeout.
kill -STOP "$SEC_PID"
at_exit "kill -CONT $SEC_PID"
start=$(date +%s%N)
dd if=/dev/urandom of="$PMNT/vda" bs=64K count=1 seek=100 conv=notrunc \
	status=none || fail "a write failed while the secondary hung"
ms=$(( ($(date +%s%N) - start) / 1000000 ))
wait_pstate degraded
grep -q "no reply in 1000 ms" <<<"$(pget degraded_reason)" ||
	fail "degraded_reason: $(pget degraded_reason)"
ok "a hung secondary: the write returned after $ms ms, degraded: $(pget degraded_reason)"
kill -CONT "$SEC_PID"

# 3. kill -9 of the primary while degraded: the bitmap survives.
dd if=/dev/urandom of="$PMNT/vda" bs=128K count=1 seek=300 conv=notrunc status=none
dd if=/dev/urandom of="$PMNT/vda" bs=128K count=1 seek=10 conv=notrunc status=none
dd if=/dev/urandom of="$PMNT/vda" bs=4K count=1 seek=4000 conv=notrunc status=none
# 64K (the hung write) + 2 x 128K + one granule for the 4K write.
want=$(( 64 * 1024 + 2 * 128 * 1024 + 64 * 1024 ))
[ "$(pget dirty_bytes)" = "$want" ] ||
	fail "dirty_bytes $(pget dirty_bytes), want $want"
kill9 "$PRI_PID" "$PMNT"
kill9 "$SEC_PID" "$SMNT"
start_secondary
start_primary
[ "$(pget state)" = none ] || fail "the primary did not restart in none"
[ "$(pget dirty_bytes)" = "$want" ] ||
	fail "after kill -9, dirty_bytes $(pget dirty_bytes), want $want"
ok "the bitmap survived kill -9: $want dirty bytes"
pctl start
wait_pstate replicating
[ "$(pget vda.link_bytes)" = "$want" ] ||
	fail "the resync after a restart sent $(pget vda.link_bytes), want $want"
[ "$(sget vda.primary_write_bytes)" = "$want" ] ||
	fail "the secondary received $(sget vda.primary_write_bytes), want $want"
same_disks "incremental resync after kill -9 of the primary"

# 4. The secondary dies while nothing is written: the primary degrades by
# itself (its connection closed), and the bitmaps lose their live flag, so
# a kill -9 of the primary now costs no full resync.
kill9 "$SEC_PID" "$SMNT"
wait_pstate degraded 10
# It tried to reconnect for secondary_timeout (doc/primary.md, *Reconnect*).
grep -q "not resumed: no reconnect in 1000 ms" <<<"$(pget degraded_reason)" ||
	fail "degraded_reason: $(pget degraded_reason)"
ok "an idle secondary's death degrades the primary: $(pget degraded_reason)"
kill9 "$PRI_PID" "$PMNT"
start_primary
[ "$(pget dirty_bytes)" = 0 ] ||
	fail "after a kill -9 while degraded (idle) the bitmap says $(pget dirty_bytes) dirty bytes, want 0"
ok "no write was lost track of: nothing dirty after the restart"
