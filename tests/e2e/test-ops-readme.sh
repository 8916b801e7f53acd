#!/usr/bin/env bash
# The README runs as written: every ```sh block of its "Quick start" and
# "Primary mode" sections, in order, in one shell with set -e, under a
# temporary root.  The substitution is the one the README documents:
# /etc/colofs, /var/lib and /tmp/pair get the root in front;
# secondary-host:10809 and 0.0.0.0:10809 become 127.0.0.1:PORT; the
# primary's address 192.0.2.10 becomes 127.0.0.1; make install is skipped
# (test-ops-install.sh tests it).  The only set-up outside the README is
# the primary's disk that the quick start's nbdcopy reads (it lives on the
# primary host).  A README edit that breaks a block breaks this test.
. "$(dirname "$0")/lib.sh"
. "$(dirname "$0")/tls.sh"
HERE=$(cd "$(dirname "$0")" && pwd)
README=$HERE/../../README.md
ROOT=$T/root
PORT=$(free_port)
mkdir -p "$ROOT/var/lib/libvirt/images"
truncate -s 1G "$ROOT/var/lib/libvirt/images/vm1.raw"
head -c 4M /dev/urandom | dd of="$ROOT/var/lib/libvirt/images/vm1.raw" \
	conv=notrunc status=none

# The blocks, with the substitution.
awk '
	/^## / { insec = ($0 ~ /^## Quick start/ || $0 ~ /^## Primary mode/) }
	insec && /^```sh$/ { inblk = 1; print "# ---- block " ++n; next }
	inblk && /^```$/ { inblk = 0; next }
	inblk { print }
' "$README" >"$T/blocks.sh"
nblocks=$(grep -c '^# ---- block' "$T/blocks.sh")
[ "$nblocks" -ge 8 ] || fail "only $nblocks sh blocks found in the README"
sed -e "s|/etc/colofs|$ROOT/etc/colofs|g" \
	-e "s|/var/lib/|$ROOT/var/lib/|g" \
	-e "s|/tmp/pair|$ROOT/tmp/pair|g" \
	-e "s|secondary-host:10809|127.0.0.1:$PORT|g" \
	-e "s|0\.0\.0\.0:10809|127.0.0.1:$PORT|g" \
	-e "s|192\.0\.2\.10|127.0.0.1|g" \
	-e "s|^make install\$|: make install, see test-ops-install|" \
	"$T/blocks.sh" >"$T/run.sh"
# Each traced line with the time it started, for a slow or failed run.
sed -i "1i PS4='+ \$(date +%T.%N | cut -c1-12) '" "$T/run.sh"

for m in "$ROOT/var/lib/colofs/vm1" "$ROOT/tmp/pair/s" "$ROOT/tmp/pair/p"; do
	at_exit "fusermount3 -u $m"
done
BUILD_DIR=$(dirname "$COLOFS_BIN")
PATH=$BUILD_DIR:$PATH bash -ex "$T/run.sh" >"$T/run.log" 2>&1 || {
	tail -n 40 "$T/run.log" >&2
	fail "a README block failed (above: the last lines of the run)"
}
grep -q "^state=done" <(cat "$ROOT/var/lib/colofs/vm1/.colo/status") ||
	fail "the quick start did not end in done"
[ -z "${README_TRACE:-}" ] || cat "$T/run.log" >&2
ok "the README's $nblocks sh blocks ran as written (quick start: done; primary mode: cmp equal)"
# Unmount in order: the primary before its secondary.
fusermount3 -u "$ROOT/tmp/pair/p"
fusermount3 -u "$ROOT/tmp/pair/s"
fusermount3 -u "$ROOT/var/lib/colofs/vm1"
