#!/usr/bin/env bash
# A hung idle secondary is noticed (issue 16, problem 5): a replicating
# pair with no VM writes, the secondary stopped with SIGSTOP.  The
# primary's keepalive (a 512-byte NBD READ after secondary_timeout / 2 of idle
# link, answered within secondary_timeout) goes unanswered: the primary
# degrades by itself, says why, and the next checkpoint fails with EIO.
# Then, resynced, a live idle secondary answers them and the pair stays
# replicating.
. "$(dirname "$0")/lib.sh"
SIZE=16M TIMEOUT=1s GRAN=64K
. "$(dirname "$0")/pair.sh"

make_image "$T/s.img" "$SIZE"
make_image "$T/p.img" "$SIZE"
pair_configs
start_secondary
start_primary
pctl start
wait_pstate replicating
sctl start

kill -STOP "$SEC_PID"
at_exit "kill -CONT $SEC_PID"
wait_pstate degraded 60
grep -q "keepalive: no reply in 1000 ms" <<<"$(pget degraded_reason)" ||
	fail "degraded_reason: $(pget degraded_reason)"
got=$(MNT=$PMNT ctl_try checkpoint)
[ "$got" = EIO ] || fail "checkpoint after a hung idle secondary: $got, want EIO"
grep -q "checkpoint: degraded: .*keepalive" "$PMNT/.colo/error" ||
	fail "the checkpoint's error: $(cat "$PMNT/.colo/error")"
ok "a hung idle secondary degrades the primary: $(pget degraded_reason)"
kill -CONT "$SEC_PID"
pctl resync || fail "resync: $(cat "$PMNT/.colo/error")"
wait_pstate replicating
base=$(sget nbd.reads)

# Idle and alive: the keepalives are answered (the secondary counts
# them as reads), the pair stays replicating.
wait_for 30 sh -c "[ \$(sed -n 's/^nbd.reads=//p' $SMNT/.colo/status) -ge $((base + 3)) ]" ||
	fail "no keepalive reached the idle secondary: $(cat "$SMNT/.colo/status")"
[ "$(pget state)" = replicating ] || fail "an idle live secondary degraded the pair: $(pget degraded_reason)"
pctl checkpoint || fail "checkpoint with an idle live secondary: $(cat "$PMNT/.colo/error")"
ok "an idle live secondary answers the keepalives; still replicating"

