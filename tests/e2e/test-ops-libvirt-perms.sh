#!/usr/bin/env bash
# What libvirt's DAC driver does, with colofs's default config: chown the
# disk file to QEMU's user at VM start, open it as that user, chown it back
# at stop.  With the defaults it works; with allow_chown = false the chown
# fails (EPERM) and the file stays as configured; with allow_other = false
# the other user is denied and colofs's log and --check-config say which
# setting fixes it.  Only system binaries (dd, python3) run as the user.
. "$(dirname "$0")/lib.sh"

id nobody >/dev/null 2>&1 || skip "no user nobody"
U=nobody
G=$(id -gn nobody)
UID_=$(id -u nobody)
# mktemp's 0700 would stop the user before the mount.
chmod 0755 "$T"

make_image "$T/vda.img" 4M
# The default config: no allow_other, no allow_chown, no owner.
write_config
start_colofs_fg
ctl start

# as_user PYTHON: runs it as $U; prints "ok" or the errno name.
as_user() {
	runuser -u "$U" -- "$PY3" -c "
import errno, os, sys
try:
    $1
    print('ok')
except OSError as e:
    print(errno.errorcode[e.errno])" 2>&1
}
vda=$MNT/vda
open_rw="fd = os.open('$vda', os.O_RDWR); os.pwrite(fd, b'x' * 4096, 0); os.pread(fd, 4096, 0); os.close(fd)"

[ "$(as_user "$open_rw")" = EACCES ] || fail "$U opened a root 0600 disk file"
chown "$U:$G" "$vda" || fail "chown by root refused with the defaults"
[ "$(stat -c %U:%G:%a "$vda")" = "$U:$G:600" ] || fail "stat after chown: $(stat -c %U:%G:%a "$vda")"
got=$(as_user "$open_rw")
[ "$got" = ok ] || fail "$U cannot open its disk file: $got"
expect_status vda.view_write_bytes 4096
got=$(as_user "os.chmod('$vda', 0o640)")
[ "$got" = ok ] || fail "the owner's chmod: $got"
[ "$(stat -c %a "$vda")" = 640 ] || fail "mode after chmod: $(stat -c %a "$vda")"
got=$(as_user "os.chown('$vda', 0, 0)")
[ "$got" = EPERM ] || fail "$U gave the file to root: $got"
chown root:root "$vda"
[ "$(as_user "$open_rw")" = EACCES ] || fail "$U still opens after the chown back"
[ "$(as_user "os.chmod('$MNT/.colo/ctl', 0o222)")" = EPERM ] ||
	fail ".colo/ctl's mode changed"
chmod 0666 "$MNT/.colo/status" 2>/dev/null && fail "root changed .colo/status's mode"
grep -q "vda: now owner $UID_" "$T/colofs.log" || fail "the chown is not logged"
ok "defaults: chown to $U, $U opens, chmod by the owner, chown back"
stop_colofs

# allow_chown = false: EPERM, and the file stays as configured.
EXTRA_CONFIG="allow_chown = false" write_config
start_colofs
chown "$U" "$vda" 2>/dev/null && fail "chown accepted with allow_chown = false"
[ "$(stat -c %U "$vda")" = root ] || fail "owner changed"
stop_colofs
ok "allow_chown = false: chown fails with EPERM"

# allow_other = false with the file given to $U: the kernel denies $U;
# --check-config and the log say to set allow_other.
cat >"$T/colofs.ini" <<EOC
[colofs]
mountpoint = $MNT
state_dir = $T/state
allow_other = false
[disk "vda"]
image = $T/vda.img
owner = $U
EOC
"$COLOFS_BIN" -c "$T/colofs.ini" --check-config 2>"$T/check" ||
	fail "--check-config failed: $(cat "$T/check")"
grep -q "disk vda: allow_other = false: only uid 0 .* would be denied: set allow_other = true" "$T/check" ||
	fail "--check-config does not name the fix: $(cat "$T/check")"
: >"$T/colofs.log"
start_colofs_fg
grep -q "set allow_other = true" "$T/colofs.log" || fail "the log does not name the fix"
got=$(as_user "os.open('$vda', os.O_RDONLY)")
[ "$got" = EACCES ] || fail "$U opened the file without allow_other: $got"
ok "allow_other = false: $U denied; --check-config and the log name the fix"
