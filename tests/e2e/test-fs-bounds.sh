#!/usr/bin/env bash
# The disk file never changes size: view I/O beyond the end is refused
# (reads at the end return 0 bytes, as for any file), truncation to another
# size is refused, and so are chmod and chown of .colo/ files, creating
# and removing files.
. "$(dirname "$0")/lib.sh"

size=$((4 << 20))
make_image "$T/vda.img" "$size" 5a
write_config
start_colofs
ctl start

"$PY3" - "$MNT/vda" "$size" <<'EOPY'
import errno, os, sys
path, size = sys.argv[1], int(sys.argv[2])
fd = os.open(path, os.O_RDWR)

def refused(fn, want, what):
    try:
        fn()
    except OSError as e:
        if e.errno not in want:
            sys.exit("FAIL: %s: %s, want %s" % (what, errno.errorcode[e.errno],
                     [errno.errorcode[w] for w in want]))
        return
    sys.exit("FAIL: %s succeeded" % what)

if os.pread(fd, 4096, size) != b"":
    sys.exit("FAIL: read at the end returned data")
if os.pread(fd, 4096, size + 12345) != b"":
    sys.exit("FAIL: read past the end returned data")
got = os.pread(fd, 8192, size - 4096)
if got != b"\x5a" * 4096:
    sys.exit("FAIL: read across the end returned %d bytes" % len(got))
refused(lambda: os.pwrite(fd, b"x" * 4096, size), (errno.ENOSPC, errno.EINVAL, errno.EFBIG), "write at the end")
refused(lambda: os.pwrite(fd, b"x" * 8192, size - 4096), (errno.ENOSPC, errno.EINVAL, errno.EFBIG), "write across the end")
refused(lambda: os.ftruncate(fd, size - 4096), (errno.EPERM, errno.EINVAL), "shrinking truncate")
refused(lambda: os.ftruncate(fd, size * 2), (errno.EPERM, errno.EINVAL), "growing truncate")
os.ftruncate(fd, size)              # to its own size: harmless
refused(lambda: os.open(path, os.O_WRONLY | os.O_TRUNC), (errno.EPERM, errno.EINVAL), "open O_TRUNC")
# Direct I/O beyond the end, too.
dfd = os.open(path, os.O_RDWR | os.O_DIRECT)
import mmap
buf = mmap.mmap(-1, 8192)
if os.preadv(dfd, [buf], size) != 0:
    sys.exit("FAIL: O_DIRECT read at the end returned data")
refused(lambda: os.pwritev(dfd, [buf], size - 4096), (errno.ENOSPC, errno.EINVAL, errno.EFBIG), "O_DIRECT write across the end")
os.close(dfd)
os.close(fd)
if os.stat(path).st_size != size:
    sys.exit("FAIL: size changed")
print("ok: reads at/after the end: 0 bytes; writes beyond: refused; truncate: refused")
EOPY

# Nothing crossed the end: the last 4 KiB of the view and image are intact.
expect_bytes "$MNT/vda" $((size - 4096)) 4096 5a
expect_bytes "$T/vda.img" 0 "$size" 5a
[ "$(stat -c %s "$T/vda.img")" = "$size" ] || fail "the image grew"

truncate -s 1M "$MNT/vda" 2>/dev/null && fail "truncate(1) succeeded"
# (Disk files' chmod and chown follow allow_chown: test-ops-libvirt-perms.)
chmod 0666 "$MNT/.colo/status" 2>/dev/null && fail "chmod succeeded"
chown nobody "$MNT/.colo/ctl" 2>/dev/null && fail "chown succeeded"
touch "$MNT/new" 2>/dev/null && fail "creating a file succeeded"
mkdir "$MNT/dir" 2>/dev/null && fail "mkdir succeeded"
rm -f "$MNT/vda" 2>/dev/null && fail "rm succeeded"
mv "$MNT/vda" "$MNT/vdz" 2>/dev/null && fail "rename succeeded"
[ "$(stat -c %a "$MNT/vda")" = 600 ] || fail "mode changed"
cat "$MNT/.colo/ctl" 2>/dev/null && fail "reading ctl succeeded"
echo x >"$MNT/.colo/status" 2>/dev/null && fail "writing status succeeded"
ok "truncate, chmod, chown, create, mkdir, unlink, rename refused"
