#!/usr/bin/env bash
# The whole HA cycle driven by a real Pacemaker + Corosync cluster (two
# nodes in namespaces, tests/e2e/pcmk.sh) running ocf:colofs:colofs as a
# promotable clone over a colofs pair, configured by etc/colofs-pacemaker.xml:
#   1. the cluster promotes one node (P): its colofs fails over, restarts
#      as a primary and full-syncs the other (U), which stays unpromoted;
#   2. the "VM" writes on P; P dies (its whole node, colofs included);
#   3. the cluster promotes U, whose disk equals what the VM wrote;
#   4. P comes back: it starts as a secondary, is not promoted (outdated),
#      and U's primary resyncs it: P's S equals U's disk;
#   5. the VM writes on U; U dies; the cluster promotes P again, with
#      every write of both epochs.
# PCMK_FAILBACK=0 stops after 3 (tests/e2e/test-ops-pacemaker.sh, make check).
. "$(dirname "$0")/../lib.sh"
. "$(dirname "$0")/../pcmk.sh"

SIZE=16M
pcmk_setup

for n in a b; do
	peer=b
	[ $n = b ] && peer=a
	mkdir -p "$T/node-$n/state"
	make_image "$T/node-$n/vda.img" $SIZE
	cat >"$T/node-$n/etc-colofs/vm.ini" <<EOC
[colofs]
mountpoint = $MNT
listen = ${PCMK_ADDR[$n]}:10809
tls = off
state_dir = $T/node-$n/state

[disk "vda"]
image = $T/node-$n/vda.img
EOC
	cat >"$T/node-$n/etc-colofs/vm-primary.ini" <<EOC
[colofs]
mountpoint = $MNT
mode = primary
state_dir = $T/node-$n/state
secondary_timeout = 5s

[disk "vda"]
image = $T/node-$n/vda.img
secondary = nbd://${PCMK_ADDR[$peer]}:10809/vda
EOC
done

pcmk_node_start a
pcmk_node_start b
pcmk_wait_online a a b
ok "a two-node cluster is up (quorate, both online)"

on a crm_attribute -t crm_config -n stonith-enabled -v false
on a crm_attribute -t crm_config -n no-quorum-policy -v ignore
# etc/colofs-pacemaker.xml, with this test's paths and binary.
sed -e "s|/etc/colofs/vm1.ini|$T/etc-colofs/vm.ini|" \
	-e "s|/etc/colofs/vm1-primary.ini|$T/etc-colofs/vm-primary.ini|" \
	-e "s|^\\( *\\)</instance_attributes>|\\1  <nvpair id=\"colofs-binary\" name=\"binary\" value=\"$COLOFS_BIN\"/>\\n&|" \
	"$PCMK_ROOT/etc/colofs-pacemaker.xml" >"$T/colofs-pacemaker.xml"
grep -q "value=\"$COLOFS_BIN\"" "$T/colofs-pacemaker.xml" || fail "the sample's edit"
on a cibadmin -C -o resources -x "$T/colofs-pacemaker.xml" || fail "cibadmin -C etc/colofs-pacemaker.xml"
on a crm_verify -L || fail "crm_verify -L"

# promoted_on X: node X runs the promoted instance, by X's own view.
promoted_on() { [ "$(pcmk_role "$1" colofs)" = Promoted ]; }
unpromoted_on() { [ "$(pcmk_role "$1" colofs)" = Unpromoted ]; }
either_promoted() { promoted_on a || promoted_on b; }
wait_for 240 either_promoted || fail "the cluster promoted no node: $(pcmk_xml a)"
P=a U=b
promoted_on a || { P=b U=a; }
wait_for 120 unpromoted_on "$U" || fail "node-$U is not unpromoted: $(pcmk_role "$U" colofs)"
ok "the cluster promoted node-$P, node-$U is unpromoted"

# on_status X KEY: a key of node X's colofs status.
on_status() { on "$1" sed -n "s/^$2=//p" "$MNT/.colo/status"; }
state_is() { [ "$(on_status "$1" state)" = "$2" ]; }
# outdated X: the attribute that keeps node X from being promoted.
outdated() { [ "$(on "$1" crm_attribute -N "node-$2" -n colofs-outdated -l forever -G -q 2>/dev/null)" = 1 ]; }
in_sync() { state_is "$1" replicating && ! outdated "$1" "$2"; }

wait_for 120 in_sync "$P" "$U" ||
	fail "node-$P: $(on_status "$P" mode) $(on_status "$P" state), node-$U outdated: $(outdated "$P" "$U" && echo yes)"
[ "$(on_status "$P" mode)" = primary ] || fail "node-$P's colofs is not a primary"
[ "$(on_status "$U" mode)" = secondary ] || fail "node-$U's colofs is not a secondary"
ok "node-$P's primary replicates to node-$U, which is no longer outdated"

