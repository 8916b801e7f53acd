#!/usr/bin/env bash
# TLS under abuse, and the listener's secure defaults:
#   - a client that stalls inside the TLS handshake is closed at the
#     handshake deadline, and others are served meanwhile;
#   - a flood of tiny TLS records (one byte each) does not stop other
#     clients, and every one of its requests is answered;
#   - a non-loopback listen without credentials is refused by
#     --check-config (and at start) with a message naming the risk, unless
#     tls = off is written;
#   - the unix socket is 0600 under umask 000, or listen_mode/listen_group.
. "$(dirname "$0")/lib.sh"
. "$(dirname "$0")/tls.sh"
command -v nbdcopy >/dev/null || skip "nbdcopy not installed (libnbd-bin)"
RAW="$PY3 $(dirname "$0")/nbd_tls_raw.py"

pki_dirs
make_image "$T/vda.img" 8M
head -c 8M /dev/urandom >"$T/data"
EXTRA_CONFIG="tls_certificates = $T/pki/server" write_config
(umask 000 && start_colofs)
at_exit stop_colofs
[ "$(stat -c %a "$T/nbd.sock")" = 600 ] ||
	fail "socket mode $(stat -c %a "$T/nbd.sock") under umask 000, want 600"
ok "the unix socket is 0600 whatever the umask"
uri="nbds+unix:///vda?socket=$T/nbd.sock&tls-certificates=$T/pki/client"

# A client stalls inside the handshake; another is served meanwhile.
$RAW "unix:$T/nbd.sock" vda stall-in-handshake 16 >"$T/stall.log" 2>&1 &
stall=$!
wait_for 5 status_gt nbd.negotiating 0 || fail "the staller is not negotiating"
nbdcopy "$T/data" "$uri" || fail "nbdcopy while a client stalls in the handshake"
cmp "$T/data" "$T/vda.img" || fail "S differs from what nbdcopy wrote"
ok "served while a client stalls inside the TLS handshake"

# A flood of one-byte TLS records, with another client working meanwhile.
$RAW "unix:$T/nbd.sock" vda record-flood "$T/pki/client" 4 >"$T/flood.log" 2>&1 &
flood=$!
sleep 1
head -c 8M /dev/urandom >"$T/data2"
nbdcopy "$T/data2" "$uri" || fail "nbdcopy during a TLS record flood"
nbdcopy "$uri" "$T/back" || fail "nbdcopy back during a TLS record flood"
cmp "$T/data2" "$T/back" || fail "data differs during a TLS record flood"
wait "$flood" || { cat "$T/flood.log" >&2; fail "the flooding client was not answered"; }
cat "$T/flood.log"
ok "a flood of TLS records does not stop other clients"

wait "$stall" || { cat "$T/stall.log" >&2; fail "the stalled handshake was not closed"; }
cat "$T/stall.log"
ok "a stalled TLS handshake is closed at the deadline"
[ "$(status_get nbd.negotiating)" = 0 ] || fail "nbd.negotiating=$(status_get nbd.negotiating)"
stop_colofs

# listen_mode and listen_group.
printf 'listen_mode = 0660\nlisten_group = daemon\n' >"$T/extra"
sed -i "/^tls_certificates/r $T/extra" "$T/colofs.ini"
(umask 077 && start_colofs)
[ "$(stat -c '%a %G' "$T/nbd.sock")" = "660 daemon" ] ||
	fail "socket $(stat -c '%a %G' "$T/nbd.sock"), want 660 daemon"
ok "listen_mode and listen_group"
stop_colofs

# Secure by default.
cat >"$T/open.ini" <<EOC
[colofs]
mountpoint = $MNT
listen = 0.0.0.0:$(free_port)
[disk "vda"]
image = $T/vda.img
EOC
if "$COLOFS_BIN" -c "$T/open.ini" --check-config 2>"$T/err"; then
	fail "--check-config accepted a plaintext listen on 0.0.0.0"
fi
grep -q "anyone who can reach it could read and overwrite the disks" "$T/err" ||
	fail "the refusal does not name the risk: $(cat "$T/err")"
if "$COLOFS_BIN" -c "$T/open.ini" -f 2>"$T/err"; then
	fail "colofs started with a plaintext listen on 0.0.0.0"
fi
mountpoint -q "$MNT" && fail "mounted after a refused config"
echo "tls = off" >>"$T/open.ini.tmp"
sed -i "/^listen/r $T/open.ini.tmp" "$T/open.ini"
"$COLOFS_BIN" -c "$T/open.ini" --check-config >/dev/null ||
	fail "--check-config refused tls = off written out"
echo "tls_certificates = $T/pki/server" >"$T/open.ini.tmp"
sed -i "s|^tls = off|tls_certificates = $T/pki/server|" "$T/open.ini"
"$COLOFS_BIN" -c "$T/open.ini" --check-config >/dev/null ||
	fail "--check-config refused a non-loopback listen with certificates"
rm "$T/pki/server/server-key.pem"
if "$COLOFS_BIN" -c "$T/open.ini" --check-config 2>"$T/err"; then
	fail "--check-config accepted certificates without their key"
fi
grep -q "server-key.pem" "$T/err" || fail "no mention of the missing key: $(cat "$T/err")"
ok "secure by default at --check-config and at start"
