# shellcheck shell=bash
# SPDX-License-Identifier: MIT
# A real guest for the end-to-end tests: Debian's kernel and a busybox
# initramfs (tests/realvm/setup.sh) booted under TCG with one disk file,
# running tests/realvm/init's write loop on ext4.  Source it after
# tests/e2e/lib.sh; see tests/realvm/README.md.
#   realvm_need                  skips (77) if QEMU cannot run; builds the guest
#   realvm_boot DISK [CACHE]     boots it on DISK (a file, e.g. MOUNT/vda)
#   realvm_round                 the last round the guest reported durable
#   realvm_wait_round N [SECS]   waits for round N (fails on a guest error)
#   realvm_stop [SECS]           asks it to stop, waits for its power-off
#   realvm_console_clean         no I/O or ext4 error on its console
#   realvm_gaps                  the longest wait between two rounds, as the
#                                guest saw it (ms), and the median
#   realvm_check_disk FILE       e2fsck -fn, then every file against its sum
REALVM_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
VM_CONSOLE=$T/console.log
# What a guest must never print: the block layer's and ext4's errors, and
# the init's own failures.
REALVM_ERRORS='I/O error|EXT4-fs error|EXT4-fs warning|Buffer I/O|blk_update_request|Aborting journal|Remounting filesystem read-only|realvm: FAIL|Kernel panic'

realvm_need() {
	command -v qemu-system-x86_64 >/dev/null ||
		skip "SKIP: qemu-system-x86_64 not installed (Debian package qemu-system-x86; make deps installs it)"
	echo quit | timeout 60 qemu-system-x86_64 -accel tcg -M none -nodefaults \
		-display none -serial none -monitor stdio >/dev/null 2>"$T/qemu.err" ||
		skip "SKIP: qemu-system-x86_64 -accel tcg does not run here: $(head -c 200 "$T/qemu.err")"
	command -v e2fsck >/dev/null && command -v debugfs >/dev/null ||
		fail "e2fsck/debugfs missing (Debian package e2fsprogs)"
	REALVM=$("$REALVM_DIR/setup.sh" "${COLOFS_BUILD:-$REALVM_DIR/../../build}") ||
		fail "tests/realvm/setup.sh could not build the guest"
}

# realvm_boot DISK [CACHE]: CACHE is QEMU's cache mode for DISK, none
# (O_DIRECT, what libvirt uses for shared storage) by default.  The
# control disk $T/vmctl.img, a plain file, carries the stop flag.
realvm_boot() {
	rm -f "$T/vmctl.img"
	truncate -s 64K "$T/vmctl.img"
	: >"$VM_CONSOLE"
	qemu-system-x86_64 -accel tcg -m 256 -nodefaults -display none \
		-monitor none -no-reboot \
		-kernel "$REALVM/vmlinuz" -initrd "$REALVM/initrd.gz" \
		-append "console=ttyS0 panic=-1 loglevel=4" \
		-drive "file=$1,format=raw,if=virtio,cache=${2:-none}" \
		-drive "file=$T/vmctl.img,format=raw,if=virtio,cache=none" \
		-serial "file:$VM_CONSOLE" 2>"$T/qemu.err" &
	VM_PID=$!
	at_exit "kill -9 $VM_PID"
	wait_for 120 grep -q '^realvm: up' "$VM_CONSOLE" || {
		realvm_tail
		fail "the guest did not come up in 120 s"
	}
}

realvm_tail() {
	echo "-- guest console (last lines):" >&2
	tr -d '\r' <"$VM_CONSOLE" | grep -v '^realvm: round' | tail -n 30 >&2
	echo "-- last round: $(realvm_round); qemu: $(cat "$T/qemu.err")" >&2
}

# The console's last line may be half written: it is left out.
realvm_round() {
	local r
	r=$(tr -d '\r' <"$VM_CONSOLE" | sed '$d' |
		sed -n 's/^realvm: round \([0-9]*\) [0-9.]*$/\1/p' | tail -n 1)
	echo "${r:-0}"
}

realvm_gaps() {
	tr -d '\r' <"$VM_CONSOLE" | sed -n 's/^realvm: round [0-9]* \([0-9.]*\)$/\1/p' |
		awk 'NR > 1 { g = int(($1 - prev) * 1000); print g } { prev = $1 }' |
		sort -n | awk '{ a[NR] = $1 } END {
			if (NR) printf "longest %d ms, median %d ms over %d rounds\n", a[NR], a[int((NR + 1) / 2)], NR + 1 }'
}

# realvm_console_clean: fails, showing the lines, on any guest error.
realvm_console_clean() {
	if tr -d '\r' <"$VM_CONSOLE" | grep -E "$REALVM_ERRORS" >"$T/vm-errors"; then
		head -n 20 "$T/vm-errors" >&2
		realvm_tail
		fail "the guest saw errors ($(wc -l <"$T/vm-errors") lines)"
	fi
}

# realvm_wait_round N [SECS]: the guest reports round N within SECS (120).
realvm_wait_round() {
	local n=$1 secs=${2:-120} i
	for ((i = 0; i < secs * 10; i++)); do
		[ "$(realvm_round)" -ge "$n" ] && return 0
		if ! alive "$VM_PID" || grep -qE "$REALVM_ERRORS" "$VM_CONSOLE"; then
			realvm_console_clean
			realvm_tail
			fail "the guest stopped before round $n"
		fi
		sleep 0.1
	done
	realvm_tail
	fail "the guest did not reach round $n in $secs s"
}

# realvm_stop [SECS]: the stop flag, then the guest verifies its files,
# unmounts and powers off.
realvm_stop() {
	local secs=${1:-120} i
	printf stop | dd of="$T/vmctl.img" conv=notrunc status=none
	for ((i = 0; i < secs * 10; i++)); do
		alive "$VM_PID" || break
		sleep 0.1
	done
	if alive "$VM_PID"; then
		realvm_tail
		fail "the guest did not power off in $secs s"
	fi
	wait "$VM_PID" 2>/dev/null || true
	realvm_console_clean
	tr -d '\r' <"$VM_CONSOLE" | grep -q '^realvm: verify ok' ||
		{ realvm_tail; fail "the guest did not verify its files"; }
	tr -d '\r' <"$VM_CONSOLE" | grep -q '^realvm: umount ok' ||
		{ realvm_tail; fail "the guest did not unmount cleanly"; }
}

# realvm_check_disk FILE: the file system on FILE is clean (e2fsck -fn),
# and each file the guest wrote matches the sum it wrote beside it.
realvm_check_disk() {
	local f=$1 n
	e2fsck -fn "$f" >"$T/fsck.out" 2>&1 ||
		{ cat "$T/fsck.out" >&2; fail "e2fsck -fn $f: not clean"; }
	rm -rf "$T/w"
	mkdir -p "$T/w"
	debugfs -R "rdump /w $T/w" "$f" >/dev/null 2>"$T/debugfs.err" ||
		fail "debugfs rdump: $(cat "$T/debugfs.err")"
	n=$(find "$T/w/w" -name '*.bin' | wc -l)
	[ "$n" -gt 0 ] || fail "$f: no files of the guest's in /w"
	(cd "$T/w/w" && cat ./*.sha | sha256sum -c --quiet) >&2 ||
		fail "$f: a file of the guest's does not match its sum"
	# shellcheck disable=SC2034 # for the caller
	REALVM_FILES=$n
}
