#!/usr/bin/env bash
# Daemon behaviour: colofs returns only when the mount and the listener are
# ready, detached from the caller's stdio; -f stays in the foreground and
# logs to stderr (-d adds debug lines); owner, group, mode and allow_other
# from the config reach the disk file.
. "$(dirname "$0")/lib.sh"

make_image "$T/vda.img" 1M 61
write_config
# The caller's stdout and stderr are a pipe: colofs must return and close
# them, or this command substitution would hang.
out=$(timeout 20 "$COLOFS_BIN" -c "$T/colofs.ini" 2>&1) ||
	fail "colofs did not start: $out"
mountpoint -q "$MNT" || fail "returned before the mount was ready"
nbdinfo "$(nbd_uri)" >"$T/info" || fail "returned before the listener was ready"
grep -q "export-size: *1048576" "$T/info" || fail "nbdinfo: $(cat "$T/info")"
[ -f "$MNT/.colo/status" ] || fail ".colo/status missing"
pid=$(colofs_pid)
[ -n "$pid" ] || fail "no daemon"
[ "$(ps -o ppid= -p "$pid" | tr -d ' ')" != "$$" ] || fail "the daemon is our child"
[ "$(ps -o sid= -p "$pid" | tr -d ' ')" = "$pid" ] || fail "the daemon did not setsid"
[ "$(readlink "/proc/$pid/fd/2")" = /dev/null ] || fail "stderr not detached"
[ "$(readlink "/proc/$pid/cwd")" = / ] || fail "cwd not /"
ok "daemonized: ready on return, detached, own session"
stop_colofs
assert_not_mounted

start_colofs_fg -d
grep -q "ready" "$T/colofs.log" || fail "-f: no 'ready' on stderr"
grep -q "debug:" "$T/colofs.log" || fail "-d: no debug lines"
alive "$COLOFS_PID" || fail "-f exited"
ctl start
grep -q "ctl: start" "$T/colofs.log" || fail "-f: ctl words not logged"
fusermount3 -u "$MNT"
wait_exit "$COLOFS_PID"
[ "$EXIT_STATUS" = 0 ] || fail "-f: exit $EXIT_STATUS after unmount"
ok "-f -d: foreground, logs to stderr with debug lines, exit 0 on unmount"

# Ownership for a hypervisor running as another user.
EXTRA_CONFIG="allow_other = true" write_config
cat >>"$T/colofs.ini" <<EOC
owner = nobody
group = nogroup
mode = 0640
EOC
chmod 755 "$T"
start_colofs
[ "$(stat -c '%U:%G %a %s' "$MNT/vda")" = "nobody:nogroup 640 1048576" ] ||
	fail "disk file: $(stat -c '%U:%G %a %s' "$MNT/vda")"
runuser -u nobody -- head -c 4 "$MNT/vda" >"$T/got" || fail "nobody cannot read"
[ "$(cat "$T/got")" = aaaa ] || fail "nobody read '$(cat "$T/got")'"
runuser -u daemon -- head -c 4 "$MNT/vda" >/dev/null 2>&1 &&
	fail "another user could read a 0640 file"
ok "owner, group, mode and allow_other apply"
stop_colofs

EXTRA_CONFIG="allow_other = false" write_config
cat >>"$T/colofs.ini" <<EOC
owner = nobody
EOC
start_colofs
runuser -u nobody -- head -c 4 "$MNT/vda" >/dev/null 2>&1 &&
	fail "without allow_other another user got in"
ok "without allow_other only the mounting user gets in"
