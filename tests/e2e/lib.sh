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
	if mountpoint -q "$MNT" 2>/dev/null; then
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

# write_config: a one-disk config for $T/vda.img, listening on $T/nbd.sock.
# Extra [colofs] lines come from $EXTRA_CONFIG.
write_config() {
	cat >"$T/colofs.ini" <<EOC
[colofs]
mountpoint = $MNT
listen = unix:$T/nbd.sock
buffer = ${BUFFER:-memory}
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
	wait_for 10 sh -c "! pgrep -f 'colofs -c $T/colofs.ini'" ||
		fail "colofs did not exit after unmount"
}

ctl() { echo "$1" >"$MNT/.colo/ctl"; }

# status_get KEY: one value from .colo/status.
status_get() { sed -n "s/^$1=//p" "$MNT/.colo/status"; }

nbd_uri() { echo "nbd+unix:///${1:-vda}?socket=$T/nbd.sock"; }

# nbdsh_c URI PYTHON: runs nbdsh commands with Debian's python.
nbdsh_c() { "$PY3" -m nbd -u "$1" -c "$2"; }

# expect_bytes FILE OFFSET LENGTH BYTE(hex): FILE's range is all BYTE.
expect_bytes() {
	local file=$1 off=$2 len=$3 byte=$4 got
	got=$(dd if="$file" bs=1M iflag=skip_bytes,count_bytes skip="$off" \
		count="$len" status=none | od -An -v -tx1 | tr -s ' \n' '\n' |
		grep -v '^$' | sort -u | tr '\n' ' ')
	[ "$got" = "$byte " ] ||
		fail "$file [$off,+$len) holds {$got}, want $byte"
}
