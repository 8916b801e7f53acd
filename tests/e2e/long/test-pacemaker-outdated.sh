#!/usr/bin/env bash
# A real two-node cluster (tests/e2e/pcmk.sh) never promotes stale data:
#   1. node P is promoted and replicates to U; U goes to standby, so P's
#      primary runs alone, marks U outdated, and the VM writes on P only;
#   2. P dies; U comes back from standby: it starts unpromoted and the
#      cluster settles without promoting it (no score: outdated), although
#      no node is promoted;
#   3. the operator accepts U's data (clears its mark): the cluster
#      promotes U, whose disk holds what the pair had in common.
. "$(dirname "$0")/../lib.sh"
. "$(dirname "$0")/../pcmk.sh"

pcmk_promoted_pair 16M

vm_write "$P" $((1 << 20)) $((1 << 20)) 3c
common=$(sha256sum <"$T/expect.img" | cut -d' ' -f1)
on "$P" crm_attribute -N "node-$U" -n standby -v on -l forever >/dev/null || fail "standby node-$U"
stopped_on() { [ -z "$(pcmk_role "$1" colofs)" ]; }
wait_for 120 stopped_on "$U" || fail "node-$U's instance did not stop in standby: $(pcmk_role "$U" colofs)"
wait_for 120 outdated "$P" "$U" || fail "node-$P's primary did not mark node-$U outdated"
ok "node-$U in standby: node-$P runs alone ($(on_status "$P" state)) and marked node-$U outdated"
vm_write "$P" $((6 << 20)) $((1 << 20)) a7

pcmk_node_kill "$P"
on "$U" crm_attribute -N "node-$U" -n standby -D -l forever >/dev/null || fail "standby off node-$U"
wait_for 180 unpromoted_on "$U" || fail "node-$U is $(pcmk_role "$U" colofs), want Unpromoted"
on "$U" crm_resource --wait --timeout=120s || fail "the cluster did not settle"
[ "$(pcmk_role "$U" colofs)" = Unpromoted ] || fail "node-$U, outdated, is $(pcmk_role "$U" colofs)"
[ -z "$(on "$U" crm_attribute -N "node-$U" --promotion=colofs -G -q 2>/dev/null)" ] ||
	fail "node-$U has a promotion score while outdated"
ok "node-$P died: outdated node-$U runs unpromoted, with no promotion score, and the cluster settled"

on "$U" crm_attribute -N "node-$U" -n colofs-outdated -l forever -D >/dev/null || fail "clearing the mark"
wait_for 180 promoted_on "$U" || fail "node-$U was not promoted once its mark was cleared"
[ "$(disk_sum "$U" "$MNT/vda")" = "$common" ] || fail "node-$U's disk is not the pair's common data"
ok "the operator cleared node-$U's mark: promoted, with the data the pair had in common"