# The VM writes on the promoted node (fsync: acknowledged by both sides).
make_image "$T/expect.img" $SIZE
vm_write() {	# NODE OFFSET LENGTH BYTE
	pattern "$3" "$4" >"$T/chunk"
	on "$1" dd if="$T/chunk" of="$MNT/vda" bs=64K seek="$2" oflag=seek_bytes conv=notrunc,fsync status=none ||
		fail "the VM's write on node-$1"
	dd if="$T/chunk" of="$T/expect.img" bs=64K seek="$2" oflag=seek_bytes conv=notrunc status=none
}
vm_write "$P" $((2 << 20)) $((1 << 20)) 5a
vm_write "$P" $((9 << 20)) $((512 << 10)) c3
disk_sum() { on "$1" dd if="$2" bs=1M status=none | sha256sum | cut -d' ' -f1; }
want=$(sha256sum <"$T/expect.img" | cut -d' ' -f1)
[ "$(disk_sum "$P" "$MNT/vda")" = "$want" ] || fail "node-$P's disk is not what the VM wrote"

pcmk_node_kill "$P"
ok "node-$P killed (its corosync, pacemaker and colofs)"
wait_for 180 promoted_on "$U" || fail "node-$U was not promoted after node-$P died: $(pcmk_role "$U" colofs)"
ok "the cluster promoted node-$U"
[ "$(on_status "$U" mode)" = primary ] || fail "node-$U's colofs is not a primary"
[ "$(disk_sum "$U" "$MNT/vda")" = "$want" ] || fail "node-$U's disk differs from what the VM wrote on node-$P"
outdated "$U" "$P" || fail "node-$P is not outdated while node-$U runs without it"
ok "node-$U's disk is the VM's (every acknowledged write); node-$P is outdated"
[ "${PCMK_FAILBACK:-1}" = 0 ] && exit 0

# Fail back.  node-P returns: a secondary, resynced by node-U's primary.
pcmk_node_start "$P"
pcmk_wait_online "$U" a b
wait_for 120 unpromoted_on "$P" || fail "node-$P is $(pcmk_role "$P" colofs), want Unpromoted"
wait_for 180 in_sync "$U" "$P" || fail "node-$U does not replicate to node-$P: $(on_status "$U" state)"
vm_write "$U" $((4 << 20)) $((2 << 20)) 77
want=$(sha256sum <"$T/expect.img" | cut -d' ' -f1)
[ "$(disk_sum "$U" "$MNT/vda")" = "$want" ] || fail "node-$U's disk"
[ "$(disk_sum "$P" "$MNT/vda")" = "$want" ] || fail "node-$P's view after the resync"
ok "node-$P came back unpromoted; node-$U resynced it and replicates"

pcmk_node_kill "$U"
wait_for 180 promoted_on "$P" || fail "node-$P was not promoted after node-$U died"
[ "$(disk_sum "$P" "$MNT/vda")" = "$want" ] || fail "node-$P's disk after the second failover"
[ "$(sha256sum <"$T/node-$P/vda.img" | cut -d' ' -f1)" = "$want" ] || fail "node-$P's image"
ok "failed back: the cluster promoted node-$P, with the writes of both epochs"

# 6. Only colofs dies on the promoted node (kill -9: a dead mount), with
#    migration-threshold=1: monitor fails, the cluster moves the promoted
#    role to the other node; after a cleanup the node rejoins unpromoted.
pcmk_node_start "$U"
pcmk_wait_online "$P" a b
wait_for 120 unpromoted_on "$U" || fail "node-$U is $(pcmk_role "$U" colofs), want Unpromoted"
wait_for 180 in_sync "$P" "$U" || fail "node-$P does not replicate to node-$U: $(on_status "$P" state)"
on "$P" crm_resource -r colofs-clone --meta -p migration-threshold -v 1 >/dev/null ||
	fail "setting migration-threshold"
vm_write "$P" $((12 << 20)) $((1 << 20)) e1
want=$(sha256sum <"$T/expect.img" | cut -d' ' -f1)
pid=$(on "$P" pgrep -f -- "^[^ ]*colofs -c ")
[ -n "$pid" ] || fail "no colofs in node-$P"
on "$P" kill -9 $pid
ok "colofs killed on node-$P (the node stays up)"
wait_for 180 promoted_on "$U" || fail "node-$U was not promoted after colofs died on node-$P: $(pcmk_role "$U" colofs)"
[ "$(disk_sum "$U" "$MNT/vda")" = "$want" ] || fail "node-$U's disk after colofs died on node-$P"
ok "the cluster promoted node-$U, whose disk is the VM's"
on "$P" crm_resource --cleanup -r colofs-clone >/dev/null || fail "crm_resource --cleanup"
wait_for 120 unpromoted_on "$P" || fail "node-$P is $(pcmk_role "$P" colofs) after the cleanup"
wait_for 180 in_sync "$U" "$P" || fail "node-$U does not replicate to node-$P: $(on_status "$U" state)"
[ "$(disk_sum "$P" "$MNT/vda")" = "$want" ] || fail "node-$P's view after its resync"
ok "after a cleanup node-$P is unpromoted again and in sync"
