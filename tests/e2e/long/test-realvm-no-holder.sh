#!/usr/bin/env bash
# The negative control of tests/e2e/test-realvm-live-restart.sh: the same
# guest on a primary started without --holder.  kill -9 of colofs then
# takes the mount away under QEMU, and the guest must see it (I/O errors,
# ext4's journal aborted): the real-guest test fails.  This proves that
# the test can see what live restart prevents.
. "$(dirname "$0")/../lib.sh"
rc=0
REALVM_NO_HOLDER=1 bash "$(dirname "$0")/../test-realvm-live-restart.sh" \
	>"$T/out" 2>&1 || rc=$?
[ "$rc" = 77 ] && skip "$(tail -n 1 "$T/out")"
[ "$rc" = 1 ] || { cat "$T/out"; fail "without --holder the test exited $rc, want 1"; }
grep -q "FAIL: the guest saw errors" "$T/out" ||
	{ cat "$T/out"; fail "without --holder the test failed for another reason"; }
grep -m 1 -E "I/O error|Aborting journal" "$T/out" >&2 || true
ok "without --holder, kill -9 gives the guest I/O errors and the real-guest test fails"
