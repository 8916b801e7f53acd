#!/usr/bin/env bash
# A colofs pair on one machine (mode = primary -> mode = secondary), over a
# unix socket and over TCP: the first sync of a non-empty disk, then dd,
# fio and a checksummed workload on the primary's file, checkpoints on
# both sides, and after each the secondary's view equals the primary's.
. "$(dirname "$0")/lib.sh"
. "$(dirname "$0")/pair.sh"
command -v fio >/dev/null || skip "fio is not installed"
HERE=$(cd "$(dirname "$0")" && pwd)

round() {
	local what=$1
	make_image "$T/s.img" "$SIZE"
	head -c "$SIZE" /dev/urandom >"$T/p.img"
	rm -f "$T"/state/*vda.dirty
	pair_configs
	start_secondary
	start_primary
	[ "$(pget state)" = none ] || fail "$what: the primary did not start in none"
	pctl start
	wait_pstate replicating
	[ "$(pget syncs)" = 1 ] || fail "$what: no sync counted"
	[ "$(pget vda.synced)" = 1 ] || fail "$what: not marked synced"
	same_disks "$what: first sync"
	sctl start

	dd if=/dev/urandom of="$PMNT/vda" bs=64K count=64 seek=7 conv=notrunc \
		status=none || fail "$what: dd"
	pctl checkpoint
	sctl checkpoint
	same_disks "$what: after dd and a checkpoint"

	fio --name=w --filename="$PMNT/vda" --rw=randwrite --bs=4k \
		--io_size=2M --size="$SIZE" --direct=1 --ioengine=psync \
		--numjobs=2 --randrepeat=0 >"$T/fio.log" 2>&1 ||
		{ cat "$T/fio.log"; fail "$what: fio"; }
	"$PY3" "$HERE/pattern_writes.py" write "$PMNT/vda" 7 200 >"$T/manifest"
	pctl checkpoint
	sctl checkpoint
	same_disks "$what: after fio, the checksummed workload and a checkpoint"
	"$PY3" "$HERE/pattern_writes.py" check "$SMNT/vda" "$T/manifest" ||
		fail "$what: the checksummed blocks"
	[ "$(pget checkpoints)" = 2 ] || fail "$what: checkpoints not counted"
	[ "$(pget dirty_bytes)" = 0 ] || fail "$what: dirty bytes while replicating"

	# A clean stop of both; the primary's bitmap says: in sync, clean.
	stop_one "$PRI_PID" "$PMNT"
	stop_one "$SEC_PID" "$SMNT"
	cmp "$T/p.img" "$T/s.img" || fail "$what: the images differ after stop"
	ok "$what: the images are equal after a clean stop"
}

stop_one() {
	fusermount3 -u "$2"
	wait_exit "$1"
	[ "$EXIT_STATUS" = 0 ] || fail "colofs exited $EXIT_STATUS"
}

round "unix socket"
pair_tcp
round "TCP"
