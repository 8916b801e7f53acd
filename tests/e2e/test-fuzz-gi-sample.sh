#!/usr/bin/env bash
# A 5-second libFuzzer run of the generation identifiers' parser (the text
# a secondary sends in its NBD export description, core/gi.c): fails on
# any crash, sanitizer report or a text that does not round-trip.
. "$(dirname "$0")/lib.sh"
command -v clang >/dev/null || skip "clang not installed"
ROOT=$(cd "$(dirname "$0")/../.." && pwd)
rc=0
"$ROOT/tests/fuzz/run-gi" "${GI_FUZZ_SECONDS:-5}" "$T/fuzz" || rc=$?
[ "$rc" = 77 ] && skip "fuzz: toolchain missing"
[ "$rc" = 0 ] || fail "fuzzer found a problem (see above)"
ok "fuzz sample"
