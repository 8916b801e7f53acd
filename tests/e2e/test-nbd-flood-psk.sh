#!/usr/bin/env bash
# Issue 17: under a handshake flood from another address (200 idle, 64
# stalled-handshake and 64 stalled-TLS connections, each reconnecting when
# closed, and 8 threads connecting and closing), the real PSK client gets
# its answer within 10 s, every try.  The flood comes from 127.0.0.2, the
# client from 127.0.0.1: max_handshakes_per_address keeps the flood's
# share of the handshake pool bounded.  make check runs 5 tries (main failed at try 2 of 5);
# tests/e2e/long/test-nbd-flood-psk-long.sh runs 20 tries 3 s apart.
. "$(dirname "$0")/lib.sh"
. "$(dirname "$0")/tls.sh"
command -v nbdinfo >/dev/null || skip "nbdinfo not installed (libnbd-bin)"
HERE=$(cd "$(dirname "$0")" && pwd)
tries=${FLOOD_TRIES:-5}
gap=${FLOOD_GAP:-0}	# seconds between tries (pacing, not a wait for state)

make_psk "$T/keys.psk" qemu
make_image "$T/vda.img" 4M
port=$(free_port)
cat >"$T/colofs.ini" <<EOC
[colofs]
mountpoint = $MNT
listen = 127.0.0.1:$port
tls_psk_file = $T/keys.psk
state_dir = $T/state

[disk "vda"]
image = $T/vda.img
EOC
start_colofs_fg
at_exit stop_colofs

"$PY3" "$HERE/nbd_flood.py" "127.0.0.1:$port" 127.0.0.2 200 64 64 8 \
	$((tries * (gap + 15) + 60)) >"$T/flood.out" 2>"$T/flood.err" &
flood=$!
at_exit "kill $flood"
wait_for 60 grep -q ready "$T/flood.out" ||
	{ cat "$T/flood.err"; fail "the flood did not get going"; }

uri="nbds://qemu@127.0.0.1:$port/vda?tls-psk-file=$T/keys.psk"
worst=0
for ((i = 1; i <= tries; i++)); do
	start=$(date +%s%N)
	size=$(timeout 10 nbdinfo --size "$uri" 2>"$T/client.err") ||
		{ cat "$T/client.err"; tail -n 5 "$T/colofs.log";
		  fail "try $i: the PSK client got no answer within 10 s under the flood"; }
	ms=$((($(date +%s%N) - start) / 1000000))
	[ "$ms" -gt "$worst" ] && worst=$ms
	[ "$size" = 4194304 ] || fail "try $i: size $size"
	sleep "$gap"
done
kill "$flood" 2>/dev/null || true
wait "$flood" 2>/dev/null || true
ok "$tries PSK clients answered under the flood (slowest ${worst} ms; nbd.evicted=$(status_get nbd.evicted), nbd.refused=$(status_get nbd.refused))"
