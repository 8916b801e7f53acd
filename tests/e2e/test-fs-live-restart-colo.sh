#!/usr/bin/env bash
# A .colo file opened under one worker and read under the next: what a
# monitor's cat, or colofsctl's poll of the status during "restart", does
# when the restart falls between its open and its reads.  The text was a
# snapshot of the process that opened it, gone with it.  The next worker
# serves what it can: a first read (offset 0) gets a fresh snapshot, kept
# for the reads that follow; a read at or past the end of the dead
# process's text is the end of the file (the reader had all of it); only
# a reader part way through a text gets ESTALE (the rest died with the
# old process).  Each case across kill -9 and across a planned restart.
# An fd held open puts the restart between open and read: no sleep.
. "$(dirname "$0")/lib.sh"
. "$(dirname "$0")/live.sh"
"$COLOFS_BIN" --help | grep -q -- --holder || fail "colofs has no --holder"

make_image "$T/vda.img" 16M
write_config
start_colofs --holder
at_exit 'for p in $(pgrep -f -- "[c]olofs -c $T/colofs.ini"); do kill -9 $p; done'

# rd FD SIZE: one read(2) of SIZE bytes from FD, at its offset.
rd() { dd bs="$2" count=1 status=none <&"$1"; }

kill_restart() {
	local old
	old=$(worker)
	kill -KILL "$old"
	wait_for 60 sh -c "p=\$(sed -n 's/^pid=//p' '$MNT/.colo/status') &&
		[ -n \"\$p\" ] && [ \"\$p\" != $old ]" || fail "no new worker"
}

for how in kill_restart restart_worker; do
	old=$(worker)
	exec 5<"$MNT/.colo/status"	# opened, not read
	exec 6<"$MNT/.colo/metrics"	# opened, not read
	exec 7<"$MNT/.colo/status"	# read whole
	exec 8<"$MNT/.colo/status"	# read in part
	rd 7 65536 >"$T/whole"
	grep -qx "pid=$old" "$T/whole" || fail "$how: the status read before: $(cat "$T/whole")"
	[ "$(rd 8 10 | wc -c)" = 10 ] || fail "$how: a read of 10 bytes"
	$how
	new=$(worker)
	[ "$new" != "$old" ] || fail "$how: the same worker"

	rd 5 65536 >"$T/first" 2>"$T/err" ||
		fail "$how: the first read of a status opened before: $(cat "$T/err")"
	grep -qx "pid=$new" "$T/first" ||
		fail "$how: the first read is not the new worker's status: $(cat "$T/first")"
	[ "$(rd 5 65536 | wc -c)" = 0 ] || fail "$how: no end of file after the fresh status"
	rd 6 65536 >"$T/metrics" 2>"$T/err" ||
		fail "$how: the first read of metrics opened before: $(cat "$T/err")"
	grep -q "^colofs_" "$T/metrics" || fail "$how: metrics: $(head -3 "$T/metrics")"
	ok "$how: status and metrics opened under $old, read under $new: the new worker's text"

	n=$(rd 7 65536 2>"$T/err" | wc -c) ||
		fail "$how: the end-of-file read of a status read before: $(cat "$T/err")"
	[ "$n" = 0 ] || fail "$how: $n bytes after the end of a status read whole"
	ok "$how: a status read whole under $old ends under $new (no ESTALE)"

	if rd 8 65536 >/dev/null 2>"$T/err"; then
		fail "$how: the rest of a status read in part came from another text"
	fi
	grep -q "Stale file handle" "$T/err" || fail "$how: a status read in part: $(cat "$T/err")"
	ok "$how: a status read in part under $old: the rest is ESTALE under $new"
	exec 5<&- 6<&- 7<&- 8<&-
done
expect_status disk_files_open 0

# The tool that polls the status across a restart.
out=$("$COLOFS_BUILD/colofsctl" -m "$MNT" restart) || fail "colofsctl restart"
ok "colofsctl restart: $out"
stop_colofs
assert_not_mounted
