#!/usr/bin/env bash
# buffer_warm (issue 18): before start, colofs faults each memory buffer's
# pages in, in the background, so that the first epoch's writes fault none
# in (without it they fault in every page: the same run without the key is
# the control); the pages stay over checkpoints and go at stop; a file
# buffer refuses the key.
. "$(dirname "$0")/lib.sh"

MIB=1048576
make_image "$T/vda.img" 64M 11

# The daemon's minor faults while dd writes 16 MiB into the view in the
# first epoch after start.
first_epoch_faults() {
	local pid before after
	pid=$(colofs_pid)
	ctl start
	before=$(awk '{print $10}' "/proc/$pid/stat")
	view_write 0 $((16 * MIB)) 33 || fail "view write failed"
	after=$(awk '{print $10}' "/proc/$pid/stat")
	echo $((after - before))
}

EXTRA_CONFIG="buffer_limit = 1G" write_config
start_colofs
expect_status buffer_warming_bytes 0
cold=$(first_epoch_faults)
ctl stop
stop_colofs
rm -rf "$T/state"	# stop left it done: a new pair starts in none

EXTRA_CONFIG="buffer_limit = 1G
buffer_warm = 16M" write_config
start_colofs
wait_for 30 grep -qx "buffer_warming_bytes=0" "$MNT/.colo/status" ||
	fail "still warming: $(status_get buffer_warming_bytes) bytes left"
# Two stores for each of hidden and active, 16 MiB each.
expect_status buffer_retained_bytes $((64 * MIB))
grep -q "^colofs_buffer_warming_bytes 0$" "$MNT/.colo/metrics" ||
	fail "no colofs_buffer_warming_bytes in .colo/metrics"
warm=$(first_epoch_faults)
echo "first-epoch faults for 16 MiB (4,096 pages): $cold without, $warm with buffer_warm"
[ "$cold" -ge 4096 ] || fail "the control faulted only $cold pages in: the test measures nothing"
[ "$warm" -lt 1024 ] || fail "$warm faults in the first epoch with buffer_warm"
ok "buffer_warm: the first epoch faults $warm pages in, not $cold"

for i in 1 2 3; do
	ctl checkpoint
	view_write $((i * MIB)) 4096 44 || fail "view write failed"
done
expect_status buffer_retained_bytes $((64 * MIB))
expect_bytes "$MNT/vda" $((3 * MIB)) 4096 44
expect_bytes "$MNT/vda" $((4 * MIB)) $((60 * MIB)) 11
ok "small epochs keep the warmed pages"
ctl stop
expect_status buffer_retained_bytes 0
ok "stop gives them back"
stop_colofs

mkdir -p "$T/buf"
BUFFER=file EXTRA_CONFIG="buffer_dir = $T/buf
buffer_warm = 16M" write_config
if "$COLOFS_BIN" -c "$T/colofs.ini" 2>"$T/err"; then
	fail "buffer_warm with buffer = file was accepted"
fi
grep -q "buffer_warm is for mode = secondary with buffer = memory" "$T/err" ||
	fail "the refusal said: $(cat "$T/err")"
assert_not_mounted
ok "buffer = file refuses buffer_warm: $(cat "$T/err")"
