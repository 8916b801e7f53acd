#!/usr/bin/env bash
# A failover is durable before `failover` answers (issue 16, part 1).
#
# colofs dies (_exit(137), as kill -9 would leave it) at every named step
# of a failover, through the test hook COLOFS_TEST_CRASH_AT (core/
# crashpoint.h): before and after each fsync and rename of the journal and
# the state file, after the answer, during the commit and after it.  Then
# a restart must leave things as the answer promised:
#   - the ctl write answered 0: the restart finishes the commit and S is
#     the VM's view at the failover, byte for byte;
#   - it did not: S is either that view (the state file already said
#     failover) or untouched by the commit (state none), never a mix.
# Plus the report's case: kill -9 right after the ctl write returned 0.
# For file buffers and memory buffers with a buffer_dir.
. "$(dirname "$0")/lib.sh"

U=$((1 << 20))
SIZE=$((6 * U))
mkdir -p "$T/buf"

# The state file is written at start-up (1), at start (2), at failover (3)
# and at done (4).
BEFORE="failover_journal_written failover_buffers_linked
	failover_buffers_synced fsynced.journal renamed.journal
	dir_synced.journal failover_journaled fsynced.state:3"
EITHER="renamed.state:3 dir_synced.state:3"
AFTER="failover_acked commit_chunk commit_chunk:2 commit_flushed
	fsynced.state:4 renamed.state:4 done_before_drop dropped.journal"

# populate BUF [CRASH_POINT]: a fresh image, state and buffers; colofs
# running (with the crash point armed) with the primary's and the VM's
# writes buffered.
populate() {
	fusermount3 -u "$MNT" 2>/dev/null || true
	rm -rf "$T/state" "$T/buf" "$T/vda.img"
	mkdir -p "$T/buf"
	: >"$T/colofs.log"
	make_image "$T/vda.img" $SIZE 11
	BUFFER=$1 EXTRA_CONFIG="buffer_dir = $T/buf" write_config
	COLOFS_TEST_CRASH_AT=${2:-} start_colofs_fg
	ctl start
	nbdsh_c "$(nbd_uri)" "
for off in range(0, 3 * $U, $U):
    h.pwrite(b'\xaa' * $U, off)
h.pwrite(b'\xab' * 4096, 5 * $U + 8192)
h.flush()
h.shutdown()"
	view_write $((2 * U)) $((3 * U)) bb
	view_write $((5 * U)) 8192 bc
}

# prepare BUF: $T/expect = V, $T/before = S, as every run builds them.
prepare() {
	populate "$1"
	cp "$MNT/vda" "$T/expect"
	cp "$T/vda.img" "$T/before"
	kill -TERM "$COLOFS_PID"
	wait_exit "$COLOFS_PID"
}

# run BUF POINT: populate with the crash point armed, fail over, restart.
run() {
	local buf=$1 point=$2 answer st
	populate "$buf" "$point"
	cmp -s "$MNT/vda" "$T/expect" || fail "$buf $point: V is not as prepared"
	answer=$(ctl_try "failover
" 2>/dev/null) || true
	answer=${answer%%$'\n'*}
	[ -n "$answer" ] || answer=died
	if [ "$point" = kill-after-answer ]; then
		kill -9 "$COLOFS_PID"
	fi
	wait "$COLOFS_PID" 2>/dev/null || true
	alive "$COLOFS_PID" && fail "$buf $point: colofs did not die"
	grep -q "crash point ${point%%:*}" "$T/colofs.log" ||
		[ "$point" = kill-after-answer ] ||
		fail "$buf $point: the crash point was not reached"
	fusermount3 -u "$MNT" 2>/dev/null || true
	start_colofs_fg
	st=$(status_get state)
	case $st in
	failover|done)
		wait_state done
		cmp -s "$T/vda.img" "$T/expect" ||
			fail "$buf $point: answered $answer, restarted in $st: S is not V"
		ls "$T"/state/*.journal* "$T"/buf/*.hidden "$T"/buf/*.active \
			2>/dev/null && fail "$buf $point: files left after done"
		;;
	none)
		[ "$answer" != ok ] ||
			fail "$buf $point: failover answered ok, but the restart is in none"
		cmp -s "$T/vda.img" "$T/before" ||
			fail "$buf $point: not failed over, yet S changed"
		;;
	*)	fail "$buf $point: restarted in $st" ;;
	esac
	echo "$buf $point: answered $answer, restarted in $st"
	RESULT=$st ANSWER=$answer
	kill -TERM "$COLOFS_PID"
	wait_exit "$COLOFS_PID"
}

for buf in file memory; do
	prepare $buf
	for p in $BEFORE; do
		run $buf "$p"
		[ "$ANSWER" != ok ] || fail "$buf $p: failover answered before it was durable"
	done
	for p in $EITHER; do
		run $buf "$p"
	done
	# From failover_acked on, the failover is durable: whether or not
	# the answer got out before the crash, the restart must finish it.
	for p in $AFTER; do
		run $buf "$p"
		[ "$RESULT" != none ] || fail "$buf $p: a durable failover was lost"
	done
	run $buf kill-after-answer
	[ "$ANSWER" = ok ] || fail "$buf: failover answered $ANSWER"
	[ "$RESULT" != none ] || fail "$buf: an answered failover was lost"
	ok "$buf buffers: every crash point of a failover"
done
