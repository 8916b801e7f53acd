#!/usr/bin/env bash
# The command line: --help, --version, usage errors, --check-config and
# --dump-config (whose output reads back to the same config).
. "$(dirname "$0")/lib.sh"

"$COLOFS_BIN" --help >"$T/out" || fail "--help exited non-zero"
grep -q -- "-c FILE" "$T/out" || fail "--help lacks the synopsis"
grep -q -- "--check-config" "$T/out" || fail "--help lacks --check-config"
"$COLOFS_BIN" -h | cmp -s - "$T/out" || fail "-h differs from --help"
"$COLOFS_BIN" --version >"$T/out" || fail "--version exited non-zero"
grep -Eq '^colofs [0-9]+\.[0-9]+' "$T/out" || fail "--version: $(cat "$T/out")"
ok "--help and --version"

rc=0; "$COLOFS_BIN" 2>"$T/err" || rc=$?
[ "$rc" = 2 ] || fail "no -c: exit $rc, want 2"
grep -q "\-c FILE is required" "$T/err" || fail "no -c: $(cat "$T/err")"
rc=0; "$COLOFS_BIN" --bogus 2>"$T/err" || rc=$?
[ "$rc" = 2 ] || fail "unknown option: exit $rc, want 2"
rc=0; "$COLOFS_BIN" -c x extra 2>"$T/err" || rc=$?
[ "$rc" = 2 ] || fail "extra argument: exit $rc, want 2"
ok "usage errors exit 2"

make_image "$T/vda.img" 1M
write_config
"$COLOFS_BIN" -c "$T/colofs.ini" --check-config >"$T/out" ||
	fail "--check-config on a good config: $(cat "$T/out")"
grep -q ": ok" "$T/out" || fail "--check-config says: $(cat "$T/out")"
assert_not_mounted
rm "$T/vda.img"
rc=0; "$COLOFS_BIN" -c "$T/colofs.ini" --check-config 2>"$T/err" || rc=$?
[ "$rc" = 1 ] || fail "--check-config with a missing image: exit $rc"
grep -q "vda.img" "$T/err" || fail "--check-config: $(cat "$T/err")"
make_image "$T/vda.img" 1M
echo "nonsense = 1" >>"$T/colofs.ini"
rc=0; "$COLOFS_BIN" -c "$T/colofs.ini" --check-config 2>"$T/err" || rc=$?
[ "$rc" = 1 ] || fail "--check-config with an unknown key: exit $rc"
grep -q "colofs.ini:[0-9]*: unknown key 'nonsense'" "$T/err" ||
	fail "--check-config: $(cat "$T/err")"
write_config
ok "--check-config: ok, missing image, unknown key"

"$COLOFS_BIN" -c "$T/colofs.ini" --dump-config >"$T/dump.ini" ||
	fail "--dump-config"
for k in mountpoint mode listen buffer buffer_limit allow_other image format \
	export owner group; do
	grep -q "^$k = " "$T/dump.ini" || fail "--dump-config lacks $k"
done
grep -q "^format = raw" "$T/dump.ini" || fail "default format not shown"
grep -q "^mode = 0600" "$T/dump.ini" || fail "default disk mode not shown"
"$COLOFS_BIN" -c "$T/dump.ini" --dump-config >"$T/dump2.ini" ||
	fail "the dump does not load: $(cat "$T/dump.ini")"
diff <(grep -v '^;' "$T/dump.ini") <(grep -v '^;' "$T/dump2.ini") ||
	fail "the dump does not read back to the same config"
assert_not_mounted
ok "--dump-config prints every key with defaults and reads back"
