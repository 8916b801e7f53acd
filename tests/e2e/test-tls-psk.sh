#!/usr/bin/env bash
# TLS with a pre-shared key (psktool's keys.psk, as QEMU's tls-creds-psk
# reads it): nbdinfo, nbdcopy and qemu-img over nbds+unix:// and nbds://;
# every refusal (plaintext, a wrong key, an unknown user, an identity
# outside tls_authz, an address outside allow) leaves S byte-for-byte
# unchanged and is counted in .colo/status; SIGHUP re-reads the keys while
# an established session keeps working.
. "$(dirname "$0")/lib.sh"
. "$(dirname "$0")/tls.sh"
command -v nbdcopy >/dev/null || skip "nbdcopy not installed (libnbd-bin)"

make_psk "$T/keys.psk" qemu backup
make_psk "$T/wrong.psk" qemu		# same user, another key
make_psk "$T/mallory.psk" mallory	# a user the server does not know
grep '^backup:' "$T/keys.psk" >"$T/backup.psk"
make_image "$T/vda.img" 8M
head -c 4M /dev/urandom >"$T/data"
EXTRA_CONFIG="tls_psk_file = $T/keys.psk" write_config
start_colofs
at_exit stop_colofs
expect_status nbd.tls require
[ "$(stat -c %a "$T/nbd.sock")" = 600 ] || fail "socket mode $(stat -c %a "$T/nbd.sock")"

S() { sha256sum "$T/vda.img" | cut -d' ' -f1; }
uri() { echo "nbds+unix://${2:-qemu}@/vda?socket=$T/nbd.sock&tls-psk-file=${1:-$T/keys.psk}"; }

# ---- clients ----
nbdinfo "$(uri)" | grep -q 'with TLS' || fail "nbdinfo: no TLS"
nbdcopy "$T/data" "$(uri)" || fail "nbdcopy into nbds+unix://"
nbdcopy "$(uri)" "$T/back" || fail "nbdcopy from nbds+unix://"
cmp "$T/data" <(head -c 4M "$T/back") || fail "nbdcopy over TLS: data differs"
cmp "$T/data" <(head -c 4M "$T/vda.img") || fail "S does not hold what was written"
QOBJ="tls-creds-psk,id=tls0,dir=$T,username=qemu,endpoint=client"
QNBD="driver=nbd,server.type=unix,server.path=$T/nbd.sock,export=vda,tls-creds=tls0"
head -c 1M /dev/urandom >"$T/q"
qemu-img convert -n --object "$QOBJ" -f raw "$T/q" --target-image-opts "$QNBD" ||
	fail "qemu-img convert into the export over TLS"
cmp "$T/q" <(head -c 1M "$T/vda.img") || fail "qemu-img's write is not in S"
qemu-img compare -U --object "$QOBJ" --image-opts "driver=raw,file.filename=$T/vda.img" \
	"$QNBD" >/dev/null || fail "qemu-img compare over TLS"
ok "nbdinfo, nbdcopy and qemu-img over nbds+unix:// with a PSK"
sessions=$(status_get nbd.tls_sessions)
[ "$sessions" -ge 4 ] || fail "nbd.tls_sessions=$sessions"

# ---- refusals: S unchanged, each counted ----
s0=$(S)
# refused WHAT STATUS-KEY COMMAND...: a client that must not get in.
# checked WHAT STATUS-KEY COMMAND...: a raw client whose own checks of
# the server's answers must pass.  Either way S stays as it was and the
# refusal is counted.
refused() { _refusal fail "$@"; }
checked() { _refusal pass "$@"; }
_refusal() {
	local want=$1 what=$2 key=$3 before rc=0
	shift 3
	before=$(status_get "$key")
	"$@" >"$T/client.log" 2>&1 || rc=$?
	if [ "$want" = fail ] && [ "$rc" = 0 ]; then
		fail "$what: the client got in"
	fi
	if [ "$want" = pass ] && [ "$rc" != 0 ]; then
		cat "$T/client.log" >&2
		fail "$what"
	fi
	[ "$(S)" = "$s0" ] || fail "$what: S changed"
	wait_for 5 status_gt "$key" "$before" ||
		fail "$what: $key stayed $before"
	ok "refused: $what ($key=$(status_get "$key"))"
}
refused "a plaintext nbdcopy" nbd.tls_plaintext_refused \
	nbdcopy "$T/data" "nbd+unix:///vda?socket=$T/nbd.sock"
checked "a plaintext client: TLS_REQD, EXPORT_NAME closes" nbd.tls_plaintext_refused \
	"$PY3" "$(dirname "$0")/nbd_tls_raw.py" "unix:$T/nbd.sock" vda plaintext-refused
