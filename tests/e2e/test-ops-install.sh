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
usr/local/lib/ocf/resource.d/colofs/colofs
usr/local/lib/systemd/system/colofs@.service
usr/local/share/bash-completion/completions/colofsctl
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
"$D/usr/local/bin/colofsctl" --version | grep -q '^colofsctl [0-9]' || fail "colofsctl --version"
# The completion offers the commands and wait's states.
if [ -r /usr/share/bash-completion/bash_completion ]; then
	got=$(bash -c '. /usr/share/bash-completion/bash_completion
		. "$1"
		try() { COMP_LINE=$1; COMP_POINT=${#1}; read -ra COMP_WORDS <<<"$1"
			COMP_CWORD=$((${#COMP_WORDS[@]} - 1)); _colofsctl
			echo "${COMPREPLY[*]}"; }
		try "colofsctl -m /x wait r"
		try "colofsctl re"' _ \
		"$D/usr/local/share/bash-completion/completions/colofsctl")
	[ "$got" = "running replicating
resync restart" ] || fail "bash completion: $got"
fi
grep -q '^ExecStart=/usr/local/bin/colofs -c /etc/colofs/%i.ini --holder$' \
	"$D/usr/local/lib/systemd/system/colofs@.service" || fail "unit paths"
agent=$D/usr/local/lib/ocf/resource.d/colofs/colofs
[ -x "$agent" ] || fail "the OCF agent is not executable"
# The installed agent, as Pacemaker runs it: meta-data needs no config.
if [ -r /usr/lib/ocf/lib/heartbeat/ocf-shellfuncs ]; then
	OCF_ROOT=/usr/lib/ocf "$agent" meta-data >"$T/meta.xml" || fail "agent meta-data"
	grep -q '<resource-agent name="colofs"' "$T/meta.xml" || fail "agent meta-data: $(head -c 300 "$T/meta.xml")"
	grep -q 'default="/usr/local/bin/colofs"' "$T/meta.xml" || fail "the installed agent's default binary is not BINDIR's"
	if command -v xmllint >/dev/null && [ -r /usr/share/resource-agents/ra-api-1.dtd ]; then
		(cd /usr/share/resource-agents && xmllint --noout --valid - <"$T/meta.xml") ||
			fail "the agent's meta-data is not valid against ra-api-1.dtd"
	fi
	rc=0
	OCF_ROOT=/usr/lib/ocf "$agent" no-such-action >/dev/null || rc=$?
	[ $rc -eq 3 ] || fail "unknown action: not OCF_ERR_UNIMPLEMENTED (3)"
fi
ok "make install DESTDIR: the files, the sample loads, the OCF agent answers meta-data"

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
