#!/usr/bin/env bash
# The Pacemaker agent (tools/colofs.ocf) against a real colofs, outside a
# cluster: Debian's ocf-tester passes on it (secondary only, and with a
# primary_config toward a live peer secondary); then each action by hand:
# monitor's distinct codes (7 stopped, 0 unpromoted, 8 promoted, 1 dead),
# promote = failover then protect in place toward the peer (the peer's
# view equals what the VM wrote through the promoted mount), demote back to
# a secondary, promote with the disk open (in place all the same: the VM's
# open file writes through the new primary; the second promote is
# incremental: the peer comes back in the generation this side failed over
# from), promote with the peer away and
# the post-start notification, a hung and a dead daemon, validate-all's
# refusals.
. "$(dirname "$0")/lib.sh"
. "$(dirname "$0")/pair.sh"

ROOT=$(cd "$(dirname "$0")/../.." && pwd)
command -v ocf-tester >/dev/null || skip "ocf-tester is not installed (make deps: resource-agents)"
command -v xmllint >/dev/null || skip "xmllint is not installed (make deps: libxml2-utils)"

# ocf-tester runs meta-data as nobody: the agent and its dirs must be
# readable by all.
chmod 0755 "$T"
AGENT=$T/ocf/colofs
install -D -m 0755 "$ROOT/tools/colofs.ocf" "$AGENT"
export OCF_ROOT=/usr/lib/ocf
INST=colofs-test-$$

# The peer: pair.sh's secondary (s.ini, on TCP, mounted on $SMNT).  This
# node: pair.sh's primary config (p.ini: $PMNT, p.img, secondary = the
# peer) and a secondary config over the same mountpoint and image.
pair_tcp
pair_configs
make_image "$T/s.img" 8M
make_image "$T/p.img" 8M
cat >"$T/local.ini" <<EOC
[colofs]
mountpoint = $PMNT
listen = unix:$T/local.sock
state_dir = $T/state

[disk "vda"]
image = $T/p.img
EOC
MNT=$PMNT	# for status_get and friends
start_secondary

tester() {
	ocf-tester -n "$INST" -o binary="$COLOFS_BIN" "$@" "$AGENT" >"$T/tester.log" 2>&1 || {
		cat "$T/tester.log" >&2
		fail "ocf-tester $*"
	}
	grep -q "passed all tests" "$T/tester.log" || fail "ocf-tester: $(tail -n 3 "$T/tester.log")"
}
tester -o config="$T/local.ini"
ok "ocf-tester passes: secondary config only"
tester -o config="$T/local.ini" -o primary_config="$T/p.ini" -o disk=vda
ok "ocf-tester passes: with primary_config toward a live peer"

# ---- the actions one by one ----
ra() {
	local rc=0
	env OCF_RESOURCE_INSTANCE="$INST" OCF_RESKEY_binary="$COLOFS_BIN" \
		OCF_RESKEY_config="$T/local.ini" OCF_RESKEY_primary_config="$T/p.ini" \
		OCF_RESKEY_peer="$SURI" OCF_RESKEY_disk=vda \
		OCF_RESKEY_CRM_meta_interval="${INTERVAL:-10000}" \
		OCF_RESKEY_CRM_meta_timeout=60000 ${RA_ENV:-} "$AGENT" "$1" >>"$T/ra.log" 2>&1 || rc=$?
	echo "$rc"
}
expect_ra() {
	local got
	got=$(ra "$1")
	[ "$got" = "$2" ] || {
		tail -n 20 "$T/ra.log" >&2
		fail "$1: exit $got, want $2"
	}
}
peer_get() { sed -n "s/^$1=//p" "$SMNT/.colo/status"; }

expect_ra monitor 7
INTERVAL=0 expect_ra monitor 7
export COLOFS_TEST_ESTALE_ONCE=$T/estale	# for the colofs start makes
expect_ra start 0
expect_ra monitor 0
expect_status mode secondary
expect_status state none
ok "start: a secondary in none; monitor 0"
# A status read that meets ESTALE (a live restart between the open and a
# read) is read again: the monitor does not report a failure.
: >"$T/estale"
expect_ra monitor 0
[ ! -e "$T/estale" ] || fail "the ESTALE hook was not reached"
ok "monitor: a status read that meets ESTALE is read again"

# Promote: failover (S committed), then the primary toward the peer.
expect_ra promote 0
expect_ra monitor 8
expect_status mode primary
# The full sync the promotion asked for; monitor reconnects if it failed.
replicating() {
	[ "$(status_get state)" = replicating ] && return 0
	ra monitor >/dev/null
	return 1
}
wait_for 60 replicating ||
	fail "the promoted primary does not replicate: $(status_get state), $(status_get error)"
ok "promote: a primary in $(status_get state), monitor 8"

