#!/usr/bin/env bash
# The first sync of a non-empty disk while the primary writes: writes
# before start are tracked, writes during the sync are mirrored (the
# secondary is paused with SIGSTOP right after start so that the writes
# certainly overlap the copy), and at the end the secondary's view equals
# the primary's file.
. "$(dirname "$0")/lib.sh"
SIZE=64M TIMEOUT=20s
. "$(dirname "$0")/pair.sh"
HERE=$(cd "$(dirname "$0")" && pwd)

make_image "$T/s.img" "$SIZE"
head -c "$SIZE" /dev/urandom >"$T/p.img"
pair_configs
start_secondary
start_primary
"$PY3" "$HERE/pattern_writes.py" write "$PMNT/vda" 1 50 >"$T/m1"
[ "$(pget dirty_bytes)" -gt 0 ] || fail "writes in none were not tracked"

pctl start
kill -STOP "$SEC_PID"
at_exit "kill -CONT $SEC_PID"
[ "$(pget state)" = syncing ] || fail "the sync ended before the secondary was paused"
w0=$(pget vda.write_bytes)
# dd first, then the checksummed writes (later writes win in the check),
# and a second dd alongside.
(dd if=/dev/urandom of="$PMNT/vda" bs=1M count=4 seek=20 conv=notrunc \
	status=none && "$PY3" "$HERE/pattern_writes.py" write "$PMNT/vda" 2 100 \
	>"$T/m2") &
W=$!
dd if=/dev/urandom of="$PMNT/vda" bs=64K count=16 seek=900 oflag=direct \
	conv=notrunc status=none &
D=$!
sleep 0.5
[ "$(pget state)" = syncing ] || fail "not syncing any more: $(pget state)"
kill -CONT "$SEC_PID"
wait "$W" || fail "the checksummed writer failed during the sync"
wait "$D" || fail "dd failed during the sync"
wait_pstate replicating
w1=$(pget vda.write_bytes)
[ "$w1" -gt "$w0" ] || fail "no write completed during the sync"
[ "$(pget vda.mirrored_bytes)" -ge $((w1 - w0)) ] ||
	fail "writes during the sync were not mirrored"
[ "$(pget dirty_bytes)" = 0 ] || fail "dirty after the sync"
ok "$((w1 - w0)) bytes written and mirrored during the first sync"
sctl start
pctl checkpoint
sctl checkpoint
same_disks "first sync while writing"
# The dd writes overwrite some of m1's blocks, and the second one (at
# 56.25 MiB) races with m2: check only the blocks they cannot touch.
cat "$T/m1" "$T/m2" >"$T/m"
"$PY3" "$HERE/pattern_writes.py" check "$SMNT/vda" "$T/m" \
	$((20 << 20)):$((4 << 20)) $((900 << 16)):$((1 << 20)) ||
	fail "the checksummed blocks on the secondary"
