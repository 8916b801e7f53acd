#!/usr/bin/env bash
# Bad deployments: each one fails with a clear message on stderr, a
# non-zero exit, and nothing left mounted or running.  Daemonized (the
# default) and with -f.
. "$(dirname "$0")/lib.sh"

make_image "$T/vda.img" 1M

# expect_refusal NAME REGEX [ARGS...]: colofs on $T/colofs.ini fails.
expect_refusal() {
	local name=$1 re=$2 rc before
	shift 2
	before=$(colofs_pid)
	for mode in daemon foreground; do
		rc=0
		if [ $mode = daemon ]; then
			timeout 20 "$COLOFS_BIN" -c "$T/colofs.ini" "$@" \
				>"$T/out" 2>"$T/err" || rc=$?
		else
			timeout 20 "$COLOFS_BIN" -c "$T/colofs.ini" -f "$@" \
				>"$T/out" 2>"$T/err" || rc=$?
		fi
		[ "$rc" != 0 ] || fail "$name ($mode): exit 0"
		[ "$rc" != 124 ] || fail "$name ($mode): hung"
		grep -Eq "$re" "$T/err" ||
			fail "$name ($mode): message '$(cat "$T/err")' does not match /$re/"
		[ "$(colofs_pid)" = "$before" ] ||
			fail "$name ($mode): a daemon is left"
		if [ "$name" != "already mounted" ]; then
			assert_not_mounted
		fi
	done
	ok "$name: exit $rc, $(head -n 1 "$T/err")"
}

write_config
sed -i "s|$T/vda.img|$T/missing.img|" "$T/colofs.ini"
expect_refusal "missing image" "missing\.img: No such file"

write_config
# root reads anything: a directory in its place cannot be read.
rm -f "$T/colofs.ini"
mkdir "$T/colofs.ini"
expect_refusal "unreadable config" "colofs\.ini: cannot read: Is a directory"
rmdir "$T/colofs.ini"
rc=0
"$COLOFS_BIN" -c "$T/nonexistent.ini" 2>"$T/err" || rc=$?
[ "$rc" = 1 ] && grep -q "nonexistent.ini: cannot read: No such file" "$T/err" ||
	fail "missing config: exit $rc, $(cat "$T/err")"
ok "missing config: $(cat "$T/err")"
if [ "$(id -u)" != 0 ] || command -v runuser >/dev/null; then
	write_config
	chmod 600 "$T/colofs.ini"
	chmod 755 "$T"
	# nobody may not reach the checkout (under /root, say): a copy in $T.
	install -m 0755 "$COLOFS_BIN" "$T/colofs"
	rc=0
	runuser -u nobody -- "$T/colofs" -c "$T/colofs.ini" --check-config \
		2>"$T/err" || rc=$?
	[ "$rc" = 1 ] && grep -q "cannot read: Permission denied" "$T/err" ||
		fail "config without read permission: exit $rc, $(cat "$T/err")"
	ok "config without read permission: $(cat "$T/err")"
fi

write_config
echo "colour = blue" >>"$T/colofs.ini"
expect_refusal "unknown key" "colofs\.ini:[0-9]+: unknown key 'colour'"

write_config
sed -i "s|^mountpoint = .*|mountpoint = $T/nowhere|" "$T/colofs.ini"
expect_refusal "missing mountpoint" "nowhere: No such file or directory"

write_config
sed -i "s|^mountpoint = .*|mountpoint = $T/vda.img|" "$T/colofs.ini"
expect_refusal "mountpoint not a directory" "not a directory"

write_config
cat >>"$T/colofs.ini" <<EOC
[disk "vda"]
image = $T/vda.img
EOC
expect_refusal "two disks with one name" "duplicate disk"

write_config
sed -i "s|^buffer = .*|buffer = file|" "$T/colofs.ini"
expect_refusal "buffer = file without buffer_dir" "buffer = file needs buffer_dir"

write_config
sed -i "s|^buffer = .*|buffer = file\nbuffer_dir = $T/nodir|" "$T/colofs.ini"
expect_refusal "missing buffer_dir" "nodir: No such file"

# Already mounted: by another colofs on the same mountpoint.
write_config
start_colofs
pid=$(colofs_pid)
expect_refusal "already mounted" "already mounted"
[ "$(colofs_pid)" = "$pid" ] || fail "the first daemon is gone"
[ "$(grep -c " $MNT " /proc/self/mounts)" = 1 ] || fail "mounted twice"
stop_colofs
assert_not_mounted

# Listener address in use: the mount must be undone.
write_config
sed -i "s|^listen = .*|listen = 127.0.0.1:1|" "$T/colofs.ini"
if [ "$(id -u)" != 0 ]; then
	expect_refusal "unbindable listen address" "."
fi
"$PY3" -c 'import socket,sys,time
s=socket.socket(); s.bind(("127.0.0.1",0)); s.listen(); print(s.getsockname()[1], flush=True)
time.sleep(60)' >"$T/port" &
busy=$!
at_exit "kill $busy"
wait_for 5 test -s "$T/port" || fail "no port"
sed -i "s|^listen = .*|listen = 127.0.0.1:$(cat "$T/port")|" "$T/colofs.ini"
expect_refusal "listen address in use" "in use"
