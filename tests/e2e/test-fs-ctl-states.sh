#!/usr/bin/env bash
# Every ctl word in every state the daemon can reach: none, running, done
# after stop, failover/done after failover, plus unknown and empty words
# and trailing blanks.  A word with nothing to do in the state fails with
# EBUSY and says why in .colo/error; none is a silent no-op.  After the
# failover, the old primary's connections are refused, counted in
# nbd.refused and logged.  (failover_failed needs an I/O error in the
# commit, which only the core's unit tests can inject.)
. "$(dirname "$0")/lib.sh"

make_image "$T/vda.img" 16M
write_config

# Words that take effect return once they have: status shows the new state.
start_colofs
expect_status state none
for w in checkpoint stop failover bogus ''; do
	expect_ctl "$w" EINVAL
done
grep -q "unknown command 'bogus'" <(ctl_try "bogus"; cat "$MNT/.colo/error") ||
	fail ".colo/error does not name the unknown word"
expect_status state none
ok "none: checkpoint, stop, failover, unknown and empty words refused"

[ "$(ctl_try $'start  \n\n')" = ok ] || fail "start with trailing blanks"
expect_status state running
expect_ctl start EBUSY
expect_ctl bogus EINVAL
[ "$(ctl_try $' checkpoint\t\n')" = ok ] || fail "checkpoint with blanks"
expect_status checkpoints 1
expect_ctl checkpoint ok
expect_status checkpoints 2
expect_status state running
ok "running: start EBUSY, checkpoint twice"

# The shell's echo fails with the errno; the reason is one cat away.
: >"$MNT/.colo/error"
if echo start 2>"$T/echo.err" >"$MNT/.colo/ctl"; then
	fail "echo start succeeded while running"
fi
grep -q "busy" "$T/echo.err" || fail "echo's error: $(cat "$T/echo.err")"
grep -q . "$MNT/.colo/error" || fail ".colo/error empty after echo start"
ok "echo start fails with EBUSY, message in .colo/error"

expect_ctl failover ok
wait_state done
for w in start checkpoint stop failover; do
	expect_ctl "$w" EBUSY
	grep -q "^$w: this disk is promoted (state done" "$MNT/.colo/error" ||
		fail "$w in done: .colo/error says: $(cat "$MNT/.colo/error")"
	expect_status state done
done
expect_ctl bogus EINVAL
# colofsctl start fails the same way.
COLOFSCTL=$(dirname "$COLOFS_BIN")/colofsctl
if "$COLOFSCTL" -m "$MNT" start 2>"$T/ctl.err"; then
	fail "colofsctl start succeeded in done"
fi
grep -q "promoted" "$T/ctl.err" || fail "colofsctl start in done: $(cat "$T/ctl.err")"
ok "after failover: every word fails with EBUSY in done: $(cat "$MNT/.colo/error")"
stop_colofs

# A second daemon for the stop path.  Each daemon below gets a new
# state_dir: the last one left done, which a restart keeps (the fence).
rm -rf "$T/state"
start_colofs
expect_ctl start ok
expect_ctl stop ok
expect_status state done
for w in start checkpoint stop failover; do
	expect_ctl "$w" EBUSY
	expect_status state done
done
ok "after stop: every word fails with EBUSY in done"
stop_colofs

# Failover straight after start (nothing buffered) also reaches done.
rm -rf "$T/state"
start_colofs
expect_ctl start ok
expect_ctl failover ok
wait_state done
ok "failover with empty buffers"
stop_colofs

# Words while the commit runs: 192 MiB buffered so that the commit takes a
# moment.  Every word fails with EBUSY in failover (and in done, if the
# commit was quicker than us); the view must not change.
make_image "$T/vda.img" 256M
rm -rf "$T/state"
start_colofs
expect_ctl start ok
head -c 192M /dev/urandom >"$T/data"
dd if="$T/data" of="$MNT/vda" bs=1M conv=notrunc status=none
expect_ctl failover ok
seen=""
for w in checkpoint stop start failover checkpoint stop; do
	st=$(status_get state)
	case $st in failover|done) ;; *) fail "state $st during failover" ;; esac
	seen="$seen $st"
	[ "$(ctl_try "$w")" = EBUSY ] || fail "$w not refused in state $st"
done
wait_state done
cmp <(head -c 192M "$MNT/vda") "$T/data" || fail "the view changed"
cmp <(head -c 192M "$T/vda.img") "$T/data" || fail "the commit is incomplete"
ok "during failover every word fails with EBUSY (states seen:$seen)"
stop_colofs

# The fence: after failover, the old primary is refused, counted, logged.
# A new state_dir: the last run left done, which a restart keeps.
rm -rf "$T/state" "$T/vda.img"
make_image "$T/vda.img" 16M
start_colofs_fg
expect_ctl start ok
nbd_write 0 4096 aa
expect_ctl checkpoint ok
expect_ctl failover ok
wait_state done
before=$(status_get nbd.refused)
for i in 1 2; do
	if nbd_write 0 4096 bb 2>"$T/nbd.err"; then
		fail "the old primary wrote after the failover"
	fi
done
expect_status nbd.refused $((before + 2))
expect_bytes "$MNT/vda" 0 4096 aa
expect_bytes "$T/vda.img" 0 4096 aa
grep -q "refusing a connection.*failover" "$T/colofs.log" ||
	fail "no log line for the refused primary: $(tail -n 5 "$T/colofs.log")"
ok "after failover: 2 connections refused, nbd.refused=$(status_get nbd.refused), logged: $(grep -m1 'refusing a connection' "$T/colofs.log")"
