#!/usr/bin/env bash
# .colo/error holds the current problem, says when it was raised, and
# clears when the condition ends:
#   - secondary: a refused word's error clears at the next start; the
#     --demote note clears at start; an error raised while running clears
#     at the next checkpoint; a failover clears what came before it;
#   - primary: "checkpoint: degraded" clears once a resync brings the pair
#     back to replicating; a refused start clears at the next successful
#     word;
#   - every error has its time: "raised at" in .colo/error, error_time= in
#     the status, and .colo/errors keeps the last few, with their times,
#     after they cleared.
. "$(dirname "$0")/lib.sh"
SIZE=16M TIMEOUT=1s GRAN=64K
. "$(dirname "$0")/pair.sh"

err() { cat "$1/.colo/error"; }
expect_clear() { # MOUNT WHEN
	[ -z "$(err "$1")" ] || fail "$2: .colo/error still says: $(err "$1")"
	grep -qx "error=" "$1/.colo/status" || fail "$2: error= is not empty"
	grep -qx "error_time=" "$1/.colo/status" || fail "$2: error_time= is not empty"
}
expect_error() { # MOUNT PATTERN WHEN
	grep -q -- "$2" "$1/.colo/error" || fail "$3: .colo/error: $(err "$1")"
	grep -q "^raised at [0-9-]*T[0-9:]*Z" "$1/.colo/error" ||
		fail "$3: no time in .colo/error: $(err "$1")"
	grep -q "^error_time=[0-9-]*T[0-9:]*Z$" "$1/.colo/status" ||
		fail "$3: no error_time in the status"
}

make_image "$T/s.img" "$SIZE"
head -c "$SIZE" /dev/urandom >"$T/p.img"
pair_configs
start_secondary

# Secondary: a refused word, then a start.
sctl checkpoint 2>/dev/null && fail "checkpoint in none succeeded"
expect_error "$SMNT" "checkpoint: replication is not running" "checkpoint in none"
ok "a refusal says when: $(err "$SMNT" | tr '\n' ' ')"
sctl start
expect_clear "$SMNT" "start after a refused checkpoint"
grep -q "checkpoint: replication is not running" "$SMNT/.colo/errors" ||
	fail ".colo/errors lost the cleared error: $(cat "$SMNT/.colo/errors")"
grep -q "^[0-9-]*T[0-9:]*Z checkpoint: replication is not running" "$SMNT/.colo/errors" ||
	fail ".colo/errors has no time: $(cat "$SMNT/.colo/errors")"
ok "start clears it; .colo/errors keeps it: $(tail -n 1 "$SMNT/.colo/errors")"

# Secondary: an error while running clears at the next checkpoint.
sctl start 2>/dev/null && fail "start while running succeeded"
expect_error "$SMNT" "already running" "start while running"
sctl checkpoint
expect_clear "$SMNT" "checkpoint after a refused start"
ok "a checkpoint clears an error raised while running"

# Secondary: failover clears what came before; --demote's note clears at
# start.
sctl start 2>/dev/null || true
sctl failover
wait_for 20 grep -qx "state=done" "$SMNT/.colo/status" || fail "no done"
expect_clear "$SMNT" "failover"
fusermount3 -u "$SMNT"
wait "$SEC_PID" || true
env --default-signal=INT,QUIT "$COLOFS_BIN" -c "$T/s.ini" -f --demote 2>>"$T/s.log" &
SEC_PID=$!
at_exit "kill -9 $SEC_PID"
wait_for 10 mountpoint -q "$SMNT" || fail "the secondary did not restart"
expect_error "$SMNT" "demoted from done by --demote" "after --demote"
# No primary has resynced it yet: start refuses (EAGAIN), start force
# is the operator's word.
sctl start 2>/dev/null && fail "start after --demote without a resync succeeded"
sctl start force
expect_clear "$SMNT" "start force after --demote"
ok "failover and start clear the errors before them (--demote's note too)"

# Primary: degraded, the checkpoint fails and says so; a resync back to
# replicating clears it.
start_primary
pctl stop 2>/dev/null && fail "stop in none succeeded on the primary"
expect_error "$PMNT" "stop: " "stop in none"
pctl start
wait_pstate replicating
expect_clear "$PMNT" "start after a refused stop"
kill9 "$SEC_PID" "$SMNT"
dd if=/dev/urandom of="$PMNT/vda" bs=64K count=4 conv=notrunc status=none
wait_pstate degraded
pctl checkpoint 2>/dev/null && fail "checkpoint succeeded while degraded"
expect_error "$PMNT" "checkpoint: degraded" "checkpoint while degraded"
ok "degraded: $(err "$PMNT" | tr '\n' ' ')"
start_secondary
pctl resync
wait_pstate replicating
expect_clear "$PMNT" "back to replicating"
grep -q "checkpoint: degraded" "$PMNT/.colo/errors" ||
	fail "the primary's .colo/errors lost it: $(cat "$PMNT/.colo/errors")"
ok "back to replicating: .colo/error is empty; .colo/errors has $(wc -l <"$PMNT/.colo/errors") entries"
