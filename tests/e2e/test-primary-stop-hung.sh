#!/usr/bin/env bash
# stop on a primary whose secondary hangs (qemu-nbd, SIGSTOPped) while a
# VM write is in flight: the write times out after secondary_timeout, and
# the timed-out link is dead although the state is already none, so stop
# answers instead of waiting in D state for a reply that never comes
# (every wait on the link has a deadline of secondary_timeout).
. "$(dirname "$0")/lib.sh"
command -v qemu-nbd >/dev/null || skip "qemu-nbd is not installed (qemu-utils)"
PMNT=$T/pmnt
mkdir -p "$PMNT" "$T/state"
at_exit "fusermount3 -u $PMNT || umount -l $PMNT"

head -c 16M /dev/urandom >"$T/p.img"
truncate -s 16M "$T/s.img"
qemu-nbd -f raw -x vda -t -k "$T/s.sock" "$T/s.img" 2>"$T/qemu-nbd.log" &
QPID=$!
at_exit "kill $QPID"
wait_for 10 test -S "$T/s.sock" || fail "qemu-nbd did not start"
start_primary_fg 2s
echo start >"$PMNT/.colo/ctl"
wait_for 60 grep -qx "state=replicating" "$PMNT/.colo/status" ||
	fail "not replicating: $(pget state)"

# The secondary hangs; a write goes out to it and waits for its reply.
kill -STOP "$QPID"
# Registered last, so run first: whatever blocks below gets unblocked.
at_exit "kill -CONT $QPID"
sent=$(pget vda.link_bytes)
dd if=/dev/urandom of="$PMNT/vda" bs=64K count=1 seek=7 oflag=direct \
	conv=notrunc status=none 2>"$T/dd.err" &
DD=$!
wait_for 20 sh -c "[ \$(sed -n 's/^vda.link_bytes=//p' '$PMNT/.colo/status') -gt $sent ]" ||
	fail "the write was not sent to the secondary"

# stop while the write is in flight.  On failure the writer is stuck in
# the kernel (D state), so it runs in the background and is polled.
start=$(date +%s%N)
(echo stop >"$PMNT/.colo/ctl") 2>"$T/ctl.err" &
CTL=$!
wait_for 20 sh -c "! kill -0 $CTL 2>/dev/null" ||
	fail "stop did not answer in 20 s with the secondary hung and a write in flight"
ms=$(( ($(date +%s%N) - start) / 1000000 ))
wait "$CTL" || fail "stop failed: $(cat "$T/ctl.err") $(cat "$PMNT/.colo/error")"
echo "stop answered in $ms ms (secondary_timeout 2000 ms)"
[ "$ms" -le 20000 ] || fail "stop took $ms ms"
[ "$(pget state)" = none ] || fail "state $(pget state) after stop"
wait "$DD" || fail "the VM's write failed: $(cat "$T/dd.err")"
[ "$(pget dirty_bytes)" -gt 0 ] || fail "the timed-out write is not dirty"
ok "stop answered in $ms ms; the write completed locally and is dirty"

# The link was closed: the daemon still answers and exits on SIGTERM.
kill -CONT "$QPID"
echo start >"$PMNT/.colo/ctl"
wait_for 60 grep -qx "state=replicating" "$PMNT/.colo/status" ||
	fail "the next start did not replicate: $(pget state) $(cat "$PMNT/.colo/error")"
cmp "$T/p.img" "$T/s.img" || fail "the secondary differs after the resync"
ok "the next start resyncs the dirty granule"
