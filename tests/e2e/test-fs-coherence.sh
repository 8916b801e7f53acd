#!/usr/bin/env bash
# Page cache coherence: a process that keeps the disk file open (buffered,
# no O_DIRECT) reads the new view as soon as checkpoint or stop returns.
# QEMU 7.2's FUSE export fails this (its page cache stays stale).
# Runs with page_cache = true (the kernel caches, colofs invalidates);
# test-fs-coherence-direct.sh runs it again with the default (no cache).
. "$(dirname "$0")/lib.sh"

make_image "$T/vda.img" 8M 00
EXTRA_CONFIG="page_cache = ${PAGE_CACHE:-true}" write_config
start_colofs

"$PY3" - "$MNT" "$(nbd_uri)" <<'EOPY'
import os, sys, nbd

mnt, uri = sys.argv[1], sys.argv[2]
B = 65536

def fail(msg):
    sys.exit("FAIL: " + msg)

def ctl(word):
    with open(mnt + "/.colo/ctl", "w") as f:
        f.write(word + "\n")

def expect(fd, off, byte, what):
    got = os.pread(fd, B, off)
    if got != bytes([byte]) * B:
        fail("%s: [%d,+%d) reads %r..., want %02x" % (what, off, B, got[:8], byte))

h = nbd.NBD()
h.connect_uri(uri)

# State none: V = S, and the primary's writes show at once, even to a file
# opened (and read) before them.
fd0 = os.open(mnt + "/vda", os.O_RDWR)
expect(fd0, 0, 0x00, "none, before")
h.pwrite(b"\x11" * B, 0)
expect(fd0, 0, 0x11, "none, after a primary write")
print("ok: state none: a primary write is seen through an open file")

ctl("start")
fd = os.open(mnt + "/vda", os.O_RDWR)
for f in (fd0, fd):
    expect(f, B, 0x00, "running, cached read")      # fills the page cache
h.pwrite(b"\x22" * B, B)                            # S changes, V does not
for f in (fd0, fd):
    expect(f, B, 0x00, "running, after a primary write")
os.pwrite(fd, b"\x33" * B, B)                       # V changes via this fd
for f in (fd0, fd):
    expect(f, B, 0x33, "running, after a view write")
print("ok: running: primary writes hidden from the view, view writes seen")

ctl("checkpoint")                                   # V := S
for f in (fd0, fd):
    expect(f, B, 0x22, "the same fd right after checkpoint")
print("ok: checkpoint: the open fds read S at once")

# Again with the data only in the cache of a read (no write through fd).
expect(fd, 2 * B, 0x00, "cached read before the second epoch")
h.pwrite(b"\x44" * B, 2 * B)
expect(fd, 2 * B, 0x00, "after the primary write")
ctl("checkpoint")
expect(fd, 2 * B, 0x44, "after the second checkpoint")
print("ok: second checkpoint: a cached read is dropped")

# stop: buffers dropped, V := S.
os.pwrite(fd, b"\x55" * B, 3 * B)
h.pwrite(b"\x66" * B, 3 * B)
expect(fd, 3 * B, 0x55, "view write before stop")
ctl("stop")
expect(fd, 3 * B, 0x66, "right after stop")
print("ok: stop: the open fd reads S at once")

# done: V = S, view writes go to S.
os.pwrite(fd, b"\x77" * B, 4 * B)
expect(fd, 4 * B, 0x77, "view write in done")
os.close(fd)
os.close(fd0)
h.shutdown()
EOPY
expect_bytes "$T/vda.img" $((4 * 65536)) 65536 77
expect_bytes "$T/vda.img" $((3 * 65536)) 65536 66
ok "done: view writes reach the image"
stop_colofs

# Pages cached by a file that has been closed since: a new open must not
# find them after a checkpoint (the kernel keeps them across opens).
# A fresh image is a fresh deployment: the state file's done goes too.
make_image "$T/vda.img" 8M 00
rm -rf "$T/state"
start_colofs
ctl start
expect_bytes "$MNT/vda" 0 1048576 00          # cached, then closed
nbd_write 0 65536 88
expect_bytes "$MNT/vda" 0 65536 00
ctl checkpoint
expect_bytes "$MNT/vda" 0 65536 88
ok "checkpoint drops pages cached by files closed before it"

# An O_DIRECT user and a buffered one on the same file stay coherent.
exec 7<"$MNT/vda"
cat <&7 >/dev/null                              # buffered, cached
view_write 65536 4096 99
dd if=/dev/zero bs=4096 count=1 seek=16 of="$MNT/vda" oflag=direct \
	conv=notrunc status=none                 # O_DIRECT at 64 KiB
expect_bytes "$MNT/vda" 65536 4096 00
nbd_write 131072 4096 aa
ctl checkpoint
expect_bytes "$MNT/vda" 131072 4096 aa
expect_bytes "$MNT/vda" 65536 4096 00
exec 7<&-
ok "O_DIRECT and buffered openers agree across a checkpoint"
