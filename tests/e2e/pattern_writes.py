# SPDX-License-Identifier: MIT
"""A checksummed workload: seeded random writes of 512 B to 256 KiB at
random (512-aligned) offsets, then a check that every block reads back.

  pattern_writes.py write FILE SEED COUNT   writes; prints the manifest
                                            (offset length sha256 per
                                            block) on stdout
  pattern_writes.py check FILE MANIFEST [OFF:LEN...]
                                            every block's last write is
                                            there (later writes win),
                                            except blocks that touch a
                                            range OFF:LEN written by
                                            something else
"""
import hashlib
import os
import random
import sys


def write(path, seed, count):
    rng = random.Random(seed)
    fd = os.open(path, os.O_WRONLY)
    size = os.fstat(fd).st_size
    try:
        for _ in range(count):
            length = rng.randrange(1, 513) * 512
            off = rng.randrange(0, (size - length) // 512) * 512
            data = rng.randbytes(length)
            os.pwrite(fd, data, off)
            print(off, length, hashlib.sha256(data).hexdigest())
    finally:
        os.close(fd)


def check(path, manifest, skips=()):
    entries = [line.split() for line in open(manifest)]
    skips = [tuple(int(x) for x in s.split(":")) for s in skips]
    # A block counts only where no later write overlaps it.
    fd = os.open(path, os.O_RDONLY)
    checked = 0
    for i, (off, length, digest) in enumerate(entries):
        off, length = int(off), int(length)
        later = any(int(o) < off + length and off < int(o) + int(n)
                    for o, n, _ in entries[i + 1:])
        if later or any(o < off + length and off < o + n for o, n in skips):
            continue
        data = os.pread(fd, length, off)
        if hashlib.sha256(data).hexdigest() != digest:
            sys.exit(f"{path}: block at {off} (+{length}) does not match")
        checked += 1
    os.close(fd)
    print(f"{checked} blocks verified")


if __name__ == "__main__":
    if sys.argv[1] == "write":
        write(sys.argv[2], int(sys.argv[3]), int(sys.argv[4]))
    else:
        check(sys.argv[2], sys.argv[3], sys.argv[4:])
