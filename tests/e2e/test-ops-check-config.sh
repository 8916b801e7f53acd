#!/usr/bin/env bash
# --check-config reports every problem in one run, each with file:line,
# and warns (exit 0) about a credentials file that group or others can
# read and a memory buffer without buffer_limit.
. "$(dirname "$0")/lib.sh"

make_image "$T/vda.img" 4M
cat >"$T/bad.ini" <<EOC
[colofs]
mountpoint = $MNT
buffer = sideways
nbd_max_connections = many
this line has no separator
[disk "vda"]
image = $T/vda.img
format = vhdx
EOC
rc=0
"$COLOFS_BIN" -c "$T/bad.ini" --check-config 2>"$T/err" || rc=$?
[ "$rc" = 1 ] || fail "--check-config exited $rc, want 1"
for l in 3 4 5 8; do
	grep -q "^colofs: $T/bad.ini:$l: " "$T/err" ||
		fail "no problem reported at line $l: $(cat "$T/err")"
done
ok "every problem, each with file:line: $(wc -l <"$T/err") lines"

# The same config, once fixed: warnings only.
echo "psk" >"$T/keys.psk"
psktool -u qemu -p "$T/keys.psk" >/dev/null 2>&1 || skip "psktool not installed"
chmod 644 "$T/keys.psk"
cat >"$T/warn.ini" <<EOC
[colofs]
mountpoint = $MNT
listen = unix:$T/nbd.sock
tls_psk_file = $T/keys.psk
buffer = memory
state_dir = $T/state

[disk "vda"]
image = $T/vda.img
EOC
rc=0
"$COLOFS_BIN" -c "$T/warn.ini" --check-config >"$T/out" 2>"$T/err" || rc=$?
[ "$rc" = 0 ] || fail "warnings failed the check (exit $rc): $(cat "$T/err")"
grep -q "tls_psk_file $T/keys.psk: readable by group or others (mode 0644)" "$T/err" ||
	fail "no warning about the key file's mode: $(cat "$T/err")"
grep -q "buffer = memory without buffer_limit" "$T/err" ||
	fail "no warning about the unbounded memory buffer: $(cat "$T/err")"
ok "warnings: $(grep -c warning "$T/err")"
chmod 600 "$T/keys.psk"
"$COLOFS_BIN" -c "$T/warn.ini" --check-config >"$T/out" 2>"$T/err" || fail "check: $(cat "$T/err")"
grep -q "readable by group" "$T/err" && fail "a 0600 key file warned"
ok "a 0600 key file passes quietly"
