#!/usr/bin/env bash
# listen = forms: a stale unix socket file is replaced, a regular file in
# its place is refused (nothing is deleted), and [::1]:PORT serves over
# IPv6.
. "$(dirname "$0")/lib.sh"
command -v nbdinfo >/dev/null || skip "nbdinfo not installed (libnbd-bin)"

make_image "$T/vda.img" 1M
write_config

# A stale socket: bound by a process that is gone.
"$PY3" -c 'import socket, sys; socket.socket(socket.AF_UNIX).bind(sys.argv[1])' "$T/nbd.sock"
[ -S "$T/nbd.sock" ] || fail "no stale socket made"
start_colofs
nbdinfo --size "$(nbd_uri)" | grep -qx 1048576 || fail "not serving over a stale socket path"
stop_colofs
[ -e "$T/nbd.sock" ] && fail "socket file left behind after exit"

# A regular file where the socket should go: refused, and kept.
echo keep >"$T/nbd.sock"
if "$COLOFS_BIN" -c "$T/colofs.ini" 2>"$T/err"; then
	stop_colofs
	fail "colofs replaced a regular file with its socket"
fi
grep -q "not a socket" "$T/err" || fail "no clear message: $(cat "$T/err")"
[ "$(cat "$T/nbd.sock")" = keep ] || fail "the regular file was changed"
rm -f "$T/nbd.sock"

# IPv6 loopback.
if ! "$PY3" -c 'import socket; socket.socket(socket.AF_INET6).bind(("::1", 0))' 2>/dev/null; then
	skip "no IPv6 loopback here (the unix cases passed)"
fi
PORT=$("$PY3" -c 'import socket; s = socket.socket(socket.AF_INET6); s.bind(("::1", 0)); print(s.getsockname()[1])')
sed -i "s|^listen = .*|listen = [::1]:$PORT|" "$T/colofs.ini"
start_colofs
at_exit stop_colofs
[ "$(status_get nbd.listen)" = "[::1]:$PORT" ] || fail "nbd.listen=$(status_get nbd.listen)"
nbdinfo --size "nbd://[::1]:$PORT/vda" | grep -qx 1048576 || fail "not serving on [::1]:$PORT"
ok "listen forms"
