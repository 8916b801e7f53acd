# SPDX-License-Identifier: MIT
# Shared helpers for the end-to-end tests.  Source it first thing:
#   . "$(dirname "$0")/lib.sh"
# Every test gets its own temp dir ($T) and a cleanup that unmounts and
# kills whatever it started, whatever happens.
set -euo pipefail

COLOFS_BIN=${COLOFS_BIN:-$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)/build/colofs}
T=$(mktemp -d /tmp/colofs-test.XXXXXX)
MNT=$T/mnt
mkdir -p "$MNT"
# Debian's python has the nbd module; pyenv's, first in PATH, does not.
PY3=/usr/bin/python3
_cleanups=()

on_exit() {
	local rc=$? i
	set +e
	for ((i = ${#_cleanups[@]} - 1; i >= 0; i--)); do
		eval "${_cleanups[i]}" >/dev/null 2>&1
	done
	# findmnt, not mountpoint: it also sees a dead FUSE mount (ENOTCONN).
	if findmnt --mountpoint "$MNT" >/dev/null 2>&1; then
		fusermount3 -u "$MNT" 2>/dev/null || umount -l "$MNT" 2>/dev/null
	fi
	rm -rf "$T"
	exit "$rc"
}
trap on_exit EXIT

# Runs a command at exit, in reverse order of registration.
at_exit() { _cleanups+=("$*"); }

fail() { echo "FAIL: $*" >&2; exit 1; }
skip() { echo "$*"; exit 77; }
ok() { echo "ok: $*"; }

# wait_for SECONDS COMMAND...: polls until COMMAND succeeds.
wait_for() {
	local secs=$1 i
	shift
	for ((i = 0; i < secs * 10; i++)); do
		"$@" >/dev/null 2>&1 && return 0
		sleep 0.1
	done
	return 1
}

# make_image PATH SIZE [BYTE]: a raw image, zero or filled with BYTE (hex).
make_image() {
	local path=$1 size=$2 byte=${3:-}
	if [ -z "$byte" ]; then
		truncate -s "$size" "$path"
	else
		head -c "$size" /dev/zero | tr '\0' "\\$(printf '%03o' "0x$byte")" >"$path"
	fi
}

# blocks FILE: the 512-byte blocks FILE holds, once synced (fsync).
blocks() { sync "$1"; stat -c %b "$1"; }

# write_config: a one-disk config for $T/vda.img, listening on $T/nbd.sock,
# its state file in $T/state.
# Extra [colofs] lines come from $EXTRA_CONFIG.
write_config() {
	cat >"$T/colofs.ini" <<EOC
[colofs]
mountpoint = $MNT
listen = unix:$T/nbd.sock
buffer = ${BUFFER:-memory}
state_dir = $T/state
${EXTRA_CONFIG:-}

[disk "vda"]
image = $T/vda.img
EOC
}

# start_colofs [ARGS...]: starts the daemon on $T/colofs.ini and waits for
# its mount; it returns when ready (colofs daemonizes only then).
start_colofs() {
	"$COLOFS_BIN" -c "$T/colofs.ini" "$@" || fail "colofs did not start"
	mountpoint -q "$MNT" || fail "colofs returned but $MNT is not mounted"
}

stop_colofs() {
	fusermount3 -u "$MNT"
	# [c]: the pattern must not match the sh -c running pgrep.
	wait_for 30 sh -c "! pgrep -f '[c]olofs -c $T/colofs.ini'" ||
		fail "colofs did not exit after unmount"
}

ctl() { echo "$1" >"$MNT/.colo/ctl"; }

# status_get KEY: one value from .colo/status.
status_get() { sed -n "s/^$1=//p" "$MNT/.colo/status"; }

nbd_uri() { echo "nbd+unix:///${1:-vda}?socket=$T/nbd.sock"; }

# primary_uri [DISK]: nbd_uri with the export name a colofs primary uses
# to present this secondary's current generation (gi_current in the
# status), as one about to sync it does (fs/primary-link.c).
primary_uri() {
	local g
	g=$(sed -n 's/^gi_current=//p' "$MNT/.colo/status")
	echo "nbd+unix:///${1:-vda}%20colofs-gen=$g?socket=$T/nbd.sock"
}

# nbdsh_c URI PYTHON: runs nbdsh commands with Debian's python.
nbdsh_c() { "$PY3" -m nbd -u "$1" -c "$2"; }

# expect_bytes FILE OFFSET LENGTH BYTE(hex): FILE's range is all BYTE.
expect_bytes() {
	local file=$1 off=$2 len=$3 byte=$4 got
	# Fast path: compare with the pattern; the census below is for the
	# message only.
	cmp -s <(dd if="$file" bs=1M iflag=skip_bytes,count_bytes skip="$off" \
		count="$len" status=none) \
		<(head -c "$len" /dev/zero | tr '\0' "\\$(printf '%03o' "0x$byte")") &&
		return 0
	got=$(dd if="$file" bs=1M iflag=skip_bytes,count_bytes skip="$off" \
		count="$len" status=none | od -An -v -tx1 | tr -s ' \n' '\n' |
		grep -v '^$' | sort -u | tr '\n' ' ')
	[ "$got" = "$byte " ] ||
		fail "$file [$off,+$len) holds {$got}, want $byte"
}

# ---- Daemon, view and ctl helpers (the fs tests) ----

# alive PID: the process exists and is not a zombie.
alive() {
	# One read: bash reaps a child on SIGCHLD, so the file can vanish
	# between a test for it and a grep of it (which then read as alive).
	local st
	st=$(cat "/proc/$1/stat" 2>/dev/null) || return 1
	[[ ! $st =~ ^[0-9]+\ \(.*\)\ Z ]]
}

# colofs_pid: the pid of the daemon serving $T/colofs.ini, or nothing.
colofs_pid() { pgrep -f -- "[c]olofs -c $T/colofs.ini" | head -n 1 || true; }

# start_colofs_fg [ARGS...]: runs colofs -f in the background with its
# stderr in $T/colofs.log, sets COLOFS_PID and waits for the mount.  SIGINT
# and SIGQUIT get their default action back (bash ignores them in
# background jobs, and libfuse leaves ignored signals alone).
start_colofs_fg() {
	env --default-signal=INT,QUIT "$COLOFS_BIN" -c "$T/colofs.ini" -f "$@" \
		2>>"$T/colofs.log" &
	COLOFS_PID=$!
	at_exit "kill -9 $COLOFS_PID"
	wait_for 10 mountpoint -q "$MNT" || {
		cat "$T/colofs.log" >&2
		fail "colofs -f did not mount $MNT"
	}
}

# wait_exit PID: waits (up to 60 s) for a child of this shell; its exit
# status goes to EXIT_STATUS.
wait_exit() {
	local i
	for ((i = 0; i < 600; i++)); do
		alive "$1" || break
		sleep 0.1
	done
	alive "$1" && fail "process $1 did not exit"
	EXIT_STATUS=0
	wait "$1" || EXIT_STATUS=$?
}

# assert_not_mounted: $MNT is no mount point.
assert_not_mounted() {
	! mountpoint -q "$MNT" || fail "$MNT is still mounted"
}

# pattern LENGTH BYTE(hex): LENGTH bytes of BYTE on stdout.
pattern() {
	head -c "$1" /dev/zero | tr '\0' "\\$(printf '%03o' "0x$2")"
}

# view_write OFFSET LENGTH BYTE(hex) [DISK]: the secondary VM writes.
view_write() {
	pattern "$2" "$3" | dd of="$MNT/${4:-vda}" bs=1M seek="$1" \
		oflag=seek_bytes conv=notrunc status=none
}

# nbd_write OFFSET LENGTH BYTE(hex) [EXPORT]: the primary writes (and
# disconnects cleanly).
nbd_write() {
	nbdsh_c "$(nbd_uri "${4:-vda}")" \
		"h.pwrite(bytes([0x$3]) * $2, $1); h.flush(); h.shutdown()"
}

# ctl_try TEXT: writes TEXT (as is) to .colo/ctl in one write(2) and prints
# "ok" or the errno name (EINVAL, EBUSY...).
ctl_try() {
	"$PY3" - "$MNT/.colo/ctl" "$1" <<'EOPY'
import errno, os, sys
fd = os.open(sys.argv[1], os.O_WRONLY)
try:
    os.write(fd, sys.argv[2].encode())
    print("ok")
except OSError as e:
    print(errno.errorcode.get(e.errno, str(e.errno)))
finally:
    os.close(fd)
EOPY
}

# failover_dies POINT: "failover" into a colofs started with
# COLOFS_TEST_CRASH_AT=POINT; it must die there.
failover_dies() {
	ctl_try "failover
" >/dev/null 2>&1 || true
	wait "$COLOFS_PID" 2>/dev/null || true
	alive "$COLOFS_PID" && fail "colofs did not die at $1"
	grep -q "crash point $1" "$T/colofs.log" ||
		fail "the crash point $1 was not reached"
}

# expect_ctl WORD RESULT: the ctl write of "WORD\n" gives RESULT (ok or
# an errno name); a refusal must leave a message in .colo/error.
expect_ctl() {
	local got
	: >"$MNT/.colo/error"
	got=$(ctl_try "$1
")
	[ "$got" = "$2" ] || fail "ctl '$1' in state $(status_get state): got $got, want $2"
	if [ "$2" != ok ]; then
		[ -n "$(cat "$MNT/.colo/error")" ] ||
			fail "ctl '$1' failed with $got but .colo/error is empty"
	fi
}

# wait_state STATE: .colo/status reaches state=STATE within 20 s.
wait_state() {
	wait_for 20 grep -qx "state=$1" "$MNT/.colo/status" ||
		fail "state is $(status_get state), want $1"
}

# expect_status KEY VALUE
expect_status() {
	local got
	got=$(status_get "$1")
	[ "$got" = "$2" ] || fail "status $1=$got, want $2"
}

# start_primary_fg TIMEOUT: a primary on $PMNT (made by the caller) over
# $T/p.img, mirroring to the NBD server on $T/s.sock, with
# secondary_timeout = TIMEOUT and state in $T/state; runs in the
# foreground (log in $T/p.log, PID in PRI_PID) and returns once mounted.
# pget KEY reads its status.
start_primary_fg() {
	cat >"$T/p.ini" <<EOC
[colofs]
mountpoint = $PMNT
mode = primary
state_dir = $T/state
secondary_timeout = $1

[disk "vda"]
image = $T/p.img
secondary = nbd+unix:///vda?socket=$T/s.sock
EOC
	env --default-signal=INT,QUIT "$COLOFS_BIN" -c "$T/p.ini" -f 2>>"$T/p.log" &
	PRI_PID=$!
	at_exit "kill -9 $PRI_PID"
	wait_for 10 mountpoint -q "$PMNT" || { cat "$T/p.log" >&2; fail "no mount"; }
}
pget() { sed -n "s/^$1=//p" "$PMNT/.colo/status"; }

# sum FILE: its sha256, read in 1 MiB requests (cmp's small reads are
# slow through a direct_io FUSE file).
sum() { dd if="$1" bs=1M status=none | sha256sum | cut -d' ' -f1; }
