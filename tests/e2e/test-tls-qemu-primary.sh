#!/usr/bin/env bash
# A real QEMU primary (as test-qemu-primary.sh) over TLS: first with
# -object tls-creds-psk (username qemu, QEMU's DIR/keys.psk), then with
# -object tls-creds-x509 and a client certificate (colofs verifies it).
# colofs's image must equal the primary's and the view stay put until a
# checkpoint, as in plaintext.
. "$(dirname "$0")/lib.sh"
. "$(dirname "$0")/tls.sh"
. "$(dirname "$0")/../qemu/run.sh"
need_qemu
need_colofs
mkdir -p "$T/psk"
make_psk "$T/psk/keys.psk" qemu
pki_dirs
mkdir -p "$T/psk-run" "$T/x509-run"
run_py primary.py test-tls "$T/psk-run" "$COLOFS_BIN" psk "$T/psk" ||
	fail "QEMU primary to colofs over TLS with a PSK"
ok "a QEMU primary replicates to colofs over TLS (PSK)"
run_py primary.py test-tls "$T/x509-run" "$COLOFS_BIN" x509 "$T/pki" ||
	fail "QEMU primary to colofs over TLS with certificates"
ok "a QEMU primary replicates to colofs over TLS (X.509)"
