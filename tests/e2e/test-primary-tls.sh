#!/usr/bin/env bash
# The primary's link over TLS with a pre-shared key (psktool), against a
# TLS-only NBD server: qemu-nbd --tls-creds (QEMU's server;
# test-primary-pair-tls.sh links two colofs).  The first sync and
# a write reach the server's image; a wrong key is refused at start, with
# the reason in .colo/error and the state left at none.
. "$(dirname "$0")/lib.sh"
command -v qemu-nbd >/dev/null || skip "qemu-nbd is not installed (qemu-utils)"
command -v psktool >/dev/null || skip "psktool is not installed (gnutls-bin)"
PMNT=$T/pmnt
mkdir -p "$PMNT" "$T/psk" "$T/state"
at_exit "fusermount3 -u $PMNT || umount -l $PMNT"

psktool -u colofs -p "$T/psk/keys.psk" >/dev/null
psktool -u colofs -p "$T/wrong.psk" >/dev/null
head -c 16M /dev/urandom >"$T/p.img"
truncate -s 16M "$T/s.img"
qemu-nbd --object "tls-creds-psk,id=tls0,endpoint=server,dir=$T/psk" \
	--tls-creds tls0 -f raw -x vda -t -k "$T/s.sock" "$T/s.img" \
	2>"$T/qemu-nbd.log" &
QPID=$!
at_exit "kill $QPID"
wait_for 10 test -S "$T/s.sock" || fail "qemu-nbd did not start"

write_pconfig() {
	cat >"$T/p.ini" <<EOC
[colofs]
mountpoint = $PMNT
mode = primary
state_dir = $T/state

[disk "vda"]
image = $T/p.img
secondary = nbds+unix:///vda?socket=$T/s.sock
secondary_tls_psk_file = $1
secondary_tls_username = colofs
EOC
}
pget() { sed -n "s/^$1=//p" "$PMNT/.colo/status"; }

write_pconfig "$T/wrong.psk"
"$COLOFS_BIN" -c "$T/p.ini" -f 2>>"$T/p.log" &
PID=$!
at_exit "kill -9 $PID"
wait_for 10 mountpoint -q "$PMNT" || fail "the primary did not mount"
echo start >"$PMNT/.colo/ctl" 2>/dev/null && fail "start succeeded with a wrong key"
[ "$(pget state)" = none ] || fail "state $(pget state) after a refused start"
grep -q "cannot connect to the secondary" "$PMNT/.colo/error" ||
	fail "no reason: $(cat "$PMNT/.colo/error")"
ok "a wrong key is refused: $(cat "$PMNT/.colo/error")"
fusermount3 -u "$PMNT"
wait_exit "$PID"

write_pconfig "$T/psk/keys.psk"
"$COLOFS_BIN" -c "$T/p.ini" -f 2>>"$T/p.log" &
PID=$!
at_exit "kill -9 $PID"
wait_for 10 mountpoint -q "$PMNT" || fail "the primary did not mount"
echo start >"$PMNT/.colo/ctl" || fail "start over TLS: $(cat "$PMNT/.colo/error")"
wait_for 30 sh -c "grep -qx state=replicating $PMNT/.colo/status" ||
	fail "no replicating over TLS: $(cat "$PMNT/.colo/status")"
dd if=/dev/urandom of="$PMNT/vda" bs=64K count=10 seek=33 conv=notrunc,fsync \
	status=none || fail "dd"
echo checkpoint >"$PMNT/.colo/ctl" || fail "checkpoint over TLS"
[ "$(pget vda.mirrored_bytes)" = $((640 * 1024)) ] ||
	fail "mirrored $(pget vda.mirrored_bytes)"
fusermount3 -u "$PMNT"
wait_exit "$PID"
[ "$EXIT_STATUS" = 0 ] || fail "the primary exited $EXIT_STATUS"
cmp "$T/p.img" "$T/s.img" || fail "the TLS secondary's image differs"
ok "the first sync and the writes went over TLS-PSK; the images are equal"
