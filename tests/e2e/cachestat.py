# SPDX-License-Identifier: MIT
"""cachestat(2) of a file: prints "cache dirty writeback" (pages).

Usage: python3 cachestat.py FILE.  Exits 77 when the kernel has no
cachestat (before Linux 6.5, or another architecture than x86_64).
"""
import ctypes
import errno
import os
import platform
import sys

SYS_CACHESTAT = {"x86_64": 451, "aarch64": 451}


class Range(ctypes.Structure):
    _fields_ = [("off", ctypes.c_uint64), ("len", ctypes.c_uint64)]


class Stat(ctypes.Structure):
    _fields_ = [(name, ctypes.c_uint64) for name in
                ("cache", "dirty", "writeback", "evicted",
                 "recently_evicted")]


def main():
    nr = SYS_CACHESTAT.get(platform.machine())
    if nr is None:
        print("no cachestat syscall number for " + platform.machine())
        return 77
    libc = ctypes.CDLL(None, use_errno=True)
    fd = os.open(sys.argv[1], os.O_RDONLY)
    rng, st = Range(0, 0), Stat()     # len 0: to the end of the file
    rc = libc.syscall(nr, fd, ctypes.byref(rng), ctypes.byref(st), 0)
    err = ctypes.get_errno()
    os.close(fd)
    if rc != 0:
        print("cachestat: " + os.strerror(err))
        return 77 if err == errno.ENOSYS else 1
    print(st.cache, st.dirty, st.writeback)
    return 0


if __name__ == "__main__":
    sys.exit(main())
