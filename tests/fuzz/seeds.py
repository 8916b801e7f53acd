# SPDX-License-Identifier: MIT
"""Writes the seed corpus for fuzz-nbd into the directory argv[1]:
valid sessions of every shape, so the fuzzer starts from deep states."""
import os
import struct
import sys

IHAVEOPT = 0x49484156454F5054


def opt(o, data=b""):
    return struct.pack(">QII", IHAVEOPT, o, len(data)) + data


def go(name, o=7, infos=(3,)):
    n = name.encode()
    return opt(o, struct.pack(">I", len(n)) + n + struct.pack(">H", len(infos)) +
               b"".join(struct.pack(">H", i) for i in infos))


def req(cmd, off, length, flags=0, data=b"", cookie=1):
    return struct.pack(">IHHQQI", 0x25609513, flags, cmd, cookie, off, length) + data


def main():
    d = sys.argv[1]
    os.makedirs(d, exist_ok=True)
    cf = struct.pack(">I", 3)
    reqs = (req(1, 0, 16, data=b"A" * 16) + req(0, 0, 16) + req(3, 0, 0) +
            req(4, 4096, 512) + req(6, 8192, 512, flags=2) +
            req(1, 100, 4, flags=1, data=b"BBBB") + req(0, (1 << 20) - 1, 2) +
            req(9, 0, 0) + req(2, 0, 0))
    seeds = {
        "go": b"\1" + cf + go("vda") + reqs,
        "go-odd": b"\1" + cf + go("odd") + req(1, 1, 2, data=b"zz") + req(0, 0, 3) + req(2, 0, 0),
        "go-default": b"\1" + cf + go("") + reqs,
        "info-go": b"\1" + cf + go("vda", 6, (0, 1, 2, 3)) + go("vda") + reqs,
        "list": b"\1" + cf + opt(3) + opt(3, b"x") + opt(5) + opt(8) + opt(2),
        "export-name": b"\1" + cf + opt(1, b"vda") + reqs,
        "export-name-pad": b"\1" + struct.pack(">I", 1) + opt(1, b"vda") + reqs,
        "ro": b"\1" + cf + go("ro", 7, (1, 2, 3)) + reqs,
        "refused": b"\0" + cf + go("vda") + opt(1, b"vda"),
        "unknown": b"\1" + cf + go("nope") + opt(0x7654321, b"q" * 40) + go("vda") + reqs,
        "bad-go": b"\1" + cf + opt(7, struct.pack(">I", 0xFFFFFFFF) + b"\0\0") + opt(7, b"\0\0\0"),
        "big-write": b"\1" + cf + go("vda") + req(1, 0, 40 << 20) + b"C" * 64,
        "beyond": b"\1" + cf + go("vda") + req(1, (1 << 20) - 2, 4, data=b"DDDD") + req(0, 2**64 - 8, 16),
    }
    # Byte 0: bit 1 offers TLS, bit 2 requires it, bit 3 fails the
    # handshake (fuzz-nbd.c).
    seeds.update({
        "tls-required": b"\7" + cf + go("vda") + opt(3) + opt(1, b"vda"),
        "tls-go": b"\7" + cf + opt(8) + opt(5) + opt(5) + go("vda") + reqs,
        "tls-abort": b"\7" + cf + opt(2),
        "tls-bad-starttls": b"\7" + cf + opt(5, b"x") + opt(5) + go("vda", 6) + go("vda") + reqs,
        "tls-fails": b"\x0f" + cf + opt(5) + go("vda"),
        "tls-optional": b"\3" + cf + go("vda") + reqs,
        "tls-optional-upgrade": b"\3" + cf + opt(5) + opt(1, b"vda") + reqs,
    })
    for name, data in seeds.items():
        with open(os.path.join(d, name), "wb") as f:
            f.write(data)


main()
