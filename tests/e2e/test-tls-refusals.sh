#!/usr/bin/env bash
# Refusals named in terms of the fix, each with the peer, a log line and a
# count, and in .colo/error:
#   - a wrong PSK key: "wrong key for PSK user 'qemu'", not GnuTLS's "An
#     illegal parameter has been received";
#   - an unknown PSK user: "PSK user 'mallory' is not in tls_psk_file",
#     not "Error in password/key file." (which reads as the server's file
#     being broken);
#   - a plaintext client while TLS is required;
#   - a client outside allow: its address and the allow line to change;
#   - two failed attempts in a row are both logged.
. "$(dirname "$0")/lib.sh"
. "$(dirname "$0")/tls.sh"

make_psk "$T/keys.psk" qemu
make_psk "$T/wrong.psk" qemu		# same user, another key
make_psk "$T/mallory.psk" mallory	# a user the server does not know
make_image "$T/vda.img" 4M
PORT=$(free_port)
EXTRA_CONFIG="tls_psk_file = $T/keys.psk" write_config
sed -i "s|^listen = .*|listen = 127.0.0.1:$PORT|" "$T/colofs.ini"
start_colofs_fg
uri() { echo "nbds://${2:-qemu}@127.0.0.1:$PORT/vda?tls-psk-file=$1"; }

nbdinfo "$(uri "$T/keys.psk")" >/dev/null || fail "the right key is refused"
for i in 1 2; do
	nbdinfo "$(uri "$T/wrong.psk")" >/dev/null 2>&1 &&
		fail "a wrong key was accepted"
done
wait_for 20 sh -c "[ \$(grep -c 'wrong key for PSK user .qemu.' $T/colofs.log) -ge 2 ]" ||
	fail "two wrong keys, not two log lines: $(grep nbd "$T/colofs.log")"
grep -q "refused 127.0.0.1:[0-9]*: TLS: wrong key for PSK user 'qemu'" "$T/colofs.log" ||
	fail "the log line does not name the peer: $(grep -m1 'wrong key' "$T/colofs.log")"
grep -q "illegal parameter" "$T/colofs.log" && fail "GnuTLS's wording leaked: $(grep -m1 'illegal' "$T/colofs.log")"
grep -q "wrong key for PSK user 'qemu'" "$MNT/.colo/error" ||
	fail ".colo/error: $(cat "$MNT/.colo/error")"
expect_status nbd.tls_handshake_failures 2
ok "a wrong key, twice: $(grep -m1 'wrong key' "$T/colofs.log")"

nbdinfo "$(uri "$T/mallory.psk" mallory)" >/dev/null 2>&1 &&
	fail "an unknown user was accepted"
wait_for 20 grep -q "PSK user 'mallory' is not in tls_psk_file $T/keys.psk" "$T/colofs.log" ||
	fail "the unknown user's line: $(grep nbd "$T/colofs.log" | tail -n 3)"
grep -q "Error in password/key file" "$T/colofs.log" &&
	fail "GnuTLS's wording leaked: $(grep -m1 'password/key' "$T/colofs.log")"
grep -q "mallory" "$MNT/.colo/error" || fail ".colo/error: $(cat "$MNT/.colo/error")"
ok "an unknown user: $(grep -m1 'mallory' "$T/colofs.log")"

nbdinfo "nbd://127.0.0.1:$PORT/vda" >/dev/null 2>&1 && fail "a plaintext client was served"
wait_for 20 grep -q "refused 127.0.0.1:[0-9]*: no TLS (tls = require" "$T/colofs.log" ||
	fail "the plaintext refusal is not logged: $(grep nbd "$T/colofs.log" | tail -n 3)"
grep -q "no TLS" "$MNT/.colo/error" || fail ".colo/error: $(cat "$MNT/.colo/error")"
expect_status nbd.tls_plaintext_refused 1
ok "no TLS: $(grep -m1 'no TLS' "$T/colofs.log")"

# allow: a restart with a network that does not hold 127.0.0.1.
fusermount3 -u "$MNT"
wait_exit "$COLOFS_PID"
EXTRA_CONFIG="tls_psk_file = $T/keys.psk
allow = 192.0.2.0/24" write_config
sed -i "s|^listen = .*|listen = 127.0.0.1:$PORT|" "$T/colofs.ini"
start_colofs_fg
nbdinfo "$(uri "$T/keys.psk")" >/dev/null 2>&1 && fail "a client outside allow was served"
wait_for 20 grep -q "refusing a connection: 127.0.0.1:[0-9]* is not in allow" "$T/colofs.log" ||
	fail "the allow refusal is not logged: $(grep nbd "$T/colofs.log" | tail -n 3)"
grep -q "refused 127.0.0.1:[0-9]*: not in allow" "$MNT/.colo/error" ||
	fail ".colo/error: $(cat "$MNT/.colo/error")"
expect_status nbd.allow_refused 1
ok "outside allow: $(grep -m1 'not in allow' "$T/colofs.log")"
