# SPDX-License-Identifier: MIT
# A real Pacemaker + Corosync cluster of two nodes on this machine, without
# systemd: each node is a network, mount, UTS and PID namespace with its
# own tmpfs /run, /dev/shm, /var/lib/{pacemaker,corosync}, /var/log/pacemaker
# and /etc/corosync (libqb's IPC sockets are abstract, so per network
# namespace), and /usr/lib/ocf/resource.d bound to a copy that holds this
# tree's agent as ocf:colofs:colofs.  A veth pair links the two (knet).
# Killing a node's PID 1 kills everything in it, colofs and its mount
# included: a node that dies.  Source after lib.sh:
#   . "$(dirname "$0")/../lib.sh"; . "$(dirname "$0")/../pcmk.sh"
# pcmk_setup; pcmk_node_start a; pcmk_node_start b; pcmk_wait_online a a b
# or, for the colofs clone on both nodes: pcmk_promoted_pair SIZE.
# Each node has $T/node-X/ (logs; etc-colofs/, which the node sees as
# $T/etc-colofs: one config path, each node its own files).

PCMK_ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
PCMK_ID=$$
PCMK_NET=10.213.$((PCMK_ID % 200 + 20))
declare -A PCMK_PID PCMK_ADDR

pcmk_need() {
	[ "$(id -u)" = 0 ] || skip "needs root (namespaces, corosync, pacemaker)"
	local missing=
	command -v pacemakerd >/dev/null || missing="$missing pacemaker"
	command -v crm_mon >/dev/null || missing="$missing pacemaker-cli-utils"
	command -v corosync >/dev/null || missing="$missing corosync"
	[ -r /usr/lib/ocf/lib/heartbeat/ocf-shellfuncs ] || missing="$missing resource-agents"
	if [ -n "$missing" ]; then
		echo "installing:$missing"
		DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends \
			$missing >"$T/apt.log" 2>&1 ||
			skip "cannot install$missing (apt-get: $(tail -n 1 "$T/apt.log"))"
	fi
	unshare --net --mount --uts --pid --fork true 2>/dev/null ||
		skip "cannot create namespaces here (needs CAP_SYS_ADMIN)"
	getent passwd hacluster >/dev/null || skip "no hacluster user (pacemaker-common)"
}

# pcmk_setup: the netns pair, corosync.conf, the agent dir.
pcmk_setup() {
	pcmk_need
	chmod 0755 "$T"	# the daemons that run as hacluster log under it
	local n
	PCMK_ADDR[a]=$PCMK_NET.1
	PCMK_ADDR[b]=$PCMK_NET.2
	for n in a b; do
		ip netns add "colofs-$PCMK_ID-$n"
		at_exit "ip netns del colofs-$PCMK_ID-$n"
	done
	ip link add "cpk${PCMK_ID}a" type veth peer name "cpk${PCMK_ID}b"
	for n in a b; do
		ip link set "cpk$PCMK_ID$n" netns "colofs-$PCMK_ID-$n"
		ip -n "colofs-$PCMK_ID-$n" addr add "${PCMK_ADDR[$n]}/24" dev "cpk$PCMK_ID$n"
		ip -n "colofs-$PCMK_ID-$n" link set "cpk$PCMK_ID$n" up
		ip -n "colofs-$PCMK_ID-$n" link set lo up
		mkdir -p "$T/node-$n/etc-colofs" "$T/etc-colofs"
		# The daemons that run as hacluster log to node-X/log; the rest of node-X
		# stays root's (colofs refuses a state_dir another user could swap).
		mkdir -p "$T/node-$n/log"
		chown hacluster:haclient "$T/node-$n/log"
	done
	cat >"$T/corosync.conf" <<EOC
totem {
	version: 2
	cluster_name: colofs-test
	crypto_cipher: none
	crypto_hash: none
	token: 3000
}
logging {
	to_stderr: yes
	to_logfile: no
	to_syslog: no
	timestamp: on
}
quorum {
	provider: corosync_votequorum
	two_node: 1
}
nodelist {
	node {
		name: node-a
		nodeid: 1
		ring0_addr: ${PCMK_ADDR[a]}
	}
	node {
		name: node-b
		nodeid: 2
		ring0_addr: ${PCMK_ADDR[b]}
	}
}
EOC
	# The agents Pacemaker knows, plus this tree's.
	mkdir -p "$T/ocf"
	cp -a /usr/lib/ocf/resource.d "$T/ocf/"
	install -D -m 0755 "$PCMK_ROOT/tools/colofs.ocf" "$T/ocf/resource.d/colofs/colofs"
	# PID 1 of a node: private mounts, then corosync, then pacemakerd.
	cat >"$T/node-init" <<'EOI'
set -e
n=$1 T=$2
hostname "node-$n"
mount --make-rprivate /
for d in /run /var/lib/pacemaker /var/lib/corosync /var/log/pacemaker /etc/corosync; do
	mount -t tmpfs -o mode=0755 tmpfs "$d"
done
# libqb's shared-memory rings, created by daemons that run as hacluster.
mount -t tmpfs -o mode=1777 tmpfs /dev/shm
mkdir -p /run/crm
chown hacluster:haclient /var/lib/pacemaker /var/log/pacemaker /run/crm
chmod 0770 /var/lib/pacemaker /var/log/pacemaker
mount --bind "$T/ocf/resource.d" /usr/lib/ocf/resource.d
mount --bind "$T/node-$n/etc-colofs" "$T/etc-colofs"
cp "$T/corosync.conf" /etc/corosync/corosync.conf
corosync -f >>"$T/node-$n/corosync.log" 2>&1 &
for i in $(seq 600); do
	corosync-cfgtool -s >/dev/null 2>&1 && break
	sleep 0.1
done
export PCMK_logfile=$T/node-$n/log/pacemaker.log PCMK_logfacility=none
export PCMK_debug=${PCMK_DEBUG:-no}
pacemakerd >>"$T/node-$n/pacemakerd.out" 2>&1 &
set +e
# Reap children until killed (this shell is the namespace's init).
while :; do wait; sleep 1; done
EOI
}

