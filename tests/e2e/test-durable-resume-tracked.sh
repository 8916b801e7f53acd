#!/usr/bin/env bash
# A failover commit resumed at start-up is tracked for protect like any
# other: every granule it writes into S is marked in the done side's dirty
# bitmap (fs/protect.c), so that a later incremental protect copies it to
# the returning old primary.  colofs dies right after answering
# "failover" (the test hook COLOFS_TEST_CRASH_AT=failover_acked), before
# its commit wrote anything; the restart resumes the commit.  The tracking
# tap used to be set only after the resumed commit had started, so the
# commit's first chunks went into S unmarked and a protect would have left
# the old primary with its stale bytes there.
. "$(dirname "$0")/lib.sh"

U=$((1 << 20))
GRAN=4096
mkdir -p "$T/buf"
# A large sparse disk with small granules: an 8 MiB bitmap, whose loading
# at start-up takes long enough that a commit resumed before it was in
# place writes its first chunks unmarked, every time.
truncate -s 256G "$T/vda.img"
BUFFER=memory EXTRA_CONFIG="buffer_dir = $T/buf
dirty_granularity = 4K" write_config

# bits FILE: the dirty granules set in a bitmap file (core/bitmap.c: the
# words from 4096 on, little-endian, bit i of word i/64 = granule i).
bits() {
	"$PY3" - "$1" <<'PY'
import sys
with open(sys.argv[1], "rb") as f:
    f.seek(4096)
    words = f.read()
print(int.from_bytes(words, "little").bit_count())
PY
}

for round in 1 2 3; do
	rm -rf "$T/state" "$T/buf"/*
	: >"$T/colofs.log"
	COLOFS_TEST_CRASH_AT=failover_acked start_colofs_fg
	ctl start
	# 40 MiB of the VM's own writes: ten commit chunks of 4 MiB.
	view_write 0 $((40 * U)) bb
	failover_dies failover_acked
	fusermount3 -u "$MNT" 2>/dev/null || true
	start_colofs_fg
	wait_state done
	expect_bytes "$T/vda.img" 0 $((40 * U)) bb
	# A clean stop saves the marks (they live in memory until then).
	kill -TERM "$COLOFS_PID"
	wait_exit "$COLOFS_PID"
	bm=$(ls "$T"/state/*.vda.dirty)
	n=$(bits "$bm")
	[ "$n" -ge $((40 * U / GRAN)) ] ||
		fail "round $round: $n granules marked, the resumed commit wrote $((40 * U / GRAN))"
	echo "round $round: $n granules marked"
done
ok "a resumed failover commit marks every granule it writes"
