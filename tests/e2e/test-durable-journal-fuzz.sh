#!/usr/bin/env bash
# A 5-second libFuzzer run of the failover journal's parser (core/
# journal.c, tests/fuzz/fuzz-journal.c), so every make check exercises it:
# fails on any crash, leak, sanitizer report or failed invariant.
. "$(dirname "$0")/lib.sh"
command -v clang >/dev/null || skip "clang not installed"
ROOT=$(cd "$(dirname "$0")/../.." && pwd)
rc=0
FUZZ_TARGET=journal "$ROOT/tests/fuzz/run" "${JOURNAL_FUZZ_SECONDS:-5}" \
	"$T/fuzz" || rc=$?
[ "$rc" = 77 ] && skip "fuzz: toolchain missing"
[ "$rc" = 0 ] || fail "fuzzer found a problem (see above)"
ok "journal fuzz sample"
