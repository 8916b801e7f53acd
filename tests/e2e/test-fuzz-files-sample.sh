#!/usr/bin/env bash
# A 5-second libFuzzer run of each parser of a file root may not own alone
# (the state file, the dirty bitmap, the INI config, the failover journal,
# the generation identifiers of an export description:
# tests/fuzz/run-files), 120 s each in check-long
# (long/test-fuzz-files.sh).  Fails on any crash,
# leak, sanitizer report or failed invariant (the config's dump must load
# back to the same config: the first run found "export =;x", whose dump was
# a comment).
. "$(dirname "$0")/lib.sh"
command -v clang >/dev/null || skip "clang not installed"
ROOT=$(cd "$(dirname "$0")/../.." && pwd)
rc=0
"$ROOT/tests/fuzz/run-files" "${FILES_FUZZ_SECONDS:-5}" "$T/fuzz" \
	"${COLOFS_BUILD:-$ROOT/build}" || rc=$?
[ "$rc" = 77 ] && skip "fuzz: toolchain missing"
[ "$rc" = 0 ] || fail "fuzzer found a problem (see above)"
ok "file parsers' fuzz sample"
