#!/usr/bin/env bash
# A 5-second libFuzzer run of the NBD negotiation and request loop (30 s
# in check-long, long/test-nbd-fuzz.sh), so every make check exercises the
# fuzz target: fails on any crash, leak, sanitizer report or failed
# invariant.
. "$(dirname "$0")/lib.sh"
command -v clang >/dev/null || skip "clang not installed"
ROOT=$(cd "$(dirname "$0")/../.." && pwd)
rc=0
"$ROOT/tests/fuzz/run" "${NBD_FUZZ_SECONDS:-5}" "$T/fuzz" || rc=$?
[ "$rc" = 77 ] && skip "fuzz: toolchain missing"
[ "$rc" = 0 ] || fail "fuzzer found a problem (see above)"
ok "fuzz sample"
