#!/usr/bin/env bash
# A real guest (Debian's kernel, ext4, tests/realvm/) keeps a clean file
# system while colofs restarts under it during a checkpoint loop.
#
# The guest runs on the primary's disk file (PMNT/vda, cache=none), as the
# primary VM does: its writes go to P and, in replicating, to the
# secondary over NBD before they are acknowledged.  The secondary is in
# running and the host checkpoints both sides in a loop.  (A guest on the
# secondary's view cannot take part in a checkpoint loop: a checkpoint
# drops the secondary VM's writes, which COLO pairs with loading the
# primary's RAM; see tests/realvm/README.md.)  Meanwhile, CYCLES times:
#   1. a planned restart of the secondary in running (buffers handed
#      over; its NBD connection closes, and the primary reconnects to the
#      same incarnation and re-sends what was unanswered: it stays
#      replicating, never degraded, doc/primary.md *Reconnect*);
#   2. a planned restart of the primary in replicating (the guest's own
#      disk; the new primary is in none with its bitmap);
#   3. kill -9 of the primary's worker in none while it holds one of the
#      guest's writes unanswered (the test hook COLOFS_TEST_HANG): the
#      kernel sends it again to the next worker;
#   4. start: the primary resyncs and replicates again.
# After each, the guest must go on writing (rounds after the restart).
# Then the primary stops, the secondary fails over (done), and the guest
# boots on the secondary's disk file while its worker is killed (-9) and
# restarted (planned) in done.
# At the end the guest verifies its files and powers off, and: its console
# shows no I/O or ext4 error, e2fsck -fn of the VM's disk is clean, every
# file matches its sum, and after a last checkpoint the secondary's view
# equals the primary's file and is clean too.  The pauses are printed:
# the host's (last_restart_ms) and the guest's (the gaps between its
# rounds).
#
# CYCLES (1) and AFTER (rounds the guest must write after each restart,
# 10) are raised by tests/e2e/long/test-realvm-live-restart.sh, which also
# runs QEMU with CACHE=writeback (the page cache, no O_DIRECT) besides the
# default none.
# REALVM_NO_HOLDER=1 runs only step 3, on a primary without --holder: the
# negative control (the guest then gets I/O errors and the test fails;
# tests/e2e/long/test-realvm-no-holder.sh checks that it does).
. "$(dirname "$0")/lib.sh"
SIZE=64M
. "$(dirname "$0")/pair.sh"
. "$(dirname "$0")/live.sh"
. "$(dirname "$0")/../realvm/lib.sh"
"$COLOFS_BIN" --help | grep -q -- --holder || fail "colofs has no --holder"
CYCLES=${CYCLES:-1}
AFTER=${AFTER:-10}
CACHE=${CACHE:-none}
realvm_need

make_image "$T/s.img" "$SIZE"
make_image "$T/p.img" "$SIZE"
mkfs.ext4 -q -F "$T/p.img"
pair_configs
# Memory buffers need somewhere to go for a restart in running.
mkdir -p "$T/bufs"
sed -i "/^state_dir = /a buffer_dir = $T/bufs" "$T/s.ini"
at_exit 'for p in $(pgrep -f -- "[c]olofs -c $T/[ps].ini"); do kill -9 $p; done'
start_secondary --holder
# The test hook (fs/fuse/fusefs.c): while $T/hang exists, the primary's
# next FUSE write removes it and is never answered.
export COLOFS_TEST_HANG=$T/hang
if [ -n "${REALVM_NO_HOLDER:-}" ]; then
	start_primary
else
	start_primary --holder
fi
export -n COLOFS_TEST_HANG
pctl start
wait_pstate replicating 120
sctl start

realvm_boot "$PMNT/vda" "$CACHE"
realvm_wait_round 5
ok "the guest is up on the primary's disk file (cache=$CACHE), writing (round $(realvm_round))"

# The checkpoint loop: both sides, every 0.2 s, until $T/ckstop.  A
# secondary checkpoint must never fail (it is in running throughout); a
# primary one fails while the primary is in none (after its restarts).
"$PY3" - "$PMNT/.colo/ctl" "$SMNT/.colo/ctl" "$T" >"$T/ck.out" 2>&1 <<'EOPY' &
import os, sys, time
pctl, sctl, t = sys.argv[1:4]
counts = {"p": 0, "p_err": 0, "s": 0}
def word(path):
    fd = os.open(path, os.O_WRONLY)
    try:
        os.write(fd, b"checkpoint\n")
    finally:
        os.close(fd)
while not os.path.exists(t + "/ckstop"):
    try:
        word(pctl)
        counts["p"] += 1
    except OSError:
        counts["p_err"] += 1
    try:
        word(sctl)
        counts["s"] += 1
    except OSError as e:
        print("secondary checkpoint:", e, file=sys.stderr)
        sys.exit(1)
    with open(t + "/ckcount.tmp", "w") as f:
        f.write("%d %d %d\n" % (counts["s"], counts["p"], counts["p_err"]))
    os.rename(t + "/ckcount.tmp", t + "/ckcount")
    time.sleep(0.2)
print("checkpoints: secondary %d, primary %d (+%d refused in none)"
      % (counts["s"], counts["p"], counts["p_err"]))
EOPY
CK_PID=$!
at_exit "kill $CK_PID"
ckcount() { cut -d' ' -f1 "$T/ckcount" 2>/dev/null || echo 0; }
wait_for 60 test -s "$T/ckcount" || fail "the checkpoint loop did not start"

