#!/usr/bin/env bash
# make install DESTDIR= installs the binaries, the man pages (roff that
# man renders), the unit and the sample config; the sample is never
# overwritten; an install under a real PREFIX passes systemd-analyze
# verify (its Exec paths and man pages exist); make uninstall removes
# what it installed and keeps a changed config.
. "$(dirname "$0")/lib.sh"

ROOT=$(cd "$(dirname "$0")/../.." && pwd)
BUILD=${COLOFS_BUILD:-$ROOT/build}
command -v go-md2man >/dev/null || skip "go-md2man is not installed (make deps)"
mk() { make --no-print-directory -s -C "$ROOT" BUILD="$BUILD" "$@"; }

D=$T/dest
mk install DESTDIR="$D" >"$T/install.log" 2>&1 || {
	cat "$T/install.log" >&2
	fail "make install DESTDIR=$D"
}
want="etc/colofs/example.ini
usr/local/bin/colofs
usr/local/bin/colofsctl
usr/local/lib/systemd/system/colofs@.service
usr/local/share/man/man5/colofs.ini.5
usr/local/share/man/man8/colofs.8
usr/local/share/man/man8/colofsctl.8"
got=$(cd "$D" && find . -type f | sed 's|^\./||' | sort)
[ "$got" = "$want" ] || fail "installed files:
$got
want:
$want"
[ -x "$D/usr/local/bin/colofsctl" ] || fail "colofsctl not executable"
"$D/usr/local/bin/colofs" --version | grep -q '^colofs [0-9]' || fail "colofs --version"
"$D/usr/local/bin/colofsctl" --help | grep -q 'failover \[--wait\]' || fail "colofsctl --help"
"$D/usr/local/bin/colofs" -c "$D/etc/colofs/example.ini" --dump-config >/dev/null ||
	fail "the sample config does not load"
grep -q '^ExecStart=/usr/local/bin/colofs -c /etc/colofs/%i.ini --holder$' \
	"$D/usr/local/lib/systemd/system/colofs@.service" || fail "unit paths"
ok "make install DESTDIR: the files, the sample loads"

for page in man8/colofs.8 man5/colofs.ini.5 man8/colofsctl.8; do
	f=$D/usr/local/share/man/$page
	head -n 3 "$f" | grep -q '^\.TH ' || fail "$page is not roff"
	MANWIDTH=80 man -l "$f" >"$T/page" 2>/dev/null || fail "man -l $page"
	name=$(basename "$page" | sed 's/\.[0-9]$//')
	grep -q "^NAME" "$T/page" || fail "$page: no NAME"
	grep -q "^       $name - " "$T/page" || fail "$page: NAME line"
	[ "$(wc -l <"$T/page")" -gt 40 ] || fail "$page: too short"
done
# The pages are the markdown's: a sentence of each doc is in its page.
MANWIDTH=500 man -l "$D/usr/local/share/man/man8/colofsctl.8" 2>/dev/null |
	grep -q "The status's disks=N is the array's length" || fail "colofsctl.8 drifted from doc/"
ok "man pages render with man -l"

# Not over an existing config.
echo "; mine" >>"$D/etc/colofs/example.ini"
mk install DESTDIR="$D" >/dev/null 2>&1 || fail "second install"
tail -n 1 "$D/etc/colofs/example.ini" | grep -q '^; mine$' || fail "config overwritten"
mk uninstall DESTDIR="$D" >/dev/null 2>&1 || fail "make uninstall"
got=$(cd "$D" && find . -type f | sed 's|^\./||')
[ "$got" = etc/colofs/example.ini ] || fail "after uninstall: $got"
ok "an existing config is kept by install and uninstall"

# systemd-analyze verify needs the unit's binaries and man pages where it
# says: install under a real prefix.
command -v systemd-analyze >/dev/null || skip "no systemd-analyze (make deps)"
P=$T/prefix
mk install PREFIX="$P" SYSCONFDIR="$T/etc" >/dev/null 2>&1 || fail "make install PREFIX"
unit=$P/lib/systemd/system/colofs@.service
grep -q "^ExecStart=$P/bin/colofs -c $T/etc/colofs/%i.ini --holder$" "$unit" || fail "unit paths under PREFIX"
MANPATH=$P/share/man systemd-analyze verify "$unit" >"$T/verify" 2>&1 || {
	cat "$T/verify" >&2
	fail "systemd-analyze verify"
}
[ ! -s "$T/verify" ] || fail "systemd-analyze verify said: $(cat "$T/verify")"
ok "systemd-analyze verify passes on the installed unit"
