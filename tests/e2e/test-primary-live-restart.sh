#!/usr/bin/env bash
# Live restart of a primary (mode = primary, colofs --holder): the VM
# writes through one open fd to the primary's disk file while the worker
# is killed with SIGKILL in state replicating.  No write fails and every
# block reads back as written.  What the restarted primary knows is what
# a restarted primary always knew: state none and the whole disk dirty
# (doc/primary.md); "start" resyncs, and then the secondary's view equals
# the primary's file.  A planned restart (ctl) in none keeps the fd too.
. "$(dirname "$0")/lib.sh"
. "$(dirname "$0")/pair.sh"
. "$(dirname "$0")/live.sh"
"$COLOFS_BIN" --help | grep -q -- --holder || fail "colofs has no --holder"

SIZE=16M
make_image "$T/s.img" "$SIZE"
make_image "$T/p.img" "$SIZE"
pair_configs
start_secondary
# -f: the holder stays in the foreground, and the workers log to p.log.
env --default-signal=INT,QUIT "$COLOFS_BIN" -c "$T/p.ini" --holder -f \
	2>>"$T/p.log" &
at_exit 'for p in $(pgrep -f -- "[c]olofs -c $T/p.ini"); do kill -9 $p; done'
at_exit "grep -E 'error|warning' $T/p.log | tail -n 20 >&2"
wait_for 60 mountpoint -q "$PMNT" || fail "the primary did not mount: $(cat "$T/p.log")"
LIVE_MNT=$PMNT

pctl start
wait_pstate replicating
run_io write 2
st=$(pget state)
[ "$st" = none ] || fail "after kill -9 in replicating: state $st, want none"
ok "the restarted primary is in none (its bitmap all dirty), as after any crash"

old=$(worker)
pctl restart
wait_for 60 sh -c "p=\$(sed -n 's/^pid=//p' '$PMNT/.colo/status') &&
	[ -n \"\$p\" ] && [ \"\$p\" != $old ]" || fail "ctl restart: same worker"
ok "planned restart of the primary: $old -> $(worker) in $(pget last_restart_ms) ms"

pctl start
wait_pstate replicating 120
same_disks "after the restarts and a resync"
fusermount3 -u "$PMNT"
wait_for 60 sh -c "! pgrep -f '[c]olofs -c $T/p.ini'" || fail "the primary did not stop"
ok "the primary stops cleanly"
