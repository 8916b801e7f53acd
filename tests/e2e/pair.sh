# SPDX-License-Identifier: MIT
# A colofs pair on one machine, for the primary-mode tests.  Source it
# after lib.sh:
#   . "$(dirname "$0")/lib.sh"; . "$(dirname "$0")/pair.sh"
# The secondary mounts $SMNT and listens on $SLISTEN (a unix socket by
# default; pair_tcp picks a free TCP port); the primary mounts $PMNT,
# keeps its bitmaps in $T/state and mirrors to $SURI.  Both run with -f,
# logging to $T/s.log and $T/p.log; cleanup kills and unmounts them.

SMNT=$T/smnt
PMNT=$T/pmnt
mkdir -p "$SMNT" "$PMNT" "$T/state"
SLISTEN="unix:$T/s.sock"
SURI="nbd+unix:///vda?socket=$T/s.sock"
SIZE=${SIZE:-32M}
TIMEOUT=${TIMEOUT:-2s}
GRAN=${GRAN:-64K}
at_exit "fusermount3 -u $SMNT || umount -l $SMNT"
at_exit "fusermount3 -u $PMNT || umount -l $PMNT"

# pair_tcp: the secondary listens on a free loopback TCP port instead.
pair_tcp() {
	local port
	port=$("$PY3" -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
	SLISTEN="127.0.0.1:$port"
	SURI="nbd://127.0.0.1:$port/vda"
}

# pair_configs: $T/s.ini and $T/p.ini for $T/s.img and $T/p.img.
pair_configs() {
	cat >"$T/s.ini" <<EOC
[colofs]
mountpoint = $SMNT
listen = $SLISTEN
state_dir = $T/sstate

[disk "vda"]
image = $T/s.img
EOC
	cat >"$T/p.ini" <<EOC
[colofs]
mountpoint = $PMNT
mode = primary
state_dir = $T/state
secondary_timeout = $TIMEOUT
dirty_granularity = $GRAN

[disk "vda"]
image = $T/p.img
secondary = $SURI
EOC
}

# start_secondary [ARGS...] / start_primary [ARGS...]: -f in the background;
# SEC_PID, PRI_PID.
start_secondary() {
	env --default-signal=INT,QUIT "$COLOFS_BIN" -c "$T/s.ini" -f "$@" \
		2>>"$T/s.log" &
	SEC_PID=$!
	at_exit "kill -9 $SEC_PID"
	wait_for 10 mountpoint -q "$SMNT" || {
		cat "$T/s.log" >&2
		fail "the secondary did not mount"
	}
}

start_primary() {
	env --default-signal=INT,QUIT "$COLOFS_BIN" -c "$T/p.ini" -f "$@" \
		2>>"$T/p.log" &
	PRI_PID=$!
	at_exit "kill -9 $PRI_PID"
	wait_for 10 mountpoint -q "$PMNT" || {
		cat "$T/p.log" >&2
		fail "the primary did not mount"
	}
}

# pair_stop PID MOUNT: a clean stop (unmount), exit status 0.  Generous:
# an exit fsyncs the images, slow on a loaded machine.
pair_stop() {
	local i
	fusermount3 -u "$2"
	for ((i = 0; i < 1200; i++)); do
		alive "$1" || break
		sleep 0.1
	done
	if alive "$1"; then
		# What it is stuck in, for whoever reads the failure.
		echo "colofs $1 ($2) still running 120 s after its unmount:" >&2
		tail -n 20 "$T/p.log" "$T/s.log" >&2
		command -v gdb >/dev/null &&
			gdb -p "$1" -batch -ex "thread apply all bt" 2>&1 |
			grep -E '^(#|Thread)' | head -n 80 >&2
		fail "process $1 did not exit in 120 s"
	fi
	wait "$1" || fail "process $1 exited $?"
}

# kill9 PID MOUNT: kill -9, then remove the dead mount.
kill9() {
	kill -9 "$1"
	wait "$1" 2>/dev/null || true
	fusermount3 -u "$2" 2>/dev/null || umount -l "$2"
}

# pair_writer [N]: N writers (1) on the primary that go on until $T/stop
# exists (64 KiB direct writes over the first 16 MiB, round and round;
# writer j takes the blocks j, j+N, ...); each exits 1 if a write fails
# (the error in $T/dd.err).  DD: their pids.
pair_writer() {
	local j n=${1:-1}
	DD=
	: >"$T/dd.err"
	for ((j = 0; j < n; j++)); do
		(
			i=$j
			while [ ! -e "$T/stop" ]; do
				dd if=/dev/urandom of="$PMNT/vda" bs=64K count=1 \
					seek=$((i % 256)) oflag=direct conv=notrunc \
					status=none || exit 1
				i=$((i + n))
			done
		) 2>>"$T/dd.err" &
		DD="${DD:+$DD }$!"
	done
}

pctl() { echo "$*" >"$PMNT/.colo/ctl"; }
sctl() { echo "$*" >"$SMNT/.colo/ctl"; }
sget() { sed -n "s/^$1=//p" "$SMNT/.colo/status"; }

# wait_pstate STATE [SECONDS]
wait_pstate() {
	wait_for "${2:-30}" sh -c "grep -qx 'state=$1' '$PMNT/.colo/status'" || {
		cat "$PMNT/.colo/status" "$T/p.log" >&2
		fail "the primary did not reach $1"
	}
}


# same_disks WHAT: the primary's file equals the secondary's view.
same_disks() {
	[ "$(sum "$PMNT/vda")" = "$(sum "$SMNT/vda")" ] ||
		fail "$1: the secondary's view differs from the primary's file"
	ok "$1: the secondary's view equals the primary's file"
}
