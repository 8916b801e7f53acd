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

pcmk_promoted_pair 16M

# The VM writes on the promoted node.
vm_write "$P" $((2 << 20)) $((1 << 20)) 5a
vm_write "$P" $((9 << 20)) $((512 << 10)) c3
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
