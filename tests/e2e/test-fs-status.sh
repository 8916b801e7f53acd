#!/usr/bin/env bash
# .colo/status after known writes: every documented key present, the
# counters exact.  Two disks, so the per-disk prefixes are checked too.
. "$(dirname "$0")/lib.sh"

make_image "$T/vda.img" 4M
make_image "$T/vdb.img" 2M
write_config
cat >>"$T/colofs.ini" <<EOC

[disk "vdb"]
image = $T/vdb.img
export = second
EOC
start_colofs

for k in state mode buffer buffer_retained_bytes checkpoints last_checkpoint_us unclean_disconnects \
	error disks; do
	grep -q "^$k=" "$MNT/.colo/status" || fail "status lacks $k"
done
for d in vda vdb; do
	for k in size hidden_bytes hidden_extents active_bytes active_extents \
		commit_remaining_bytes primary_write_bytes view_write_bytes \
		view_writes view_reads view_read_bytes overlay_bytes; do
		grep -q "^$d.$k=" "$MNT/.colo/status" || fail "status lacks $d.$k"
	done
done
grep -q '^nbd\.' "$MNT/.colo/status" || fail "status lacks the nbd.* lines"
expect_status state none
expect_status mode secondary
expect_status checkpoints 0
expect_status error ""
expect_status disks 2
expect_status vda.size 4194304
expect_status vdb.size 2097152
[ "$(stat -c %s "$MNT/vdb")" = 2097152 ] || fail "vdb's file size"
ok "every key present in state none"

ctl start
expect_status state running
# Three separate 4 KiB view writes, one 8 KiB primary write elsewhere,
# one primary write on vdb.
view_write 0 4096 01
view_write 65536 4096 02
view_write 131072 4096 03
nbd_write 1048576 8192 04
nbd_write 0 512 05 second
expect_status vda.active_bytes 12288
expect_status vda.active_extents 3
expect_status vda.view_write_bytes 12288
expect_status vdb.view_writes 0
# One 8 KiB read of the view: one request, 8 KiB more read.
r0=$(status_get vda.view_reads)
b0=$(status_get vda.view_read_bytes)
dd if="$MNT/vda" of=/dev/null bs=8192 count=1 skip=8 iflag=direct status=none
expect_status vda.view_reads $((r0 + 1))
expect_status vda.view_read_bytes $((b0 + 8192))
expect_status vda.hidden_bytes 8192
expect_status vda.hidden_extents 1
expect_status vda.primary_write_bytes 8192
expect_status vda.commit_remaining_bytes 0
expect_status vdb.hidden_bytes 512
expect_status vdb.primary_write_bytes 512
expect_status vdb.active_bytes 0
ok "counters after known writes"

# A primary write over a range already saved keeps hidden_bytes.
nbd_write 1048576 4096 06
expect_status vda.hidden_bytes 8192
expect_status vda.primary_write_bytes 12288

ctl checkpoint
expect_status checkpoints 1
us=$(status_get last_checkpoint_us)
[[ "$us" =~ ^[0-9]+$ ]] || fail "last_checkpoint_us=$us"
for k in hidden_bytes hidden_extents active_bytes active_extents; do
	expect_status vda.$k 0
	expect_status vdb.$k 0
done
# The totals are not reset by a checkpoint.
expect_status vda.view_write_bytes 12288
ok "checkpoint empties the buffers, counts itself"

ctl_try bogus >/dev/null
grep -q "^error=ctl: unknown command 'bogus'" "$MNT/.colo/status" ||
	fail "status error= does not show the last error"
: >"$MNT/.colo/error"
expect_status error ""
[ -z "$(cat "$MNT/.colo/error")" ] || fail ".colo/error not cleared"
ok "error= and .colo/error show the last error; truncating error clears it"

# One 4 KiB write from a file (a pipe may hand dd less): one request.
w0=$(status_get vda.view_writes)
pattern 4096 07 >"$T/blk"
dd if="$T/blk" of="$MNT/vda" bs=4096 count=1 seek=1 conv=notrunc status=none
expect_status vda.view_writes $((w0 + 1))
ok "view requests are counted: one read, one write"
ctl failover
wait_state done
expect_status vda.commit_remaining_bytes 0
expect_status vda.active_bytes 0
ok "done after failover"
