#!/usr/bin/env bash
# Bounds on what idle clients can hold: at most 128 connections in the
# handshake at once (max_handshakes; a new one closes the oldest, counted
# in nbd.evicted), and a handshake that does not finish within 10 s is
# closed.  Meanwhile and afterwards a normal client is served.
. "$(dirname "$0")/../lib.sh"
HERE=$(cd "$(dirname "$0")/.." && pwd)
RAW() { timeout 120 "$PY3" "$HERE/nbd_raw.py" "unix:$T/nbd.sock" vda "$@"; }

make_image "$T/vda.img" 4M
write_config
start_colofs
at_exit stop_colofs

# 140 stalled clients: the 12 oldest are closed to make room at once, the
# rest by the handshake deadline (10 s; allow for a slow machine).
RAW stalled 140 25 || fail "stalled handshakes"
[ "$(status_get nbd.evicted)" -ge 12 ] ||
	fail "nbd.evicted=$(status_get nbd.evicted), want >= 12"
wait_for 10 sh -c "grep -qx 'nbd.negotiating=0' '$MNT/.colo/status'" ||
	fail "handshakes still open"
RAW still-serves || fail "not serving after the stalled clients"
ok "connection limit and handshake deadline"
