#!/usr/bin/env bash
# TLS with X.509 certificates (QEMU's and nbdkit's layout: ca-cert.pem,
# server-cert.pem, server-key.pem; clients: ca-cert.pem, client-cert.pem,
# client-key.pem), made with certtool.  nbdinfo, nbdcopy and qemu-img over
# nbds:// and nbds+unix://; refusals of a certificate from another CA, an
# expired one, none at all (tls_verify_peer), and an identity outside
# tls_authz: each leaves S byte-for-byte unchanged and is counted.
. "$(dirname "$0")/lib.sh"
. "$(dirname "$0")/tls.sh"
command -v nbdcopy >/dev/null || skip "nbdcopy not installed (libnbd-bin)"

pki_dirs
P=$T/pki
make_ca "$P/other" "another CA"
make_cert "$P/other" "$P/rogue" client primary		# same name, wrong CA
cp "$P/ca/ca-cert.pem" "$P/rogue/"
make_cert "$P/ca" "$P/expired" client primary expired
cp "$P/ca/ca-cert.pem" "$P/expired/"
make_cert "$P/ca" "$P/intruder" client intruder		# valid, not in authz
cp "$P/ca/ca-cert.pem" "$P/intruder/"
mkdir -p "$P/nocert" && cp "$P/ca/ca-cert.pem" "$P/nocert/"

make_image "$T/vda.img" 8M
head -c 4M /dev/urandom >"$T/data"
port=$(free_port)
EXTRA_CONFIG="tls_certificates = $P/server
tls_authz = CN=primary,O=colofs tests" write_config
sed -i "s|^listen = .*|listen = 127.0.0.1:$port|" "$T/colofs.ini"
start_colofs
at_exit stop_colofs
expect_status nbd.tls require

S() { sha256sum "$T/vda.img" | cut -d' ' -f1; }
uri() { echo "nbds://127.0.0.1:$port/vda?tls-certificates=${1:-$P/client}"; }

nbdinfo "$(uri)" | grep -q 'with TLS' || fail "nbdinfo over nbds://"
nbdcopy "$T/data" "$(uri)" || fail "nbdcopy into nbds://"
nbdcopy "$(uri)" "$T/back" || fail "nbdcopy from nbds://"
cmp "$T/data" <(head -c 4M "$T/back") || fail "nbdcopy over TLS: data differs"
cmp "$T/data" <(head -c 4M "$T/vda.img") || fail "S does not hold what was written"
QOBJ="tls-creds-x509,id=tls0,dir=$P/client,endpoint=client"
QNBD="driver=nbd,server.type=inet,server.host=127.0.0.1,server.port=$port,export=vda,tls-creds=tls0"
head -c 1M /dev/urandom >"$T/q"
qemu-img convert -n --object "$QOBJ" -f raw "$T/q" --target-image-opts "$QNBD" ||
	fail "qemu-img convert into the export over TLS"
cmp "$T/q" <(head -c 1M "$T/vda.img") || fail "qemu-img's write is not in S"
ok "nbdinfo, nbdcopy and qemu-img over nbds:// with certificates"

s0=$(S)
refused() {	# refused WHAT STATUS-KEY CLIENT-DIR
	local what=$1 key=$2 before
	before=$(status_get "$key")
	if nbdcopy "$T/q" "$(uri "$3")" >/dev/null 2>&1; then
		fail "$what: the client got in"
	fi
	[ "$(S)" = "$s0" ] || fail "$what: S changed"
	wait_for 5 status_gt "$key" "$before" ||
		fail "$what: $key stayed $before"
	ok "refused: $what ($key=$(status_get "$key"))"
}
refused "a certificate from another CA" nbd.tls_handshake_failures "$P/rogue"
refused "an expired certificate" nbd.tls_handshake_failures "$P/expired"
refused "no client certificate (tls_verify_peer)" nbd.tls_handshake_failures "$P/nocert"
refused "an identity outside tls_authz" nbd.tls_authz_refused "$P/intruder"
stop_colofs

# nbds+unix://, and tls_verify_peer = false: no client certificate needed.
sed -i "s|^listen = .*|listen = unix:$T/nbd.sock|; /^tls_authz/d" "$T/colofs.ini"
echo "tls_verify_peer = false" >"$T/extra"
sed -i "/^tls_certificates/r $T/extra" "$T/colofs.ini"
start_colofs
uuri() { echo "nbds+unix:///vda?socket=$T/nbd.sock&tls-certificates=$1"; }
nbdcopy "$T/q" "$(uuri "$P/nocert")" ||
	fail "nbdcopy over nbds+unix:// without a client certificate (verify off)"
nbdinfo "$(uuri "$P/client")" | grep -q 'with TLS' || fail "nbdinfo over nbds+unix://"
ok "nbds+unix://, and tls_verify_peer = false"