# The VM writes through the promoted mount; the peer has it.
pattern 1M 5a | dd of="$MNT/vda" bs=1M seek=2 conv=notrunc,fsync status=none
[ "$(dd if="$MNT/vda" bs=1M status=none | sha256sum)" = \
	"$(dd if="$SMNT/vda" bs=1M status=none | sha256sum)" ] ||
	fail "the peer's view differs from the promoted disk"
expect_bytes "$SMNT/vda" $((2 << 20)) $((1 << 20)) 5a
ok "the peer's view equals the promoted disk after a VM write"

expect_ra promote 0
expect_ra demote 0
expect_ra monitor 0
expect_status mode secondary
expect_status state none
expect_bytes "$MNT/vda" $((2 << 20)) $((1 << 20)) 5a
expect_ra demote 0
ok "demote: a secondary again (data kept), a second demote is a no-op"

# A COLO secondary VM has the disk open: promote protects in place all the
# same, and the VM's open file writes through the new primary to the peer.
# The peer (the first promote's secondary, demoted in between) is in the
# generation this side failed over from: only the granules written since.
exec 9<>"$MNT/vda"
expect_ra promote 0
expect_ra monitor 8
expect_status mode primary
wait_for 60 replicating ||
	fail "the promoted primary does not replicate: $(status_get state), $(status_get error)"
[ "$(status_get sync_total_bytes)" = 0 ] ||
	fail "the second promote copied $(status_get sync_total_bytes) bytes, want 0 (incremental)"
pattern 64K 9e | dd of=/dev/fd/9 bs=64K seek=1 conv=notrunc,fsync status=none
exec 9>&-
expect_bytes "$MNT/vda" $((64 << 10)) $((64 << 10)) 9e
expect_bytes "$SMNT/vda" $((64 << 10)) $((64 << 10)) 9e
expect_ra demote 0
expect_ra monitor 0
expect_bytes "$MNT/vda" $((64 << 10)) $((64 << 10)) 9e
ok "promote with the disk open: protected in place, the VM's open file writes through it"

# Promoted while the peer is away: the primary runs alone; the peer's
# post-start notification reconnects it at once (resync returns syncing).
fusermount3 -u "$SMNT"
wait_exit "$SEC_PID"
expect_ra promote 0
expect_status mode primary
expect_status state none
expect_ra monitor 8
expect_status state none
start_secondary
RA_ENV="OCF_RESKEY_CRM_meta_notify_type=post OCF_RESKEY_CRM_meta_notify_operation=start" \
	expect_ra notify 0
case $(status_get state) in
syncing | replicating) ;;
*) fail "after the post-start notification the primary is $(status_get state)" ;;
esac
wait_for 60 replicating || fail "the primary does not replicate after the peer came back"
expect_ra demote 0
ok "promoted alone, then the peer's post-start notification resyncs it"

# A hung daemon (SIGSTOP): monitor says failed (1) once status_timeout
# has passed, instead of hanging on the FUSE read.
pid=$(pgrep -f -- "^[^ ]*colofs -c $T/local.ini( |\$)")
[ -n "$pid" ] || fail "no colofs -c $T/local.ini process"
at_exit "kill -CONT $pid"
kill -STOP $pid
RA_ENV="OCF_RESKEY_status_timeout=2" expect_ra monitor 1
kill -CONT $pid
expect_ra monitor 0
ok "a hung mount: monitor 1 after status_timeout; 0 again once it answers"

# A dead daemon: monitor says failed (1), stop cleans up.
kill -9 $pid
wait_for 20 sh -c "! kill -0 $pid"
expect_ra monitor 1
expect_ra stop 0
expect_ra monitor 7
assert_not_mounted
expect_ra stop 0
ok "kill -9: monitor 1; stop unmounts, a second stop is 0"

# validate-all: a missing config, a primary config as `config`, a
# primary_config on another mountpoint, no colofs binary.
expect_ra validate-all 0
RA_ENV="OCF_RESKEY_config=$T/nope.ini" expect_ra validate-all 6
RA_ENV="OCF_RESKEY_config=$T/p.ini" expect_ra validate-all 6
sed "s|^mountpoint = .*|mountpoint = $SMNT|" "$T/p.ini" >"$T/p2.ini"
RA_ENV="OCF_RESKEY_primary_config=$T/p2.ini" expect_ra validate-all 6
RA_ENV="OCF_RESKEY_binary=$T/no-colofs" expect_ra validate-all 5
RA_ENV="OCF_RESKEY_CRM_meta_clone_max=2 OCF_RESKEY_CRM_meta_promotable=true" expect_ra validate-all 6
RA_ENV="OCF_RESKEY_CRM_meta_clone_max=2 OCF_RESKEY_CRM_meta_promotable=true OCF_RESKEY_CRM_meta_notify=true" \
	expect_ra validate-all 0
expect_ra frobnicate 3
ok "validate-all: 6 for bad configs and clone meta, 5 without colofs; unknown action 3"
