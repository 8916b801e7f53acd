#!/usr/bin/env bash
# A secondary's generation identifiers (core/gi.h) in its state file: a
# restart keeps them (also after kill -9 in running), a promotion (stop
# from running, failover) starts a new one with the old in its history,
# --demote keeps it, --demote --discard-local starts one without history,
# and the NBD export description carries the current one.
. "$(dirname "$0")/lib.sh"

make_image "$T/vda.img" 4M
write_config
start_colofs_fg
gi=$(status_get gi_current)
[[ "$gi" =~ ^[0-9a-f]{16}$ ]] && [ "$gi" != 0000000000000000 ] ||
	fail "no first generation: '$gi'"
grep -qx "gi_current=$gi" "$T"/state/*.state || fail "the state file lacks gi_current=$gi"
nbdinfo "$(nbd_uri)" | grep -q "colofs-gi v1 cur=$gi " ||
	fail "the export description lacks the generation"

# kill -9 while running: the restart is no promotion.
ctl start
kill -9 "$COLOFS_PID"
wait "$COLOFS_PID" 2>/dev/null || true
fusermount3 -u "$MNT" 2>/dev/null || umount -l "$MNT"
start_colofs_fg
[ "$(status_get gi_current)" = "$gi" ] ||
	fail "kill -9 in running changed the generation: $gi -> $(status_get gi_current)"
ok "a restart keeps generation $gi"

# stop from running: S = V, the VM writes S: a promotion.  (After the
# kill -9 in running S may be behind: start needs force.)
ctl "start force"
ctl stop
wait_state done
new=$(status_get gi_current)
[ "$new" != "$gi" ] || fail "stop from running kept the generation"
[ "$(status_get gi_history | cut -d, -f1)" = "$gi" ] ||
	fail "the old generation is not first in the history: $(status_get gi_history)"
ok "stop from running: generation $new after $gi"

restart() {
	fusermount3 -u "$MNT"
	wait_exit "$COLOFS_PID"
	start_colofs_fg "$@"
}
restart --demote
[ "$(status_get state)" = none ] || fail "--demote did not leave done"
[ "$(status_get gi_current)" = "$new" ] || fail "--demote changed the generation"
restart --demote --discard-local
[ "$(status_get gi_current)" != "$new" ] || fail "--discard-local kept the generation"
[ "$(status_get gi_history)" = 0000000000000000,0000000000000000,0000000000000000,0000000000000000 ] ||
	fail "--discard-local kept a history: $(status_get gi_history)"
ok "--demote keeps it, --discard-local starts one without history"

# failover: a promotion too.
cur=$(status_get gi_current)
ctl "start force"	# demoted: S may be behind until a primary resyncs
ctl failover
wait_state done
[ "$(status_get gi_current)" != "$cur" ] || fail "failover kept the generation"
[ "$(status_get gi_history | cut -d, -f1)" = "$cur" ] || fail "failover: history $(status_get gi_history)"
ok "failover: generation $(status_get gi_current) after $cur"
"$COLOFS_BIN" -c "$T/colofs.ini" --discard-local -f 2>/dev/null &&
	fail "--discard-local without --demote was accepted"
ok "--discard-local without --demote is refused"
