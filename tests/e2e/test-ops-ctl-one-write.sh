#!/usr/bin/env bash
# One ctl write is one command.  A single write() of more than 1 MiB,
# "checkpoint" padded then "stop", reaches colofs as several requests;
# none of them may run: EINVAL, state and counters unchanged, the reason
# in .colo/error.  The same for a short write at an offset (a second write
# on one open file) and for one just over the 64-byte limit.
. "$(dirname "$0")/lib.sh"

make_image "$T/vda.img" 4M
write_config
start_colofs
ctl start
view_write 0 4096 01

# py_ctl PYTHON: runs PYTHON with fd open on .colo/ctl for writing;
# prints what it prints.
py_ctl() {
	"$PY3" - "$MNT/.colo/ctl" <<EOPY
import errno, os, sys
fd = os.open(sys.argv[1], os.O_WRONLY)
def w(b):
    try:
        return os.write(fd, b)
    except OSError as e:
        return errno.errorcode[e.errno]
$1
EOPY
}

got=$(py_ctl 'print(w(b"checkpoint" + b" " * (1 << 20) + b"\nstop\n"))')
[ "$got" = EINVAL ] || fail "the 1 MiB write: $got, want EINVAL"
expect_status state running
expect_status checkpoints 0
expect_status vda.active_bytes 4096
grep -q "nothing was run" "$MNT/.colo/error" || fail ".colo/error: $(cat "$MNT/.colo/error")"
ok "a >1 MiB 'checkpoint...stop' write: EINVAL, nothing ran"

got=$(py_ctl 'print(w(b"checkpoint\n"), w(b"stop\n"))')
[ "$got" = "11 EINVAL" ] || fail "two writes on one open: $got, want '11 EINVAL'"
expect_status state running
expect_status checkpoints 1
grep -q "at offset 11" "$MNT/.colo/error" || fail ".colo/error: $(cat "$MNT/.colo/error")"
ok "a second write on one open file lands at an offset: EINVAL"

got=$(py_ctl 'print(w(b"checkpoint" + b" " * 54), w(b"checkpoint" + b" " * 55))')
[ "$got" = "64 EINVAL" ] || fail "64 and 65 bytes: $got, want '64 EINVAL'"
expect_status checkpoints 2
ok "64 bytes run, 65 do not"

ctl stop
expect_status state done
ok "echo still works"