# pcmk_node_start X: boots node X (a or b); PCMK_PID[X] is its PID 1.
pcmk_node_start() {
	local n=$1
	ip netns exec "colofs-$PCMK_ID-$n" unshare --mount --uts --pid --fork --mount-proc \
		bash "$T/node-init" "$n" "$T" >>"$T/node-$n/init.log" 2>&1 &
	local unsh=$!
	at_exit "kill -9 $unsh"
	# The namespace's PID 1 is unshare's child.
	wait_for 30 pgrep -P "$unsh" >/dev/null || fail "node-$n did not boot"
	PCMK_PID[$n]=$(pgrep -P "$unsh")
	at_exit "kill -9 ${PCMK_PID[$n]}"
}

# pcmk_node_kill X: the node dies at once, everything in it.
pcmk_node_kill() {
	kill -9 "${PCMK_PID[$1]}"
	wait_for 30 sh -c "! kill -0 ${PCMK_PID[$1]} 2>/dev/null" || fail "node-$1 did not die"
}

# on X CMD...: runs CMD inside node X.
on() {
	local n=$1
	shift
	nsenter -t "${PCMK_PID[$n]}" -n -m -u -p -- "$@"
}

# pcmk_xml X: crm_mon's XML as node X sees the cluster.
pcmk_xml() { on "$1" crm_mon -1 --output-as=xml 2>/dev/null; }

# pcmk_online X NODES...: X has a DC with quorum and sees NODES online.
pcmk_online() {
	local n=$1 x m
	shift
	x=$(pcmk_xml "$n") || return 1
	grep -q '<current_dc present="true".*with_quorum="true"' <<<"$x" || return 1
	for m in "$@"; do
		grep -q "<node name=\"node-$m\" [^>]*online=\"true\"" <<<"$x" || return 1
	done
}

pcmk_wait_online() {
	local n=$1
	wait_for 180 pcmk_online "$@" || {
		pcmk_xml "$n" >&2
		tail -n 30 "$T/node-$n/log/pacemaker.log" "$T/node-$n/corosync.log" >&2
		fail "node-$n: no quorate cluster with $* online"
	}
}

# pcmk_role X RSC: the role ("Promoted", "Unpromoted", ...) of the clone
# instance on node X, by X's crm_mon; nothing if none runs there.
pcmk_role() {
	pcmk_xml "$1" | "$PY3" -c '
import sys, xml.etree.ElementTree as ET
x = ET.fromstring(sys.stdin.read())
for r in x.iter("resource"):
    if r.get("id", "").split(":")[0] != sys.argv[2] or r.get("failed") == "true":
        continue
    for n in r.iter("node"):
        if n.get("name") == sys.argv[1]:
            role = r.get("role")
            print({"Master": "Promoted", "Slave": "Unpromoted"}.get(role, role))
' "node-$1" "$2"
}

# ---- a colofs pair under the cluster ----

# pcmk_colofs_pair SIZE: each node's two configs (vm.ini: a secondary
# listening on its address; vm-primary.ini: a primary toward the other
# node) over one mountpoint ($MNT) and its own image $T/node-X/vda.img;
# $T/expect.img is what the VM's disk must hold (vm_write keeps it).
pcmk_colofs_pair() {
	local n peer
	for n in a b; do
		peer=b
		[ $n = b ] && peer=a
		mkdir -p "$T/node-$n/state"
		make_image "$T/node-$n/vda.img" "$1"
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
	make_image "$T/expect.img" "$1"
}

