#!/usr/bin/env bash
# The holder itself dies (kill -9; its worker follows it, as it does when
# $NOTIFY_SOCKET says systemd runs it): with the fds in systemd's fd
# store the unit's restart hands them to a new holder, which resumes the
# same mount.  A stand-in for the fd store (fdstore.py) speaks systemd's
# protocol: FDSTORE=1/FDNAME= over $NOTIFY_SOCKET, LISTEN_FDS on restart.
# The process holding the disk file open reads on through all of it.
. "$(dirname "$0")/lib.sh"
. "$(dirname "$0")/live.sh"
"$COLOFS_BIN" --help | grep -q -- --holder || fail "colofs has no --holder"

make_image "$T/vda.img" 16M
write_config
"$PY3" "$HERE_LIVE/fdstore.py" "$T/notify" "$T" "$COLOFS_BIN" -c "$T/colofs.ini" \
	--holder 2>>"$T/colofs.log" &
store=$!
at_exit "touch $T/stop; kill $store"
# (fdstore.py's command line matches too: it is asked to stop first.)
at_exit 'for p in $(pgrep -f -- "[c]olofs -c $T/colofs.ini"); do [ "$p" = '"$store"' ] || kill -9 $p; done'
for n in state nbd fuse; do
	wait_for 60 grep -qx "stored $n" "$T/fdstore.log" ||
		fail "no $n in the fd store: $(cat "$T/fdstore.log" "$T/colofs.log")"
done
ok "the holder put state, nbd and fuse in the fd store"

nbd_pattern

rm -f "$T/stop" "$T/progress"
"$PY3" "$HERE_LIVE/live_io.py" read "$MNT/vda" "$T" >"$T/io.out" 2>"$T/io.err" &
IO_PID=$!
at_exit "kill $IO_PID"
wait_for 60 test -s "$T/progress" || fail "the reader did not start: $(cat "$T/io.err")"

old=$(worker)
holder=$(ps -o ppid= -p "$old" | tr -d ' ')
[ -n "$holder" ] && [ "$holder" != "$old" ] || fail "holder $holder, worker $old"
p0=$(progress)
# Under systemd a worker dies with its holder (PR_SET_PDEATHSIG), so that
# the unit's control group empties and the restart comes.
kill -KILL "$holder"
wait_for 60 sh -c "! kill -0 $holder 2>/dev/null && ! kill -0 $old 2>/dev/null" ||
	fail "holder or worker survived the holder's SIGKILL"
mountpoint -q "$MNT" || fail "the mount went with the holder"
touch "$T/restart"
wait_for 60 grep -q "^started state,nbd,fuse exit 0" "$T/fdstore.log" ||
	fail "no restart with the stored fds: $(cat "$T/fdstore.log"; tail "$T/colofs.log")"
wait_for 60 sh -c "p=\$(sed -n 's/^pid=//p' '$MNT/.colo/status') &&
	[ -n \"\$p\" ] && [ \"\$p\" != $old ]" || fail "no new worker"
wait_for 60 sh -c "[ \$(tr -d ' ' <'$T/progress') -ge $((p0 + 64)) ]" ||
	fail "no progress after the restart: $(cat "$T/io.err")"
[ "$(ps -o ppid= -p "$(worker)" | tr -d ' ')" != "$holder" ] ||
	fail "the old holder still runs"
expect_status restarts 1
ok "holder killed, its worker followed; a new holder from the fd store serves in $(status_get last_restart_ms) ms"

touch "$T/stop"
rc=0; wait "$IO_PID" || rc=$?
[ "$rc" = 0 ] || fail "the reader: $(cat "$T/io.err")"
ok "the reader's fd never failed: $(cat "$T/io.out")"
nbd_write 0 65536 ee
expect_bytes "$MNT/vda" 0 65536 ee
ok "the NBD listener from the fd store serves"

fusermount3 -u "$MNT"
wait_for 60 sh -c "! pgrep -f '[c]olofs -c $T/colofs.ini'" || fail "did not stop"
assert_not_mounted
ok "stops cleanly"
