#!/usr/bin/env bash
# Without a syslog daemon (/dev/log missing or dead, as in most
# containers), a daemonized colofs logs to STATE_DIR/ESCAPED.log instead
# of to nowhere, and says so on its stderr before it detaches.  Where this machine has /dev/log, the test
# hides it in a mount namespace of its own (an empty file bound over it).
. "$(dirname "$0")/lib.sh"

make_image "$T/vda.img" 4M
write_config
cat >"$T/run.sh" <<EOS
set -e
if [ -S /dev/log ]; then
	: >"$T/nolog"
	mount --bind "$T/nolog" /dev/log
fi
"$COLOFS_BIN" -c "$T/colofs.ini" 2>"$T/daemon.log"
echo start >"$MNT/.colo/ctl"
echo checkpoint >"$MNT/.colo/ctl"
echo bogus >"$MNT/.colo/ctl" 2>/dev/null || true
fusermount3 -u "$MNT"
EOS
if [ -S /dev/log ]; then
	unshare -m --propagation private sh "$T/run.sh" || fail "the run failed"
else
	sh "$T/run.sh" || fail "the run failed"
fi
wait_for 30 sh -c "! pgrep -f '[c]olofs -c $T/colofs.ini'" || fail "colofs did not exit"
LOG=$T/state/$(systemd-escape --path "$MNT").log
grep -q "no syslog daemon on /dev/log" "$T/daemon.log" ||
	fail "no word about the missing syslog: $(cat "$T/daemon.log")"
grep -qF "logging to $LOG" "$T/daemon.log" ||
	fail "the daemon does not say where it logs: $(cat "$T/daemon.log")"
[ -f "$LOG" ] || fail "no $LOG"
# After ready: the start (the state file's update), the refused word and
# the clean stop, each with its time.
grep -q "^[0-9-]*T[0-9:]*Z colofs\[[0-9]*\]: state file .*: running" "$LOG" ||
	fail "the daemon's log after ready is lost: $(cat "$LOG")"
grep -q "stopped cleanly" "$LOG" || fail "no 'stopped cleanly': $(cat "$LOG")"
ok "without /dev/log the daemon logs to $LOG: $(grep -c . "$LOG") lines"
