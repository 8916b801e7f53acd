#!/usr/bin/env bash
# The FUSE loop under a bad day: three fio jobs of small direct reads and
# writes, a checkpoint loop beside them, then a failover while they run,
# then SIGTERM with the disk still open (fio has far more to do than
# this takes: it is stopped at the end).  Every ctl word is answered, the
# failover reaches done, the stop waits for the last close and exits 0
# (fs/fuse/fuse-loop.c: blocked requests never hold back the ones they
# wait for; the end answers what it took).
. "$(dirname "$0")/lib.sh"
command -v fio >/dev/null || skip "no fio"

make_image "$T/vda.img" 16M aa
write_config
start_colofs_fg
pid=$COLOFS_PID
ctl start
nbd_write 0 65536 bb

fio --name=stress --filename="$MNT/vda" --rw=randrw --bs=4k \
	--ioengine=psync --direct=1 --numjobs=3 --size=16M --io_size=64G \
	--fallocate=none --group_reporting >"$T/fio.out" 2>&1 &
fio=$!
at_exit "kill -9 $fio"
wait_for 20 sh -c "[ \"\$(sed -n 's/^disk_files_open=//p' '$MNT/.colo/status')\" -ge 3 ]" ||
	fail "fio did not open the disk"
for ((i = 1; i <= 40; i++)); do
	timeout 60 sh -c "echo checkpoint >'$MNT/.colo/ctl'" ||
		fail "checkpoint $i not answered (or failed): $(tail -n 5 "$T/colofs.log")"
done
[ "$(status_get checkpoints)" = 40 ] || fail "checkpoints=$(status_get checkpoints)"
ok "40 checkpoints answered under three fio jobs"

timeout 60 sh -c "echo failover >'$MNT/.colo/ctl'" || fail "failover not answered"
wait_state done
ok "a failover under load reaches done"

alive "$fio" || fail "fio ended early: $(cat "$T/fio.out")"
kill -TERM "$pid"
wait_for 20 grep -q "SIGTERM while 3 disk files are open" "$T/colofs.log" ||
	fail "no deferral: $(tail -n 5 "$T/colofs.log")"
alive "$pid" || fail "colofs exited with the disk open"
kill -INT "$fio"
wait "$fio" || true
wait_exit "$pid"
[ "$EXIT_STATUS" = 0 ] || fail "exit $EXIT_STATUS: $(tail -n 20 "$T/colofs.log")"
assert_not_mounted
grep -q "the last disk file was closed: stopping" "$T/colofs.log" ||
	fail "log: $(tail -n 5 "$T/colofs.log")"
ok "SIGTERM under load: stops once fio closes the disk, exit 0"
