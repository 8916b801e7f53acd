#!/usr/bin/env bash
# Only colofs dies on the promoted node of a real two-node cluster
# (tests/e2e/pcmk.sh), the node stays up: kill -9 leaves a dead mount,
# monitor fails, and with migration-threshold=1 the cluster moves the
# promoted role to the other node, whose disk is the VM's; after a
# cleanup the node rejoins unpromoted and is resynced.
. "$(dirname "$0")/../lib.sh"
. "$(dirname "$0")/../pcmk.sh"

pcmk_promoted_pair 16M
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
