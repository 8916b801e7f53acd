# SPDX-License-Identifier: MIT
# TLS credentials for the tests, made with GnuTLS's own tools (gnutls-bin)
# in the test's $T.  Source after lib.sh.
#
#   make_psk FILE USER...      psktool keys, one line per user
#   make_ca DIR CN             DIR/ca-cert.pem, DIR/ca-key.pem
#   make_cert CA DIR NAME CN [expired]
#                              DIR/NAME-cert.pem and DIR/NAME-key.pem,
#                              signed by CA (a make_ca DIR); for 127.0.0.1
#                              and localhost; "expired": no longer valid
#   pki_dirs                   $T/pki/server (the server's layout:
#                              ca-cert.pem, server-cert.pem, server-key.pem)
#                              and $T/pki/client (QEMU's and libnbd's layout:
#                              ca-cert.pem, client-cert.pem, client-key.pem)
command -v certtool >/dev/null || skip "certtool not installed (gnutls-bin)"
command -v psktool >/dev/null || skip "psktool not installed (gnutls-bin)"

make_psk() {
	local file=$1 u
	shift
	for u in "$@"; do
		psktool -u "$u" -p "$file" >/dev/null || fail "psktool"
	done
	chmod 600 "$file"
}

make_ca() {
	local dir=$1 cn=$2
	mkdir -p "$dir"
	certtool --generate-privkey --key-type=ecdsa --outfile "$dir/ca-key.pem" \
		>/dev/null 2>&1 || fail "certtool privkey"
	cat >"$dir/ca.info" <<EOT
cn = $cn
ca
cert_signing_key
crl_signing_key
expiration_days = 30
EOT
	certtool --generate-self-signed --load-privkey "$dir/ca-key.pem" \
		--template "$dir/ca.info" --outfile "$dir/ca-cert.pem" \
		>/dev/null 2>&1 || fail "certtool CA"
}

make_cert() {
	local ca=$1 dir=$2 name=$3 cn=$4 expired=${5:-}
	mkdir -p "$dir"
	certtool --generate-privkey --key-type=ecdsa \
		--outfile "$dir/$name-key.pem" >/dev/null 2>&1 ||
		fail "certtool privkey"
	{
		echo "cn = $cn"
		echo "organization = colofs tests"
		echo "dns_name = localhost"
		echo "ip_address = 127.0.0.1"
		echo "signing_key"
		echo "encryption_key"
		echo "tls_www_server"
		echo "tls_www_client"
		if [ -n "$expired" ]; then
			echo "activation_date = \"2020-01-01 00:00:00 UTC\""
			echo "expiration_date = \"2020-02-01 00:00:00 UTC\""
		else
			echo "expiration_days = 30"
		fi
	} >"$dir/$name.info"
	certtool --generate-certificate --load-privkey "$dir/$name-key.pem" \
		--load-ca-certificate "$ca/ca-cert.pem" \
		--load-ca-privkey "$ca/ca-key.pem" --template "$dir/$name.info" \
		--outfile "$dir/$name-cert.pem" >/dev/null 2>&1 ||
		fail "certtool certificate $name"
}

pki_dirs() {
	make_ca "$T/pki/ca" "colofs test CA"
	make_cert "$T/pki/ca" "$T/pki/server" server "colofs server"
	cp "$T/pki/ca/ca-cert.pem" "$T/pki/server/"
	make_cert "$T/pki/ca" "$T/pki/client" client "primary"
	cp "$T/pki/ca/ca-cert.pem" "$T/pki/client/"
}

# A free TCP port on 127.0.0.1, picked by the kernel.
# free_port: a TCP port that is free on 127.0.0.1 and on [::].  Picked
# below the kernel's ephemeral range, so that a client's outgoing
# connection (ours, or another test's running beside us) cannot take it
# between this check and colofs's bind, nor while a test re-binds it.
free_port() {
	"$PY3" - <<'EOP'
import random, socket
lo = int(open("/proc/sys/net/ipv4/ip_local_port_range").read().split()[0])
for _ in range(1000):
    port = random.randrange(10000, max(lo, 10001))
    try:
        for fam, addr in ((socket.AF_INET, "127.0.0.1"), (socket.AF_INET6, "::")):
            with socket.socket(fam) as s:
                s.bind((addr, port))
    except OSError:
        continue
    print(port)
    break
else:
    raise SystemExit("free_port: no free port below the ephemeral range")
EOP
}

# status_gt KEY N: .colo/status has KEY above N (for wait_for, which
# must re-read the status at each try).
status_gt() { [ "$(status_get "$1")" -gt "$2" ]; }
