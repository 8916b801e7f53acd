#!/usr/bin/env bash
# Reads of the view from the memory buffers are byte-exact whatever their
# offset and size: large ones go to the kernel by reference (vmsplice,
# fs/fuse/fuse-pages.c), small ones and those the pool keeps in several
# runs are copied.  Then, while a writer rewrites the buffered range
# block by block with a new generation, readers check every block they
# get is whole: the pages lent to a reply never change before it is sent.
. "$(dirname "$0")/lib.sh"

make_image "$T/vda.img" 16M 5a
write_config
start_colofs
ctl start

"$PY3" - "$MNT/vda" <<'EOPY'
import os, random, sys, threading

view = sys.argv[1]
MiB = 1 << 20
rng = random.Random(18)
model = bytearray(b"\x5a" * (16 * MiB))

fd = os.open(view, os.O_RDWR)
# Active: 8 MiB in 1 MiB writes (runs of pool pages in a row), then
# scattered small writes over them and beyond (runs broken, and ranges
# that mix the buffer and the image).
for off in range(0, 8 * MiB, MiB):
    data = rng.randbytes(MiB)
    os.pwrite(fd, data, off)
    model[off:off + MiB] = data
for _ in range(200):
    off = rng.randrange(0, 12 * MiB)
    n = rng.randrange(1, 20000)
    data = rng.randbytes(n)
    os.pwrite(fd, data, off)
    model[off:off + n] = data

def check(off, n):
    got = os.pread(fd, n, off)
    want = bytes(model[off:off + n])
    if got != want:
        i = next(k for k in range(min(len(got), len(want)))
                 if got[k] != want[k]) if len(got) == len(want) else -1
        sys.exit("read %d+%d: wrong bytes (first at %d, got %d bytes)"
                 % (off, n, i, len(got)))

for off in range(0, 16 * MiB, MiB):
    check(off, MiB)
for n in (1, 4095, 4096, 8191, 8192, 8193, 65536 + 17, 512 * 1024,
          512 * 1024 + 1, 1536 * 1024 - 3):
    for off in (0, 1, 4095, 4096, 4097, 3 * MiB + 777, 8 * MiB - 4096):
        check(off, n)
for _ in range(300):
    off = rng.randrange(0, 16 * MiB)
    check(off, rng.randrange(1, min(2 * MiB, 16 * MiB - off) + 1))
print("ok: memory buffer reads byte-exact")

# Generations: block b of generation g is all (g * 16 + b % 16) & 0xff.
B = 64 * 1024
NB = 4 * MiB // B
stop = threading.Event()
errors = []

def writer():
    wfd = os.open(view, os.O_WRONLY)
    g = 1
    while not stop.is_set():
        for b in range(NB):
            os.pwrite(wfd, bytes([(g * 16 + b % 16) & 0xff]) * B, b * B)
        g += 1
    os.close(wfd)

def reader():
    rfd = os.open(view, os.O_RDONLY)
    try:
        for i in range(200):
            off = (i * 7 % 8) * 512 * 1024
            got = os.pread(rfd, 512 * 1024, off)
            for k in range(0, len(got), B):
                blk = got[k:k + B]
                if blk.count(blk[0]) != B:
                    errors.append("torn block at %d: bytes %r" %
                                  (off + k, sorted(set(blk))[:8]))
                    return
    finally:
        os.close(rfd)

for b in range(NB):
    os.pwrite(fd, bytes([b % 16]) * B, b * B)
w = threading.Thread(target=writer)
w.start()
rs = [threading.Thread(target=reader) for _ in range(2)]
for t in rs:
    t.start()
for t in rs:
    t.join()
stop.set()
w.join()
if errors:
    sys.exit(errors[0])
print("ok: no torn block under concurrent rewrites")
EOPY
ok "memory buffer reads"
