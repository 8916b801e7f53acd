#!/usr/bin/env bash
# Every ctl word in every state the daemon can reach: none, running, done
# after stop, failover/done after failover, plus unknown and empty words
# and trailing blanks.  (failover_failed needs an I/O error in the commit,
# which only the core's unit tests can inject.)
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
	expect_ctl "$w" ok
	expect_status state done
done
expect_ctl bogus EINVAL
ok "after failover: every word is a no-op in done"
stop_colofs

# A second daemon for the stop path.
start_colofs
expect_ctl start ok
expect_ctl stop ok
expect_status state done
for w in start checkpoint stop failover; do
	expect_ctl "$w" ok
	expect_status state done
done
ok "after stop: every word is a no-op in done"
stop_colofs

# Failover straight after start (nothing buffered) also reaches done.
start_colofs
expect_ctl start ok
expect_ctl failover ok
wait_state done
ok "failover with empty buffers"
stop_colofs

# Words while the commit runs: 192 MiB buffered so that the commit takes a
# moment.  Every word is a no-op in failover (and in done, if the commit
# was quicker than us); the view must not change.
make_image "$T/vda.img" 256M
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
	[ "$(ctl_try "$w")" = ok ] || fail "$w refused in state $st"
done
wait_state done
cmp <(head -c 192M "$MNT/vda") "$T/data" || fail "the view changed"
cmp <(head -c 192M "$T/vda.img") "$T/data" || fail "the commit is incomplete"
ok "during failover every word is a no-op (states seen:$seen)"
