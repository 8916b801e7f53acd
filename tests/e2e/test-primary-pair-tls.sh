#!/usr/bin/env bash
# A colofs pair linked by TLS: the secondary's listener requires TLS (a
# PSK over TCP, then X.509 certificates over a unix socket) and the
# primary's libnbd link brings the matching client credentials.  The first
# sync and the primary VM's writes cross the link; after a checkpoint on
# each side the secondary's view equals the primary's file, and the
# secondary counted TLS sessions and no plaintext.  A primary with the
# wrong key is refused at start, says why, and the secondary's disk is
# unchanged.
. "$(dirname "$0")/lib.sh"
. "$(dirname "$0")/tls.sh"
. "$(dirname "$0")/pair.sh"

head -c 8M /dev/urandom >"$T/p.img"
truncate -s 8M "$T/s.img"
make_psk "$T/keys.psk" colofs
make_psk "$T/wrong.psk" colofs
pki_dirs

# sconfig LISTEN CREDENTIAL-LINE / pconfig URI CREDENTIAL-LINES...
sconfig() {
	cat >"$T/s.ini" <<EOC
[colofs]
mountpoint = $SMNT
listen = $1
state_dir = $T/sstate
$2

[disk "vda"]
image = $T/s.img
EOC
}
pconfig() {
	local uri=$1
	shift
	{
		printf '[colofs]\nmountpoint = %s\nmode = primary\n' "$PMNT"
		printf 'state_dir = %s\nsecondary_timeout = 5s\n\n' "$T/state"
		printf '[disk "vda"]\nimage = %s\nsecondary = %s\n' "$T/p.img" "$uri"
		printf '%s\n' "$@"
	} >"$T/p.ini"
}

# round WHAT: sync, write, checkpoint both, compare, stop both.
round() {
	start_secondary
	start_primary
	pctl start || fail "$1: start: $(cat "$PMNT/.colo/error")"
	wait_pstate replicating
	sctl start || fail "$1: secondary start"
	dd if=/dev/urandom of="$PMNT/vda" bs=64K count=16 seek=7 \
		conv=notrunc,fsync status=none || fail "$1: dd on the primary"
	pctl checkpoint || fail "$1: checkpoint: $(cat "$PMNT/.colo/error")"
	sctl checkpoint || fail "$1: secondary checkpoint"
	same_disks "$1"
	[ "$(sget nbd.tls_sessions)" -ge 1 ] ||
		fail "$1: no TLS session counted: $(grep ^nbd.tls "$SMNT/.colo/status")"
	[ "$(sget nbd.tls_plaintext_refused)" = 0 ] ||
		fail "$1: a plaintext attempt was counted"
	fusermount3 -u "$PMNT"
	wait_exit "$PRI_PID"
	fusermount3 -u "$SMNT"
	wait_exit "$SEC_PID"
}

port=$(free_port)
sconfig "127.0.0.1:$port" "tls_psk_file = $T/keys.psk"
pconfig "nbds://127.0.0.1:$port/vda" \
	"secondary_tls_psk_file = $T/keys.psk" "secondary_tls_username = colofs"
round "TLS-PSK over TCP"

# A wrong key: refused at start, nothing reaches the secondary's disk.
before=$(sha256sum <"$T/s.img")
start_secondary
pconfig "nbds://127.0.0.1:$port/vda" \
	"secondary_tls_psk_file = $T/wrong.psk" "secondary_tls_username = colofs"
start_primary
pctl start 2>/dev/null && fail "start succeeded with a wrong key"
[ "$(pget state)" = none ] || fail "state $(pget state) after a wrong key"
grep -q "secondary" "$PMNT/.colo/error" ||
	fail "no reason for the refusal: $(cat "$PMNT/.colo/error")"
wait_for 10 sh -c "[ \$(sed -n 's/^nbd.tls_handshake_failures=//p' $SMNT/.colo/status) -ge 1 ]" ||
	fail "the secondary did not count the failed handshake"
why=$(cat "$PMNT/.colo/error")
fusermount3 -u "$PMNT"
wait_exit "$PRI_PID"
fusermount3 -u "$SMNT"
wait_exit "$SEC_PID"
[ "$(sha256sum <"$T/s.img")" = "$before" ] ||
	fail "a refused primary changed the secondary's disk"
ok "a wrong key is refused ($why), S unchanged"

sconfig "unix:$T/s.sock" "tls_certificates = $T/pki/server"
pconfig "nbds+unix:///vda?socket=$T/s.sock&tls-hostname=localhost" \
	"secondary_tls_certificates = $T/pki/client"
round "TLS with X.509 certificates over a unix socket"
