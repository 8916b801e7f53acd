#!/usr/bin/env bash
# Issue 17: every man page fits an 80-column terminal: `man --warnings`
# at MANWIDTH=80 says nothing (the markdown tables of doc/ became 300-column
# tbl tables, "table wider than line width"; they are definition lists
# now, .TP paragraphs in roff).  Code blocks (the config samples) are
# printed as written and may still be wider; man does not warn about them.
. "$(dirname "$0")/lib.sh"

ROOT=$(cd "$(dirname "$0")/../.." && pwd)
BUILD=${COLOFS_BUILD:-$ROOT/build}
command -v go-md2man >/dev/null || skip "go-md2man is not installed (make deps)"
command -v man >/dev/null || skip "man is not installed (make deps)"
make --no-print-directory -s -C "$ROOT" BUILD="$BUILD" man >"$T/make.log" 2>&1 ||
	{ cat "$T/make.log"; fail "make man"; }
n=0
for md in "$ROOT"/doc/*.[0-9].md; do
	page=$BUILD/man/$(basename "$md" .md)
	[ -f "$page" ] || fail "$page was not built from $md"
	MANWIDTH=80 man --warnings -l "$page" >"$T/out" 2>"$T/warn" ||
		fail "man -l $page"
	[ -s "$T/warn" ] && { cat "$T/warn"; fail "$(basename "$page"): man --warnings at MANWIDTH=80"; }
	n=$((n + 1))
done
[ "$n" -ge 3 ] || fail "only $n man pages"
ok "$n man pages fit 80 columns, no warnings"
