#!/usr/bin/env bash
# A planned restart in running (colofs --holder, "restart" on ctl) hands
# the hidden and active buffers to the next process through buffer_dir:
# the view reads the same bytes, S is untouched, the maps hold the same
# bytes, the generation stays, and a checkpoint then works as usual.  A
# process with the disk file open writes through another restart and
# reads back what it wrote.  For file buffers, and for memory buffers
# with a buffer_dir (they are copied to files there).  Without a
# buffer_dir the restart is refused in running (EBUSY), and a crash in
# running comes back in none (the buffers are lost) with the VM's file
# still open.
. "$(dirname "$0")/lib.sh"
. "$(dirname "$0")/live.sh"
"$COLOFS_BIN" --help | grep -q -- --holder || fail "colofs has no --holder"

keys() {
	grep -E '^(state|generation|vda\.hidden_bytes|vda\.active_bytes)=' \
		"$MNT/.colo/status"
}
restart() { restart_worker; }

for mode in file memory; do
	rm -rf "$T/state" "$T/bufs"
	mkdir -p "$T/bufs"
	make_image "$T/vda.img" 16M
	BUFFER=$mode EXTRA_CONFIG="buffer_dir = $T/bufs" write_config
	start_colofs --holder
	at_exit 'for p in $(pgrep -f -- "[c]olofs -c $T/colofs.ini"); do kill -9 $p; done'
	ctl start
	nbd_write 0 1048576 11
	view_write 524288 1048576 aa
	nbd_write 4194304 65536 22
	view_write 8388608 4096 bb
	before=$(keys)
	view=$(sum "$MNT/vda")
	s=$(sum "$T/vda.img")
	restart
	[ "$(keys)" = "$before" ] || fail "$mode: after the restart
$(keys)
want
$before"
	[ "$(sum "$MNT/vda")" = "$view" ] || fail "$mode: the view changed"
	[ "$(sum "$T/vda.img")" = "$s" ] || fail "$mode: S changed"
	expect_status restarted_from running
	ls "$T/bufs" | grep -q . && fail "$mode: files left in buffer_dir: $(ls "$T/bufs")"
	ok "$mode buffers: restart in running keeps the view, S, both maps and the generation ($(status_get last_restart_ms) ms)"

	# The VM writes through its open fd across another restart.
	rm -f "$T/stop" "$T/progress"
	"$PY3" "$HERE_LIVE/live_io.py" write "$MNT/vda" "$T" >"$T/io.out" 2>"$T/io.err" &
	IO_PID=$!
	at_exit "kill $IO_PID"
	wait_for 60 test -s "$T/progress" || fail "the writer did not start"
	p0=$(progress)
	restart
	wait_for 60 sh -c "[ \$(tr -d ' ' <'$T/progress') -ge $((p0 + 64)) ]" ||
		fail "$mode: no progress after the restart: $(cat "$T/io.err")"
	touch "$T/stop"
	rc=0; wait "$IO_PID" || rc=$?
	[ "$rc" = 0 ] || fail "$mode: the writer: $(cat "$T/io.err")"
	expect_status state running
	ok "$mode buffers: writes through one open fd across a restart in running: $(cat "$T/io.out"), no error"

	# A checkpoint empties the handed-over buffers: the view is S again.
	nbd_write 0 65536 33
	ctl checkpoint
	expect_status vda.active_bytes 0
	expect_status vda.hidden_bytes 0
	[ "$(sum "$MNT/vda")" = "$(sum "$T/vda.img")" ] ||
		fail "$mode: after the checkpoint the view is not S"
	ok "$mode buffers: a checkpoint after the restarts makes the view S"
	fusermount3 -u "$MNT"
	wait_for 60 sh -c "! pgrep -f '[c]olofs -c $T/colofs.ini'" || fail "did not stop"
done

# Memory buffers and nowhere to put them: refused, and running goes on.
rm -rf "$T/state"
BUFFER=memory EXTRA_CONFIG= write_config
start_colofs --holder
ctl start
expect_ctl restart EBUSY
grep -q buffer_dir "$MNT/.colo/error" || fail "why: $(cat "$MNT/.colo/error")"
expect_status state running
ok "memory buffers without buffer_dir: restart in running refused (EBUSY)"

# A crash in running cannot keep memory buffers: the next worker starts in
# none (as any restart after a crash), but the VM's open file stays, and
# reads through it work.
exec 9<"$MNT/vda"
old=$(worker)
kill -KILL "$old"
wait_for 60 sh -c "p=\$(sed -n 's/^pid=//p' '$MNT/.colo/status') &&
	[ -n \"\$p\" ] && [ \"\$p\" != $old ]" || fail "no new worker"
expect_status state none
expect_status restarted_from running
grep -q "buffers are gone" "$MNT/.colo/error" || fail "error: $(cat "$MNT/.colo/error")"
head -c 65536 <&9 >/dev/null || fail "a read through the open file failed"
exec 9<&-
ok "kill -9 in running: none, as after any crash, and the open file still reads"
fusermount3 -u "$MNT"
wait_for 60 sh -c "! pgrep -f '[c]olofs -c $T/colofs.ini'" || fail "did not stop"
