#!/usr/bin/env bash
# The FUSE loop (fs/fuse/fuse-loop.c) keeps few threads busy: after a load
# of two jobs, at most one per CPU (at least 2, up to 8) wait in the
# kernel.  But requests that block do not hold back the others: with more
# disk writes stuck than that, the status, a read of the disk and a ctl
# word are still answered (the loop's timer adds a reader when none is
# left and nothing completes).
. "$(dirname "$0")/lib.sh"

make_image "$T/vda.img" 16M aa
write_config
# Direct writes to one file are serialized by the kernel: one disk per
# write that hangs.
for ((i = 0; i < 10; i++)); do
	make_image "$T/d$i.img" 1M
	printf '\n[disk "d%d"]\nimage = %s\n' "$i" "$T/d$i.img" \
		>>"$T/colofs.ini"
done
export COLOFS_TEST_HANG=$T/hang
start_colofs_fg
pid=$COLOFS_PID
ctl start

# in_kernel: the daemon's threads asleep in read(/dev/fuse).
# (wchan has no newline: one file per match.)
in_kernel() { grep -l fuse_dev_do_read /proc/"$pid"/task/*/wchan 2>/dev/null |
	wc -l; }

# Two jobs of small direct reads and writes, side by side (fio: a libfuse
# loop grows to 16 threads asleep in the kernel under it).
fio --name=two --filename="$MNT/vda" --rw=randrw --bs=4k --ioengine=psync \
	--direct=1 --numjobs=2 --size=16M --io_size=8M --fallocate=none \
	--group_reporting >"$T/fio.out" 2>&1 || fail "fio: $(cat "$T/fio.out")"
n=$(in_kernel)
cpus=$(nproc)
limit=$(( cpus < 2 ? 2 : cpus < 8 ? cpus : 8 ))
echo "threads waiting in the kernel after two jobs: $n (at most $limit)"
[ "$n" -le "$limit" ] || fail "$n threads wait in read(/dev/fuse)"
ok "two jobs leave $n threads waiting in the kernel"

# Ten writes that are never answered (the test hook hangs the thread that
# takes each one).
for ((i = 0; i < 10; i++)); do
	: >"$T/hang"
	dd if=/dev/zero of="$MNT/d$i" bs=4k count=1 oflag=direct \
		conv=notrunc status=none 2>/dev/null &
	at_exit "kill -9 $!"
	wait_for 20 test ! -e "$T/hang" || fail "write $i was not taken"
done
grep -c "this request is never answered" "$T/colofs.log" |
	grep -qx 10 || fail "not 10 hung writes: $(cat "$T/colofs.log")"
timeout 20 cat "$MNT/.colo/status" >/dev/null ||
	fail "status not answered with 10 writes stuck"
timeout 20 dd if="$MNT/vda" of=/dev/null bs=4k count=1 skip=1 \
	iflag=direct status=none || fail "read not answered"
timeout 20 sh -c "echo checkpoint >'$MNT/.colo/ctl'" ||
	fail "ctl not answered"
[ "$(status_get checkpoints)" = 1 ] || fail "checkpoints=$(status_get checkpoints)"
ok "10 writes stuck: status, reads and ctl still answered"
