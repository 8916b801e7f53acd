#!/usr/bin/env bash
# SPDX-License-Identifier: MIT
# Builds the realvm guest: Debian's kernel and a small initramfs (busybox,
# the virtio and ext4 modules, tests/realvm/init), cached in
# BUILD_DIR/realvm/ and rebuilt only when the kernel, busybox or the
# init change.  Installs what is missing (as root, like make deps):
# linux-image-amd64, busybox-static, cpio.  See tests/realvm/README.md.
#
# Usage: tests/realvm/setup.sh BUILD_DIR
# Prints the cache directory (holding vmlinuz and initrd.gz) on stdout;
# exits 2, saying why on stderr, when it cannot build the guest.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
build=${1:?usage: setup.sh BUILD_DIR}
mkdir -p "$build/realvm"
out=$(cd "$build/realvm" && pwd)
PKGS="linux-image-amd64 busybox-static cpio"

die() { echo "realvm setup: $*" >&2; exit 2; }

missing=
for p in $PKGS; do
	dpkg-query -W -f='${Status}\n' "$p" 2>/dev/null |
		grep -q '^install ok installed' || missing="$missing $p"
done
if [ -n "$missing" ]; then
	[ "$(id -u)" = 0 ] || die "missing packages; as root: apt-get install$missing"
	echo "realvm setup: installing$missing" >&2
	# One installer at a time on a shared machine: apt's own lock.
	export DEBIAN_FRONTEND=noninteractive
	{ apt-get update -q && apt-get install -y -q --no-install-recommends \
		-o DPkg::Lock::Timeout=600 $missing; } >"$out/apt.log" 2>&1 ||
		die "apt-get install$missing failed (see $out/apt.log)"
fi

# The newest installed kernel that has its modules.
kver=
for k in $(ls /boot/vmlinuz-* 2>/dev/null | sed 's|/boot/vmlinuz-||' | sort -V); do
	[ -f "/lib/modules/$k/modules.dep" ] && kver=$k
done
[ -n "$kver" ] || die "no /boot/vmlinuz-* with /lib/modules/VERSION/modules.dep"
[ -r "/boot/vmlinuz-$kver" ] || die "/boot/vmlinuz-$kver is not readable"
bb=/bin/busybox
file -L "$bb" 2>/dev/null | grep -q 'statically linked' ||
	die "$bb is not the static busybox (busybox-static)"

# Rebuild when any input changes.
key=$( { echo "$kver"; sha256sum "$bb" "$here/init" "$0"; } | sha256sum | cut -c1-16)
if [ -f "$out/key" ] && [ "$(cat "$out/key")" = "$key" ] &&
	[ -f "$out/initrd.gz" ] && [ -f "$out/vmlinuz" ]; then
	echo "$out"
	exit 0
fi

# Modules, dependencies first (modules.dep lists a module's dependencies;
# each is loaded before the module itself).  crc32c_generic: ext4's
# metadata checksums ask the crypto API for crc32c (modules.softdep).
moddir=/lib/modules/$kver
declare -A seen=()
order=()
add() {
	local path dep
	path=$(grep -E "(^|/)$1\.ko(\.[a-z]+)?:" "$moddir/modules.dep" | head -n 1 |
		cut -d: -f1) || true
	if [ -z "$path" ]; then
		# Built in: nothing to load.
		grep -qE "(^|/)$1\.ko" "$moddir/modules.builtin" ||
			die "module $1 not found in $moddir"
		return 0
	fi
	[ -n "${seen[$path]:-}" ] && return 0
	seen[$path]=1
	for dep in $(grep -E "^$path:" "$moddir/modules.dep" | cut -d: -f2); do
		add "$(basename "$dep" | sed -E 's/\.ko(\.[a-z]+)?$//')"
	done
	order+=("$path")
}
for m in virtio_pci virtio_blk crc32c_generic ext4; do add "$m"; done

tmp=$(mktemp -d "$out/root.XXXXXX")
trap 'rm -rf "$tmp"' EXIT
mkdir -p "$tmp"/{bin,dev,proc,sys,mnt,lib/modules}
cp "$bb" "$tmp/bin/busybox"
for a in $("$bb" --list); do
	[ "$a" = busybox ] || ln -s busybox "$tmp/bin/$a"
done
: >"$tmp/modules.order"
for path in "${order[@]}"; do
	name=$(basename "$path")
	case "$name" in
	*.ko) cp "$moddir/$path" "$tmp/lib/modules/$name" ;;
	*.ko.xz) xz -dc "$moddir/$path" >"$tmp/lib/modules/${name%.xz}"; name=${name%.xz} ;;
	*.ko.zst) zstd -qdc "$moddir/$path" >"$tmp/lib/modules/${name%.zst}"; name=${name%.zst} ;;
	*.ko.gz) gzip -dc "$moddir/$path" >"$tmp/lib/modules/${name%.gz}"; name=${name%.gz} ;;
	*) die "module file $path: unknown compression" ;;
	esac
	echo "$name" >>"$tmp/modules.order"
done
install -m 0755 "$here/init" "$tmp/init"
(cd "$tmp" && find . -print0 | LC_ALL=C sort -z |
	cpio --null -o -H newc --quiet --owner=0:0) | gzip -9 >"$out/initrd.gz.tmp"
cp "/boot/vmlinuz-$kver" "$out/vmlinuz.tmp"
mv "$out/initrd.gz.tmp" "$out/initrd.gz"
mv "$out/vmlinuz.tmp" "$out/vmlinuz"
echo "$kver" >"$out/kernel-version"
echo "$key" >"$out/key"
echo "realvm setup: kernel $kver, modules: $(tr '\n' ' ' <"$tmp/modules.order")" >&2
echo "$out"
