#!/usr/bin/env bash
# Split brain (issue 16, problem 3), with two colofs on this machine: the
# secondary fails over and its VM writes, the old primary writes too (its
# granules tracked), the old secondary comes back with --demote.  The
# primary must see from the generations (NBD_INFO_DESCRIPTION) that the
# secondary moved on after the generation its bitmap counts against, and
# refuse resync and start with EIO, split_brain=1 and a .colo/error that
# says who wrote since when; nothing reaches the secondary.  Then each way
# out: "resync full" on the primary, or --demote --discard-local on the
# secondary (a full sync); both leave the disks equal.  Last, a restart of
# a secondary that did not fail over keeps its generation: incremental.
. "$(dirname "$0")/lib.sh"
SIZE=16M TIMEOUT=2s GRAN=64K
. "$(dirname "$0")/pair.sh"


# restart_secondary [ARGS...]: a clean stop, then -f again with ARGS.
restart_secondary() {
	pair_stop "$SEC_PID" "$SMNT"
	start_secondary "$@"
}

restart_primary() {
	pair_stop "$PRI_PID" "$PMNT"
	start_primary
}

# split: a replicating pair, then the sequence of the issue.
split() {
	local what=$1
	make_image "$T/s.img" "$SIZE"
	head -c "$SIZE" /dev/urandom >"$T/p.img"
	rm -rf "$T/state" "$T/sstate"
	mkdir -p "$T/state"
	pair_configs
	start_secondary
	start_primary
	pctl start
	wait_pstate replicating
	[ "$(pget split_brain)" != 1 ] || fail "$what: split_brain before any split"
	sctl start
	pctl checkpoint
	sctl checkpoint

	# The secondary fails over; its VM writes 1 MiB at 8 MiB.
	sctl failover
	wait_for 30 sh -c "grep -qx 'state=done' '$SMNT/.colo/status'" ||
		fail "$what: the secondary did not reach done"
	pattern $((1 << 20)) bb >"$T/bb"
	dd if="$T/bb" of="$SMNT/vda" bs=1M seek=8 conv=notrunc status=none
	# The old primary writes 1 MiB at 0: the secondary refuses it (it
	# failed over), the primary degrades and tracks it.
	dd if=/dev/urandom of="$PMNT/vda" bs=1M count=1 conv=notrunc status=none
	wait_pstate degraded
	[ "$(pget dirty_bytes)" = $((1 << 20)) ] ||
		fail "$what: dirty_bytes $(pget dirty_bytes), want 1 MiB"

	# The old secondary back as a secondary, its data kept.
	restart_secondary --demote
	[ "$(sget state)" = none ] || fail "$what: --demote did not leave done"
}

# refused WORD: the primary refuses WORD for split brain, copies nothing.
refused() {
	local got
	got=$(MNT=$PMNT ctl_try "$1")
	[ "$got" = EIO ] || fail "$1 over a split brain: got $got, want EIO"
	grep -q "split brain on vda" "$PMNT/.colo/error" ||
		fail "$1: the error does not say split brain: $(cat "$PMNT/.colo/error")"
	grep -q "failed over at 20" "$PMNT/.colo/error" ||
		fail "$1: the error does not say when the secondary failed over"
	grep -q "1048576 bytes dirty, written since 20" "$PMNT/.colo/error" ||
		fail "$1: the error does not say what the primary wrote since when"
	[ "$(pget split_brain)" = 1 ] || fail "$1: split_brain=$(pget split_brain)"
	[ "$(sget vda.primary_write_bytes)" = 0 ] ||
		fail "$1: the secondary received $(sget vda.primary_write_bytes) bytes"
	expect_bytes "$T/s.img" $((8 << 20)) $((1 << 20)) bb
	grep -q "rule 4, split-brain" "$T/p.log" || fail "$1: the log names no rule"
	ok "$1 refused: $(cat "$PMNT/.colo/error")"
}

# 1. Refused, then "resync full": this side wins.
split "resync full"
refused resync
restart_primary
[ "$(pget state)" = none ] || fail "the primary did not restart in none"
[ "$(pget split_brain)" = 1 ] || fail "a restart forgot the split brain"
refused start
pctl resync full || fail "resync full: $(cat "$PMNT/.colo/error")"
wait_pstate replicating
[ "$(pget split_brain)" = 0 ] || fail "split_brain after resync full"
[ "$(pget sync_total_bytes)" = $((16 << 20)) ] ||
	fail "resync full copied $(pget sync_total_bytes) bytes"
same_disks "resync full after a split brain"

# The pair is one again: a restart of the secondary (no failover) keeps
# its generation, and the next resync is incremental.
gi=$(sget gi_current)
sctl start
kill9 "$SEC_PID" "$SMNT"
wait_pstate degraded 20
dd if=/dev/urandom of="$PMNT/vda" bs=64K count=2 seek=3 conv=notrunc status=none
start_secondary
[ "$(sget gi_current)" = "$gi" ] ||
	fail "a restart changed the secondary's generation ($gi -> $(sget gi_current))"
pctl resync || fail "resync after a secondary's restart: $(cat "$PMNT/.colo/error")"
wait_pstate replicating
[ "$(pget sync_total_bytes)" = $((128 << 10)) ] ||
	fail "the resync after a restart copied $(pget sync_total_bytes) bytes, want 128 KiB"
same_disks "incremental resync, same generation"
stop_primary_and_secondary() {
	pair_stop "$PRI_PID" "$PMNT"
	pair_stop "$SEC_PID" "$SMNT"
}
stop_primary_and_secondary

# 2. --demote --discard-local on the secondary: a plain resync is a full one.
split "discard-local"
refused resync
restart_secondary --demote --discard-local
[ "$(sget gi_history)" = 0000000000000000,0000000000000000,0000000000000000,0000000000000000 ] ||
	fail "--discard-local kept a history: $(sget gi_history)"
pctl resync || fail "resync after --discard-local: $(cat "$PMNT/.colo/error")"
wait_pstate replicating
[ "$(pget sync_total_bytes)" = $((16 << 20)) ] ||
	fail "the resync after --discard-local copied $(pget sync_total_bytes) bytes"
[ "$(pget split_brain)" = 0 ] || fail "split_brain after --discard-local"
same_disks "--discard-local on the secondary"
stop_primary_and_secondary