# pcmk_boot_clone: boots both nodes and loads etc/colofs-pacemaker.xml,
# with this test's paths and binary (no fencing: a test cluster).
pcmk_boot_clone() {
	pcmk_node_start a
	pcmk_node_start b
	pcmk_wait_online a a b
	ok "a two-node cluster is up (quorate, both online)"
	on a crm_attribute -t crm_config -n stonith-enabled -v false
	on a crm_attribute -t crm_config -n no-quorum-policy -v ignore
	sed -e "s|/etc/colofs/vm1.ini|$T/etc-colofs/vm.ini|" \
		-e "s|/etc/colofs/vm1-primary.ini|$T/etc-colofs/vm-primary.ini|" \
		-e "s|^\\( *\\)</instance_attributes>|\\1  <nvpair id=\"colofs-binary\" name=\"binary\" value=\"$COLOFS_BIN\"/>\\n&|" \
		"$PCMK_ROOT/etc/colofs-pacemaker.xml" >"$T/colofs-pacemaker.xml"
	grep -q "value=\"$COLOFS_BIN\"" "$T/colofs-pacemaker.xml" || fail "the sample's edit"
	on a cibadmin -C -o resources -x "$T/colofs-pacemaker.xml" ||
		fail "cibadmin -C etc/colofs-pacemaker.xml"
	on a crm_verify -L || fail "crm_verify -L"
}

# promoted_on X: node X runs the promoted instance, by X's own view.
promoted_on() { [ "$(pcmk_role "$1" colofs)" = Promoted ]; }
unpromoted_on() { [ "$(pcmk_role "$1" colofs)" = Unpromoted ]; }
either_promoted() { promoted_on a || promoted_on b; }
# on_status X KEY: a key of node X's colofs status.
on_status() { on "$1" sed -n "s/^$2=//p" "$MNT/.colo/status"; }
state_is() { [ "$(on_status "$1" state)" = "$2" ]; }
# outdated X Y: by X's view, node Y is marked outdated (not promotable).
outdated() { [ "$(on "$1" crm_attribute -N "node-$2" -n colofs-outdated -l forever -G -q 2>/dev/null)" = 1 ]; }
in_sync() { state_is "$1" replicating && ! outdated "$1" "$2"; }
# disk_sum X FILE: FILE's sha256 as node X reads it.
disk_sum() { on "$1" dd if="$2" bs=1M status=none | sha256sum | cut -d' ' -f1; }

# vm_write X OFFSET LENGTH BYTE: the VM writes (and fsyncs) on node X.
vm_write() {
	pattern "$3" "$4" >"$T/chunk"
	on "$1" dd if="$T/chunk" of="$MNT/vda" bs=64K seek="$2" oflag=seek_bytes conv=notrunc,fsync status=none ||
		fail "the VM's write on node-$1"
	dd if="$T/chunk" of="$T/expect.img" bs=64K seek="$2" oflag=seek_bytes conv=notrunc status=none
}

# pcmk_wait_promoted: one node promoted (P), the other unpromoted (U),
# the pair replicating and U no longer outdated.
pcmk_wait_promoted() {
	wait_for 240 either_promoted || fail "the cluster promoted no node: $(pcmk_xml a)"
	P=a U=b
	promoted_on a || { P=b U=a; }
	wait_for 120 unpromoted_on "$U" || fail "node-$U is not unpromoted: $(pcmk_role "$U" colofs)"
	ok "the cluster promoted node-$P, node-$U is unpromoted"
	wait_for 120 in_sync "$P" "$U" ||
		fail "node-$P: $(on_status "$P" mode) $(on_status "$P" state), node-$U outdated: $(outdated "$P" "$U" && echo yes)"
	[ "$(on_status "$P" mode)" = primary ] || fail "node-$P's colofs is not a primary"
	[ "$(on_status "$U" mode)" = secondary ] || fail "node-$U's colofs is not a secondary"
	ok "node-$P's primary replicates to node-$U, which is no longer outdated"
}

# pcmk_promoted_pair SIZE: all of the above; then P and U are set.
pcmk_promoted_pair() {
	pcmk_setup
	pcmk_colofs_pair "$1"
	pcmk_boot_clone
	pcmk_wait_promoted
}

# A failure shows what the cluster logged about colofs.
fail() {
	echo "FAIL: $*" >&2
	pcmk_logs >&2
	exit 1
}

# pcmk_logs: the tail of every node's logs (for a failure message).
pcmk_logs() {
	local n
	for n in a b; do
		echo "---- node-$n ----"
		grep -h -i -E 'colofs|error|warn' "$T/node-$n/log/pacemaker.log" 2>/dev/null | tail -n 40
	done
}
