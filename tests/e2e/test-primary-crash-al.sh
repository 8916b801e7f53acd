#!/usr/bin/env bash
# kill -9 of a replicating primary costs a copy of its activity log's
# extents, not of the disk (issue 16, problem 4): a 4 GiB sparse disk, a
# writer in its first 16 MiB, kill -9 of the primary mid-write.  After the
# restart the resync copies at most 256 MiB (read from the status:
# dirty_bytes, sync_total_bytes and the link's bytes), and after a clean
# stop of both the images are equal.  Then the same with
# activity_log_extents = 0: the whole disk, as before the log.
. "$(dirname "$0")/lib.sh"
SIZE=4G TIMEOUT=10s GRAN=64K
. "$(dirname "$0")/pair.sh"
MAX=$((256 << 20))


stop_both() {
	pair_stop "$PRI_PID" "$PMNT"
	pair_stop "$SEC_PID" "$SMNT"
}

truncate -s "$SIZE" "$T/s.img" "$T/p.img"
pair_configs
start_secondary
start_primary
pctl start
wait_pstate replicating 300
ok "first sync of $SIZE done"

# A writer over the first 16 MiB (64 KiB direct writes), killed with the
# primary while it runs.
(
	i=0
	while :; do
		dd if=/dev/urandom of="$PMNT/vda" bs=64K count=1 \
			seek=$(( (i * 37) % 256 )) oflag=direct conv=notrunc \
			status=none || exit 0
		i=$((i + 1))
	done
) 2>/dev/null &
DD=$!
at_exit "kill $DD"
wait_for 60 sh -c "[ \$(sed -n 's/^vda.mirrored_bytes=//p' $PMNT/.colo/status) -ge $((4 << 20)) ]" ||
	fail "the writer made no progress: $(cat "$PMNT/.colo/status")"
[ "$(pget vda.al_active_extents)" != 0 ] ||
	fail "no extent active while writing"
kill9 "$PRI_PID" "$PMNT"
wait "$DD" 2>/dev/null || true

start_primary
dirty=$(pget dirty_bytes)
[ "$dirty" -gt 0 ] || fail "nothing dirty after kill -9 mid-write"
[ "$dirty" -le "$MAX" ] || fail "after kill -9: $dirty bytes dirty, want <= $MAX"
grep -q "activity log names" "$T/p.log" || fail "the log does not say the activity log was applied"
pctl start
wait_pstate replicating 300
total=$(pget sync_total_bytes)
sent=$(pget vda.link_bytes)
[ "$total" -le "$MAX" ] || fail "the resync copied $total bytes, want <= $MAX"
[ "$sent" -le "$MAX" ] || fail "the link sent $sent bytes, want <= $MAX"
ok "resync after kill -9 of a replicating primary: $total bytes copied, $sent sent (disk: $SIZE)"
stop_both
cmp "$T/p.img" "$T/s.img" || fail "the images differ after the resync"
ok "the images are equal"

# Without the log: a full resync.
sed -i '/^\[disk/i activity_log_extents = 0' "$T/p.ini"
start_secondary
start_primary
pctl start
wait_pstate replicating 300
dd if=/dev/urandom of="$PMNT/vda" bs=64K count=1 oflag=direct conv=notrunc status=none
kill9 "$PRI_PID" "$PMNT"
start_primary
[ "$(pget dirty_bytes)" = $((4 << 30)) ] ||
	fail "without an activity log: $(pget dirty_bytes) bytes dirty, want the whole disk"
ok "without an activity log the whole disk is dirty after kill -9"
