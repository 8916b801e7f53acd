#!/usr/bin/env bash
# A planned restart of the secondary (colofs --holder, "restart" on its
# ctl) while the pair replicates, once in none and three times in running: the secondary's worker hands its
# buffers to the next one, and the primary's link reconnects to it by
# itself and re-sends the commands that were unanswered (issue 19).  The
# primary never degrades, the VM's writes never fail, a checkpoint works
# after every restart, and at the end the secondary's view equals the
# primary's file (four O_DIRECT writers: several commands in flight).  A
# crash of the secondary's worker (kill -9) is not a planned restart: it
# comes back in none with another epoch, and the primary degrades as
# before, without resuming.
. "$(dirname "$0")/lib.sh"
. "$(dirname "$0")/pair.sh"
. "$(dirname "$0")/live.sh"
"$COLOFS_BIN" --help | grep -q -- --holder || fail "colofs has no --holder"

SIZE=16M
TIMEOUT=10s
make_image "$T/s.img" "$SIZE"
make_image "$T/p.img" "$SIZE"
pair_configs
mkdir -p "$T/bufs"
sed -i "s|^state_dir = $T/sstate|&\nbuffer_dir = $T/bufs|" "$T/s.ini"
grep -q '^buffer_dir' "$T/s.ini" || fail "no buffer_dir in s.ini"
env --default-signal=INT,QUIT "$COLOFS_BIN" -c "$T/s.ini" --holder -f \
	2>>"$T/s.log" &
at_exit 'for p in $(pgrep -f -- "[c]olofs -c $T/s.ini"); do kill -9 $p; done'
wait_for 60 mountpoint -q "$SMNT" || fail "the secondary did not mount: $(cat "$T/s.log")"
start_primary

spid() { sget pid; }
written() { pget vda.write_bytes; }
# writes_on: the writer wrote another MiB through the primary.
writes_on() {
	local w
	w=$(written)
	wait_for 60 sh -c "[ \$(sed -n 's/^vda.write_bytes=//p' $PMNT/.colo/status) -ge $((w + 1048576)) ]" ||
		fail "the writer made no progress ($1): $(cat "$T/dd.err")"
}
replicating() {
	[ "$(pget state)" = replicating ] ||
		fail "$1: the primary is $(pget state): $(pget degraded_reason)"
}

# restart: a planned restart of the secondary, and the next worker serving.
restart() { LIVE_MNT=$SMNT restart_worker; }

pctl start
wait_pstate replicating
pair_writer 4
at_exit "touch $T/stop"
writes_on "before the restarts"

# In none (the secondary VM not started yet): S has every answered write,
# and the epoch goes on too.
epoch=$(sget generation)
restart
[ "$(sget state)" = none ] || fail "restart in none: the secondary is $(sget state)"
[ "$(sget generation)" = "$epoch" ] || fail "restart in none: a new epoch"
writes_on "after the restart in none"
replicating "after the restart in none"
pctl checkpoint || fail "restart in none: the primary's checkpoint: $(cat "$PMNT/.colo/error")"
ok "restart of the secondary in none: the same epoch, replicating, checkpoint ok"

sctl start
[ "$(sget state)" = running ] || fail "the secondary is not running"
for k in 1 2 3; do
	old=$(spid)
	restart
	[ "$(sget state)" = running ] || fail "restart $k: the secondary is $(sget state)"
	writes_on "after restart $k"
	replicating "after restart $k"
	pctl checkpoint || fail "restart $k: the primary's checkpoint: $(cat "$PMNT/.colo/error")"
	sctl checkpoint || fail "restart $k: the secondary's checkpoint: $(cat "$SMNT/.colo/error")"
	ok "restart $k of the secondary ($old -> $(spid), $(sget last_restart_ms) ms): replicating, checkpoint ok"
done
touch "$T/stop"
for p in $DD; do
	wait "$p" || fail "a write on the primary failed: $(cat "$T/dd.err")"
done
replicating "after the writer"
grep -q "degraded:" "$T/p.log" && fail "the primary degraded: $(grep degraded: "$T/p.log")"
n=$(pget vda.link_reconnects)
[ "$n" -ge 4 ] || fail "vda.link_reconnects=$n, want at least 4"
grep -q "resumed on .* commands sent again" "$T/p.log" ||
	fail "the primary's log says nothing of resuming"
ok "no write failed, the primary never degraded, $n reconnects ($(grep -o '[0-9]* commands sent again' "$T/p.log" | tr '\n' ',' ))"
pctl checkpoint || fail "the last checkpoint: $(cat "$PMNT/.colo/error")"
sctl checkpoint || fail "the secondary's last checkpoint: $(cat "$SMNT/.colo/error")"
same_disks "after 4 planned restarts of the secondary and a checkpoint"

# A crash of the secondary's worker: the holder starts another, in none
# (its buffers are gone) and with another epoch: no resume.
old=$(spid)
kill -9 "$old"
wait_pstate degraded 60
[ "$(pget vda.link_reconnects)" = "$n" ] ||
	fail "the primary resumed with a crashed secondary (link_reconnects $(pget vda.link_reconnects))"
wait_for 60 sh -c "p=\$(sed -n 's/^pid=//p' '$SMNT/.colo/status') &&
	[ -n \"\$p\" ] && [ \"\$p\" != $old ]" || fail "no new secondary worker"
[ "$(sget state)" = none ] || fail "the crashed secondary came back in $(sget state)"
# The primary looked at it before NBD GO: it never said "a primary syncs
# you" (the generation at GO), so S stays taken to be behind.
[ "$(sget s_consistent)" = 0 ] ||
	fail "the crashed secondary has s_consistent=$(sget s_consistent)"
[ "$(pget state)" = degraded ] || fail "the primary is $(pget state) after the crash"
pctl checkpoint 2>/dev/null && fail "a checkpoint succeeded after the secondary crashed"
ok "kill -9 of the secondary's worker: degraded ($(pget degraded_reason)), not resumed"