# new_worker MOUNT OLD: waits for a worker other than OLD to serve MOUNT.
new_worker() {
	wait_for 60 sh -c "p=\$(sed -n 's/^pid=//p' '$1/.colo/status') &&
		[ -n \"\$p\" ] && [ \"\$p\" != $2 ]" ||
		fail "no new worker on $1 after $2"
}
# goes_on WHAT: the guest writes AFTER more rounds, and the secondary
# checkpoints again.
goes_on() {
	local r c
	r=$(realvm_round)
	c=$(ckcount)
	realvm_wait_round $((r + AFTER))
	[ -e "$T/ckstop" ] ||
		wait_for 60 sh -c "[ \$(cut -d' ' -f1 '$T/ckcount') -gt $c ]" ||
		fail "$1: no secondary checkpoint since"
	ok "$1: the guest went on (round $r -> $(realvm_round))"
}

PAUSES_S='' PAUSES_P='' PAUSES_K='' RESUMED=0
for ((c = 1; c <= CYCLES; c++)); do
	if [ -z "${REALVM_NO_HOLDER:-}" ]; then
		old=$(LIVE_MNT=$SMNT worker)
		n=$(pget vda.link_reconnects)
		sctl restart
		new_worker "$SMNT" "$old"
		[ "$(sget state)" = running ] || fail "secondary: state $(sget state) after a restart in running"
		[ "$(sget restarted_from)" = running ] || fail "secondary: restarted_from=$(sget restarted_from)"
		PAUSES_S="$PAUSES_S $(sget last_restart_ms)"
		goes_on "cycle $c: planned restart of the secondary in running"
		# The primary reconnected by itself (doc/primary.md,
		# *Reconnect*): still replicating, never degraded.
		[ "$(pget state)" = replicating ] ||
			fail "cycle $c: the primary is $(pget state) after the secondary's restart: $(pget degraded_reason)"
		grep -q "degraded:" "$T/p.log" &&
			fail "cycle $c: the primary degraded: $(grep degraded: "$T/p.log")"
		[ "$(pget vda.link_reconnects)" -gt "$n" ] ||
			fail "cycle $c: the primary did not reconnect (link_reconnects $n)"
		RESUMED=$((RESUMED + 1))

		old=$(LIVE_MNT=$PMNT worker)
		pctl restart
		new_worker "$PMNT" "$old"
		PAUSES_P="$PAUSES_P $(pget last_restart_ms)"
		goes_on "cycle $c: planned restart of the primary in replicating"
		[ "$(pget state)" = none ] || fail "primary: state $(pget state) after its restart, want none"
	fi

	# A write of the guest's is in flight at the kill: the kernel sends
	# it again to the next worker (FUSE_NOTIFY_RESEND).
	touch "$T/hang"
	wait_for 60 sh -c "[ ! -e '$T/hang' ]" || fail "no guest write took the hook"
	old=$(LIVE_MNT=$PMNT worker)
	kill -KILL "$old"
	if [ -n "${REALVM_NO_HOLDER:-}" ]; then
		realvm_wait_round $(($(realvm_round) + AFTER)) 60
	fi
	new_worker "$PMNT" "$old"
	PAUSES_K="$PAUSES_K $(pget last_restart_ms)"
	goes_on "cycle $c: kill -9 of the primary in none, a guest write in flight"

	pctl start
	wait_pstate replicating 120
	goes_on "cycle $c: the primary resynced and replicates"
done

touch "$T/ckstop"
rc=0; wait "$CK_PID" || rc=$?
[ "$rc" = 0 ] || fail "the checkpoint loop: $(cat "$T/ck.out")"
realvm_stop
ok "the guest stopped after $(realvm_round) rounds: files verified in the guest, unmounted, no I/O or ext4 error on its console; between rounds: $(realvm_gaps)"

realvm_check_disk "$PMNT/vda"
ok "the VM's disk (the primary's file): e2fsck -fn clean, $REALVM_FILES files match their sums"
pctl checkpoint
sctl checkpoint
same_disks "after the guest's power-off and a checkpoint"
realvm_check_disk "$SMNT/vda"
ok "the secondary's view: e2fsck -fn clean, $REALVM_FILES files match their sums"
ok "pauses (last_restart_ms): secondary in running:$PAUSES_S; primary planned:$PAUSES_P; primary kill -9 in none:$PAUSES_K; $(cat "$T/ck.out"); the primary resumed its link on $RESUMED of $CYCLES secondary restarts, never degraded"

# The primary goes; the secondary fails over (done) and the guest boots
# on it, as after a real failover.  A kill -9 and a planned restart of its
# worker in done: the guest goes on, and its disk stays clean.
pair_stop "$PRI_PID" "$PMNT"
sctl failover
wait_for 60 sh -c "grep -qx state=done '$SMNT/.colo/status'" ||
	fail "the secondary did not reach done: $(sget state)"
realvm_boot "$SMNT/vda" "$CACHE"
realvm_wait_round 5
old=$(LIVE_MNT=$SMNT worker)
kill -KILL "$old"
new_worker "$SMNT" "$old"
[ "$(sget state)" = "done" ] || fail "secondary: state $(sget state) after kill -9 in done"
PAUSES_D=$(sget last_restart_ms)
goes_on "after failover: kill -9 of the secondary in done"
old=$(LIVE_MNT=$SMNT worker)
sctl restart
new_worker "$SMNT" "$old"
[ "$(sget state)" = "done" ] || fail "secondary: state $(sget state) after a restart in done"
PAUSES_D="$PAUSES_D $(sget last_restart_ms)"
goes_on "after failover: planned restart of the secondary in done"
realvm_stop
realvm_check_disk "$SMNT/vda"
ok "the guest on the promoted secondary: $(realvm_round) rounds, no error, e2fsck -fn clean, $REALVM_FILES files match their sums; pauses (last_restart_ms) in done: $PAUSES_D; between rounds: $(realvm_gaps)"
pair_stop "$SEC_PID" "$SMNT"
