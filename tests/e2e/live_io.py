# SPDX-License-Identifier: MIT
# live_io.py MODE FILE DIR: what a VM does with its disk file, through one
# fd, until DIR/stop exists.  MODE read: reads 64 KiB blocks that hold
# block % 251 + 1 (written before); MODE write: writes a block, reads it
# back.  Counts ops in DIR/progress; exits 1 at the first error or
# mismatch, with the reason on stderr; prints "ops N" at the end.
import errno, os, sys
mode, path, t = sys.argv[1], sys.argv[2], sys.argv[3]
fd = os.open(path, os.O_RDWR)
prog = os.open(t + "/progress", os.O_WRONLY | os.O_CREAT, 0o644)
blk, nblk, i = 65536, 256, 0
while not os.path.exists(t + "/stop"):
    off = (i * 7919 % nblk) * blk
    try:
        if mode == "write":
            want = bytes([(i * 13 + off // blk) % 251 + 1]) * blk
            os.pwrite(fd, want, off)
        else:
            want = bytes([(off // blk) % 251 + 1]) * blk
        got = os.pread(fd, blk, off)
    except OSError as e:
        sys.stderr.write("op %d at %d: %s\n" % (i, off,
                         errno.errorcode.get(e.errno, str(e.errno))))
        sys.exit(1)
    if got != want:
        sys.stderr.write("op %d at %d: read back other bytes\n" % (i, off))
        sys.exit(1)
    i += 1
    if i % 16 == 0:
        os.pwrite(prog, b"%12d\n" % i, 0)
print("ops %d" % i)
