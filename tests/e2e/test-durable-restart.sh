#!/usr/bin/env bash
# The state file across restarts: none stays none; running comes back none
# and says why; done stays done (GO and primary writes refused) however
# often colofs restarts, until --demote; a state file colofs cannot read
# stops it from starting; an interrupted failover without journals comes
# back done and says S may be mixed.
. "$(dirname "$0")/lib.sh"

make_image "$T/vda.img" 4M 00
write_config
state_file() { ls "$T"/state/*.state; }
gen() { status_get generation; }

start_colofs
expect_status state none
expect_status restarted_from new
[ "$(sed -n 's/^state=//p' "$(state_file)")" = none ] || fail "state file: $(cat "$(state_file)")"
g1=$(gen)
[ ${#g1} = 32 ] || fail "generation '$g1'"
stop_colofs
start_colofs
expect_status state none
expect_status restarted_from none
[ "$(gen)" != "$g1" ] || fail "the generation did not change at start"
ok "none comes back none, with a new generation"

# running, then a clean stop: the VM's buffers are gone, S is intact.
ctl start
nbd_write 0 65536 ab
view_write 65536 4096 cd
stop_colofs
start_colofs
expect_status state none
expect_status restarted_from running
grep -q "buffers are gone" "$MNT/.colo/error" || fail "error: $(cat "$MNT/.colo/error")"
grep -q "^error=restarted after" "$MNT/.colo/status" || fail "status has no error"
expect_bytes "$MNT/vda" 0 65536 ab
expect_bytes "$MNT/vda" 65536 4096 00
ok "running comes back none, S intact, .colo/error says why"

# S may be behind the primary now (it may have written on without this
# secondary): start is refused until a primary has connected.
expect_status s_consistent 0
expect_ctl start EAGAIN
grep -q "start force" "$MNT/.colo/error" || fail "error: $(cat "$MNT/.colo/error")"
grep -q "s_consistent=0" "$MNT/.colo/error" || fail "error: $(cat "$MNT/.colo/error")"
stop_colofs
start_colofs
expect_status s_consistent 0	# remembered across a restart
nbdinfo "$(nbd_uri)" >/dev/null		# any client: nothing changes
expect_status s_consistent 0
nbdinfo "$(primary_uri)" >/dev/null	# a primary with this generation
expect_status s_consistent 1
stop_colofs
start_colofs
expect_status s_consistent 1	# and that is remembered too
ok "after a stop in running: s_consistent=0 and start refused until a primary with this disk's generation connects"

# The same after kill -9 in running.
ctl start
nbd_write 131072 4096 ef
kill -KILL "$(colofs_pid)"
wait_for 10 sh -c "! pgrep -f '[c]olofs -c $T/colofs.ini'" || fail "kill -9"
fusermount3 -u "$MNT"
start_colofs
expect_status state none
expect_status restarted_from running
expect_bytes "$MNT/vda" 131072 4096 ef
expect_status s_consistent 0
ok "running comes back none after kill -9 too"

# start force starts anyway (here through colofsctl start --force).
rc=0; "$COLOFS_BUILD/colofsctl" -m "$MNT" start 2>"$T/err" || rc=$?
[ "$rc" = 1 ] && grep -q "start force" "$T/err" ||
	fail "colofsctl start: exit $rc: $(cat "$T/err")"
"$COLOFS_BUILD/colofsctl" -m "$MNT" start --force || fail "colofsctl start --force"
expect_status state running
expect_status s_consistent 1
ok "start force starts with s_consistent=0"

# done: fenced across restarts.
ctl stop
expect_status state done
for i in 1 2 3; do
	g=$(gen)
	stop_colofs
	start_colofs
	expect_status state done
	expect_status restarted_from done
	[ "$(gen)" != "$g" ] || fail "the generation did not change"
	nbdinfo "$(nbd_uri)" >/dev/null 2>"$T/err" && fail "restart $i: NBD GO accepted in done"
	nbdsh_c "$(nbd_uri)" 'h.pwrite(b"OLDPRIMARY", 0)' 2>/dev/null &&
		fail "restart $i: the old primary wrote"
	expect_bytes "$T/vda.img" 0 65536 ab
	expect_ctl start EBUSY		# a promoted secondary refuses start
	expect_status state done
done
ok "done survives 3 restarts: GO and the old primary's writes refused"

# The way out: --demote.
stop_colofs
start_colofs --demote
expect_status state none
grep -q "demoted" "$MNT/.colo/error" || fail "no note of the demotion"
nbd_write 0 4096 77
expect_bytes "$T/vda.img" 0 4096 77
stop_colofs
start_colofs
expect_status state none
ok "--demote leaves done for none, and it lasts"
stop_colofs

# A state file colofs cannot read: no start, a message, nothing mounted.
sf=$(state_file)
echo "state=running" >"$sf"
rc=0; "$COLOFS_BIN" -c "$T/colofs.ini" 2>"$T/err" || rc=$?
[ "$rc" = 1 ] || fail "a bad state file: exit $rc"
grep -qF "state file $sf: does not begin" "$T/err" || fail "message: $(cat "$T/err")"
assert_not_mounted
ok "a state file it cannot read stops colofs: $(head -1 "$T/err")"

# An interrupted failover without journals (memory buffers, no buffer_dir).
printf 'colofs-state 1\nstate=failover\ngeneration=%032d\njournaled=0\n' 0 >"$sf"
start_colofs
expect_status state done
grep -q "may mix" "$MNT/.colo/error" || fail "error: $(cat "$MNT/.colo/error")"
expect_status failover_crash_safe no
stop_colofs
ok "an interrupted failover without journals comes back done, saying S may be mixed"

# One with journals that are gone: no start.
printf 'colofs-state 1\nstate=failover\ngeneration=%032d\njournaled=1\n' 0 >"$sf"
mkdir -p "$T/buf"
EXTRA_CONFIG="buffer_dir = $T/buf" write_config
rc=0; "$COLOFS_BIN" -c "$T/colofs.ini" 2>"$T/err" || rc=$?
[ "$rc" = 1 ] || fail "journals missing: exit $rc"
grep -q "cannot be finished: journal .*vda.journal: No such file" "$T/err" || fail "message: $(cat "$T/err")"
assert_not_mounted
ok "a failover whose journals are gone stops colofs: $(tail -1 "$T/err")"
