#!/usr/bin/env bash
# kill -9 during a failover commit never loses the only copy: for each
# configuration, at CRASH_POINTS random points (from CRASH_SEED) after the
# state file says failover, colofs is killed; a restart must resume the
# commit, reach done, and S must equal the view the VM had, byte for byte,
# including a view write made during the commit before the kill.
#
#   S0 = the image (6 U); the primary writes PP over [0, 3U), the VM writes
#   VV over [2U, 5U) and small writes after: V = S0|VV|S0...  Big enough
#   that the commit lasts a few hundred ms here.
#
# Configurations (CRASH_CONFIGS): file-raw, memdir-raw (memory buffers
# with a buffer_dir), file-qcow2, memdir-qcow2.  The long run
# (tests/e2e/long/test-durable-crash-long.sh) sets 20+ points each.
. "$(dirname "$0")/lib.sh"

POINTS=${CRASH_POINTS:-2}
SEED=${CRASH_SEED:-$(date +%s)}
CONFIGS=${CRASH_CONFIGS:-file-raw memdir-raw file-qcow2 memdir-qcow2}
U=$((${CRASH_UNIT_MB:-8} << 20))	# the layout's unit: the disk is 6 U
SIZE=$((6 * U))
RANDOM=$SEED
echo "seed $SEED, $POINTS points per configuration"

mkdir -p "$T/buf"

# prepare CONFIG: a fresh image, state and buffers; colofs running with the
# primary's and the VM's writes buffered; $T/expect = V.
prepare() {
	local fmt=${1#*-} buf=${1%-*}
	fusermount3 -u "$MNT" 2>/dev/null || true
	rm -rf "$T/state" "$T/buf" "$T/vda.img" "$T/colofs.log"
	mkdir -p "$T/buf"
	if [ "$fmt" = qcow2 ]; then
		qemu-img create -q -f qcow2 "$T/vda.img" $SIZE
		qemu-io -f qcow2 -c "write -P 0x11 0 $SIZE" "$T/vda.img" >/dev/null
	else
		make_image "$T/vda.img" $SIZE 11
	fi
	BUFFER=$([ "$buf" = file ] && echo file || echo memory) \
		EXTRA_CONFIG="buffer_dir = $T/buf" write_config
	start_colofs_fg
	ctl start
	"$PY3" - "$T/nbd.sock" $U <<'EOPY'
import nbd, sys
u = int(sys.argv[2])
h = nbd.NBD()
h.connect_uri("nbd+unix:///vda?socket=" + sys.argv[1])
for off in range(0, 3 * u, 4 << 20):
    h.pwrite(b"\xaa" * (4 << 20), off)
h.pwrite(b"\xab" * 4096, 5 * u + 8192)
h.flush()
h.shutdown()
EOPY
	view_write $((2 * U)) $((3 * U)) bb
	view_write $((5 * U)) 8192 bc
	view_write $((5 * U + 8192)) 512 bd
	cp "$MNT/vda" "$T/expect"
}

state_of() { sed -n 's/^state=//p' "$T"/state/*.state 2>/dev/null; }

midway=0 total=0
for conf in $CONFIGS; do
	for ((p = 0; p < POINTS; p++)); do
		prepare "$conf"
		# The kill point: when the commit has this fraction (per mille)
		# left to write, read from .colo/status as tightly as Python can.
		left=$((RANDOM % 1000))
		off=$(( (RANDOM % (SIZE / 4096 - 4)) * 4096 ))
		byte=$(( 0xc0 + p % 16 ))
		"$PY3" - "$MNT" "$T/expect" "$COLOFS_PID" $left $off $byte <<'EOPY'
import glob, os, signal, sys, time
mnt, expect, pid = sys.argv[1], sys.argv[2], int(sys.argv[3])
left, off, byte = int(sys.argv[4]), int(sys.argv[5]), int(sys.argv[6])
def status():
    with open(mnt + "/.colo/status") as f:
        return dict(l.rstrip("\n").split("=", 1) for l in f if "=" in l)
with open(mnt + "/.colo/ctl", "w") as f:
    f.write("failover\n")
state_file = glob.glob(os.path.dirname(expect) + "/state/*.state")[0]
deadline = time.time() + 60
while "state=failover" not in open(state_file).read():
    if "state=done" in open(state_file).read() or time.time() > deadline:
        break
    time.sleep(0.001)
total = int(status().get("vda.commit_remaining_bytes", "0"))
# The VM writes during the commit; its write is acknowledged here.
fd = os.open(mnt + "/vda", os.O_WRONLY)
os.pwrite(fd, bytes([byte]) * 8192, off)
os.close(fd)
fd = os.open(expect, os.O_WRONLY)
os.pwrite(fd, bytes([byte]) * 8192, off)
os.close(fd)
while time.time() < deadline:
    st = status()
    if st["state"] != "failover":
        break
    if int(st["vda.commit_remaining_bytes"]) * 1000 <= total * left:
        break
os.kill(pid, signal.SIGKILL)
EOPY
		wait "$COLOFS_PID" 2>/dev/null || true
		total=$((total + 1))
		at=$(state_of); echo "point $p: killed in $at"
		[ "$at" = failover ] && midway=$((midway + 1))
		fusermount3 -u "$MNT"
		start_colofs_fg
		wait_state done
		if [ "${conf#*-}" = qcow2 ]; then
			cmp "$MNT/vda" "$T/expect" ||
				fail "$conf point $p (killed in $at): S differs from V"
		else
			cmp "$T/vda.img" "$T/expect" ||
				fail "$conf point $p (killed in $at): S differs from V"
		fi
		ls "$T"/state/*.journal "$T"/buf/*.hidden 2>/dev/null &&
			fail "$conf: journal or buffer files left after done"
		kill -TERM "$COLOFS_PID"
		wait_exit "$COLOFS_PID"
	done
	ok "$conf: $POINTS kill -9 points, S = V after the resumed commit"
done
ok "$total points, $midway killed while the state file said failover (seed $SEED)"
