#!/usr/bin/env bash
# colofsctl on a primary: status shows the primary's columns (dirty bytes,
# the link, the degraded reason), not the secondary's buffers; resync,
# wait STATE, errors and --version work; failover --wait returns.
. "$(dirname "$0")/lib.sh"
SIZE=16M TIMEOUT=60s GRAN=64K
. "$(dirname "$0")/pair.sh"
CTL=$(dirname "$COLOFS_BIN")/colofsctl

# expect_rc CODE CMD...: CMD's exit status is CODE; stdout in $T/out,
# stderr in $T/err.
expect_rc() {
	local want=$1 rc=0
	shift
	"$@" >"$T/out" 2>"$T/err" || rc=$?
	[ "$rc" = "$want" ] ||
		fail "$* exited $rc, want $want: $(cat "$T/out" "$T/err")"
}

expect_rc 0 "$CTL" --version
grep -qx "colofsctl [0-9.]*" "$T/out" || fail "--version: $(cat "$T/out")"
ok "--version: $(cat "$T/out")"

make_image "$T/s.img" "$SIZE"
head -c "$SIZE" /dev/urandom >"$T/p.img"
pair_configs
start_secondary
start_primary

expect_rc 0 "$CTL" -m "$PMNT" status
grep -q "primary, state none" "$T/out" || fail "status: $(cat "$T/out")"
grep -q "dirty" "$T/out" || fail "status shows no dirty bytes: $(cat "$T/out")"
grep -q "hidden\|buffer ?\|to commit" "$T/out" &&
	fail "status shows the secondary's columns on a primary: $(cat "$T/out")"
ok "status on a primary: $(head -n 1 "$T/out")"

expect_rc 0 "$CTL" -m "$PMNT" start
expect_rc 0 "$CTL" -m "$PMNT" wait replicating --timeout 60
expect_rc 0 "$CTL" -m "$PMNT" status
grep -q "state replicating" "$T/out" || fail "status: $(cat "$T/out")"
grep -q "$SURI" "$T/out" || fail "status does not name the secondary: $(cat "$T/out")"
ok "start, wait replicating: $(head -n 1 "$T/out")"

expect_rc 0 "$CTL" -m "$PMNT" status --json
for k in '"mode":"primary"' '"dirty_bytes":' '"degraded_reason":' \
	'"sync_done_bytes":' '"sync_total_bytes":' '"secondary":"' \
	'"link_reconnects":0'; do
	grep -qF "$k" "$T/out" || fail "status --json has no $k: $(cat "$T/out")"
done
ok "status --json has the primary's keys"

# A timeout: the state never comes.
expect_rc 5 "$CTL" -m "$PMNT" wait degraded --timeout 0.5
grep -q "timed out.*replicating" "$T/err" || fail "wait's timeout: $(cat "$T/err")"
expect_rc 2 "$CTL" -m "$PMNT" wait bogus
ok "wait: a timeout exits 5 and names the state; an unknown state is a usage error"

# Degraded: status says why; resync brings it back.
kill9 "$SEC_PID" "$SMNT"
dd if=/dev/urandom of="$PMNT/vda" bs=64K count=4 conv=notrunc status=none
expect_rc 0 "$CTL" -m "$PMNT" wait degraded --timeout 60
expect_rc 0 "$CTL" -m "$PMNT" status
grep -q "^degraded: vda: secondary" "$T/out" || fail "no degraded reason: $(cat "$T/out")"
ok "degraded: $(grep '^degraded' "$T/out")"
expect_rc 1 "$CTL" -m "$PMNT" checkpoint
grep -q "checkpoint: degraded" "$T/err" || fail "checkpoint's refusal: $(cat "$T/err")"
start_secondary
expect_rc 1 "$CTL" -m "$SMNT" resync
grep -q "resync" "$T/err" || fail "resync on a secondary: $(cat "$T/err")"
expect_rc 0 "$CTL" -m "$PMNT" resync
expect_rc 0 "$CTL" -m "$PMNT" wait replicating --timeout 60
expect_rc 1 "$CTL" -m "$PMNT" resync
grep -q "resync: the state is replicating" "$T/err" || fail "resync in replicating: $(cat "$T/err")"
expect_rc 0 "$CTL" -m "$PMNT" stop
expect_rc 0 "$CTL" -m "$PMNT" resync full
expect_rc 0 "$CTL" -m "$PMNT" wait replicating --timeout 60
same_disks "after colofsctl resync full"

expect_rc 0 "$CTL" -m "$PMNT" errors
grep -q "Z checkpoint: degraded" "$T/out" || fail "errors: $(cat "$T/out")"
ok "errors: $(wc -l <"$T/out") lines"

# The sync's progress and ETA: a proxy holds the sync part-way (after 8
# MiB) until its gate file goes.
"$PY3" "$(dirname "$0")/gate_proxy.py" "$T/gate.sock" "$T/s.sock" "$T/gate" \
	$((8 << 20)) &
GATE=$!
at_exit "kill $GATE"
wait_for 20 test -S "$T/gate.sock" || fail "the proxy did not start"
touch "$T/gate"
expect_rc 0 "$CTL" -m "$PMNT" stop
expect_rc 0 "$CTL" -m "$PMNT" resync full "nbd+unix:///vda?socket=$T/gate.sock"
wait_for 60 sh -c "grep -qx state=syncing $PMNT/.colo/status &&
	[ \$(sed -n 's/^sync_done_bytes=//p' $PMNT/.colo/status) -gt 0 ]" ||
	fail "no progress seen while syncing: $(cat "$PMNT/.colo/status")"
expect_rc 0 "$CTL" -m "$PMNT" status
grep -q "^sync: .* of 16.0 MiB ([0-9]*%), .*/s, ETA [0-9.]* s$" "$T/out" ||
	fail "no sync progress with an ETA: $(cat "$T/out")"
ok "while syncing: $(grep '^sync:' "$T/out")"
rm -f "$T/gate"
expect_rc 0 "$CTL" -m "$PMNT" wait replicating --timeout 60
same_disks "after the held sync"

expect_rc 0 "$CTL" -m "$PMNT" failover --wait
grep -q "failover" "$T/out" || fail "failover --wait on a primary: $(cat "$T/out")"
expect_rc 0 "$CTL" -m "$PMNT" wait failover --timeout 10
ok "failover --wait on a primary returns: $(cat "$T/out")"