refused "a wrong key" nbd.tls_handshake_failures nbdcopy "$T/data" "$(uri "$T/wrong.psk")"
refused "an unknown user" nbd.tls_handshake_failures \
	nbdcopy "$T/data" "$(uri "$T/mallory.psk" mallory)"
checked "garbage after STARTTLS" nbd.tls_handshake_failures \
	"$PY3" "$(dirname "$0")/nbd_tls_raw.py" "unix:$T/nbd.sock" vda garbage-after-starttls

# ---- SIGHUP: new keys for new sessions, the old session keeps its own ----
pid=$(colofs_pid)
cat >"$T/hup.py" <<EOPY
import os, sys, time, nbd
def handle(psk):
    h = nbd.NBD()
    h.set_tls(nbd.TLS_REQUIRE)
    h.set_tls_psk_file(psk)
    h.set_tls_username("qemu")
    h.set_export_name("vda")
    h.connect_unix("$T/nbd.sock")
    return h
old = handle("$T/keys.psk")
os.rename("$T/new.psk", "$T/keys.psk")
os.kill($pid, 1)
st = "$MNT/.colo/status"
for i in range(100):
    if "nbd.tls_reloads=1\n" in open(st).read():
        break
    time.sleep(0.1)
else:
    sys.exit("no reload after SIGHUP")
old.pwrite(b"\x5a" * 4096, 0)      # the established session still works
old.flush()
assert old.pread(4096, 0) == b"\x5a" * 4096
old.shutdown()
try:
    handle("$T/old.psk")
    sys.exit("the old key still opens new sessions")
except nbd.Error:
    pass
h = handle("$T/keys.psk")
assert h.pread(4096, 0) == b"\x5a" * 4096
h.shutdown()
print("reload ok")
EOPY
cp "$T/keys.psk" "$T/old.psk"
make_psk "$T/new.psk" qemu
cp "$T/new.psk" "$T/current.psk"
"$PY3" "$T/hup.py" || fail "SIGHUP reload"
kill -0 "$pid" || fail "colofs died on SIGHUP"
expect_status nbd.tls_reloads 1
# A broken key file: the reload fails, the keys in use stay.
echo "this is not a key file" >"$T/keys.psk"
kill -HUP "$pid"
wait_for 10 grep -qx 'nbd.tls_reload_failures=1' "$MNT/.colo/status" ||
	fail "a broken key file was not reported"
nbdinfo "$(uri "$T/current.psk")" >/dev/null || fail "a failed reload dropped the keys in use"
ok "SIGHUP re-reads the keys; established sessions keep theirs; a bad file keeps the old"
stop_colofs

# ---- TCP: nbds://, tls_authz and allow ----
cp "$T/current.psk" "$T/keys.psk"
cat "$T/backup.psk" >>"$T/keys.psk"
port=$(free_port)
sed -i "s|^listen = .*|listen = 127.0.0.1:$port|" "$T/colofs.ini"
printf 'tls_authz = qemu\nallow = 127.0.0.0/8\n' >>"$T/tmp.ini"
sed -i "/^tls_psk_file/r $T/tmp.ini" "$T/colofs.ini"
start_colofs
turi() { echo "nbds://${2:-qemu}@127.0.0.1:$port/vda?tls-psk-file=${1:-$T/keys.psk}"; }
nbdinfo "$(turi)" | grep -q 'with TLS' || fail "nbdinfo over nbds://"
nbdcopy "$T/data" "$(turi)" || fail "nbdcopy over nbds://"
cmp "$T/data" <(head -c 4M "$T/vda.img") || fail "nbdcopy over nbds://: S differs"
ok "nbdinfo and nbdcopy over nbds:// (TCP)"
s0=$(S)
refused "an identity outside tls_authz" nbd.tls_authz_refused \
	nbdcopy "$T/q" "$(turi "$T/backup.psk" backup)"
stop_colofs
sed -i "s|^allow = .*|allow = 192.0.2.0/24, ::1|" "$T/colofs.ini"
start_colofs
refused "an address outside allow" nbd.allow_refused nbdcopy "$T/q" "$(turi)"
ok "TCP refusals"

# An IPv6 socket: IPv4 clients arrive as ::ffff:a.b.c.d and match IPv4
# entries; ::1 is outside "127.0.0.1".
stop_colofs
sed -i "s|^listen = .*|listen = [::]:$port|; s|^allow = .*|allow = 127.0.0.1|" "$T/colofs.ini"
start_colofs
nbdinfo "$(turi)" >/dev/null || fail "an IPv4 client of an IPv6 socket inside allow was refused"
refused "::1 outside allow = 127.0.0.1" nbd.allow_refused \
	nbdcopy "$T/q" "nbds://qemu@[::1]:$port/vda?tls-psk-file=$T/keys.psk"
ok "allow on an IPv6 socket"
