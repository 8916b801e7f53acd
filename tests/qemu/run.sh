# SPDX-License-Identifier: MIT
# Sourced by tests/e2e/test-qemu-*.sh after lib.sh: runs a tests/qemu/
# script in the background (so a time limit's SIGTERM reaches it and it
# can stop QEMU and unmount), and cleans up whatever it left under $T.
QEMU_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)

need_qemu() {
	command -v qemu-system-x86_64 >/dev/null ||
		skip "SKIP: qemu-system-x86_64 not installed (Debian package qemu-system-x86; make check installs it)"
	command -v qemu-img >/dev/null ||
		skip "SKIP: qemu-img not installed (Debian package qemu-utils)"
	"$PY3" -c 'import nbd' 2>/dev/null ||
		fail "$PY3 lacks the nbd module (Debian package python3-libnbd)"
}

need_colofs() {
	[ -x "$COLOFS_BIN" ] || fail "no colofs binary at $COLOFS_BIN (run make)"
}

# unmount_under DIR: lazily unmounts every FUSE mount below DIR.
unmount_under() {
	local m
	for m in $(findmnt -rn -o TARGET | grep "^$1/" || true); do
		fusermount3 -u -z "$m" 2>/dev/null || umount -l "$m" 2>/dev/null
	done
}
at_exit unmount_under "$T"

# run_py SCRIPT ARGS...: runs tests/qemu/SCRIPT with Debian's python and
# returns its exit status.
run_py() {
	local script=$1 pid rc
	shift
	"$PY3" "$QEMU_DIR/$script" "$@" &
	pid=$!
	at_exit "kill $pid"
	rc=0
	wait "$pid" || rc=$?
	return "$rc"
}
