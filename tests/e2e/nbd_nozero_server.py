# SPDX-License-Identifier: MIT
"""A small NBD server without WRITE_ZEROES, for the primary's zero
fallback: it serves a raw file, advertises a maximum block size, and
answers EINVAL to any request longer than that (after reading its
payload, so the stream stays framed).

  nbd_nozero_server.py SOCKET IMAGE EXPORT MAX_BLOCK STATS_FILE

STATS_FILE is rewritten after every request: "max_request=N" (the longest
request seen), "too_long=N" (requests refused for their length),
"zero_requests=N" (WRITE_ZEROES received, refused: not advertised).
"""
import os
import socket
import struct
import sys
import threading

NBDMAGIC = 0x4E42444D41474943
IHAVEOPT = 0x49484156454F5054
REP_MAGIC = 0x0003E889045565A9
REQ_MAGIC = 0x25609513
REPLY_MAGIC = 0x67446698
OPT_EXPORT_NAME, OPT_ABORT, OPT_INFO, OPT_GO = 1, 2, 6, 7
REP_ACK, REP_INFO, REP_ERR_UNSUP, REP_ERR_UNKNOWN = 1, 3, 0x80000001, 0x80000006
INFO_EXPORT, INFO_BLOCK_SIZE = 0, 3
CMD_READ, CMD_WRITE, CMD_DISC, CMD_FLUSH, CMD_WZ = 0, 1, 2, 3, 6
HAS_FLAGS, SEND_FLUSH = 1, 4
EINVAL, EIO = 22, 5

sock_path, image, export, max_block, stats_path = sys.argv[1:6]
max_block = int(max_block)
lock = threading.Lock()
stats = {"max_request": 0, "too_long": 0, "zero_requests": 0}


def save_stats():
    tmp = stats_path + ".tmp"
    with open(tmp, "w") as f:
        for k, v in stats.items():
            f.write("%s=%d\n" % (k, v))
    os.rename(tmp, stats_path)


def recv_exact(s, n):
    buf = bytearray()
    while len(buf) < n:
        chunk = s.recv(min(n - len(buf), 1 << 20))
        if not chunk:
            raise EOFError
        buf += chunk
    return bytes(buf)


def skip(s, n):
    while n > 0:
        k = len(s.recv(min(n, 1 << 20)))
        if k == 0:
            raise EOFError
        n -= k


def rep(s, opt, rtype, data=b""):
    s.sendall(struct.pack(">QIII", REP_MAGIC, opt, rtype, len(data)) + data)


def negotiate(s, size):
    s.sendall(struct.pack(">QQH", NBDMAGIC, IHAVEOPT, 3))
    recv_exact(s, 4)
    while True:
        magic, opt, n = struct.unpack(">QII", recv_exact(s, 16))
        data = recv_exact(s, n)
        if opt == OPT_EXPORT_NAME:
            s.sendall(struct.pack(">QH", size, HAS_FLAGS | SEND_FLUSH))
            return True
        if opt == OPT_ABORT:
            rep(s, opt, REP_ACK)
            return False
        if opt not in (OPT_INFO, OPT_GO):
            rep(s, opt, REP_ERR_UNSUP)
            continue
        k = struct.unpack(">I", data[:4])[0]
        if data[4:4 + k].decode() != export:
            rep(s, opt, REP_ERR_UNKNOWN)
            continue
        rep(s, opt, REP_INFO, struct.pack(">HQH", INFO_EXPORT, size,
                                          HAS_FLAGS | SEND_FLUSH))
        rep(s, opt, REP_INFO, struct.pack(">HIII", INFO_BLOCK_SIZE, 1,
                                          4096, max_block))
        rep(s, opt, REP_ACK)
        if opt == OPT_GO:
            return True


def serve(s):
    fd = os.open(image, os.O_RDWR)
    size = os.fstat(fd).st_size
    try:
        if not negotiate(s, size):
            return
        while True:
            magic, flags, cmd, cookie, off, n = struct.unpack(
                ">IHHQQI", recv_exact(s, 28))
            if magic != REQ_MAGIC or cmd == CMD_DISC:
                return
            err, data = 0, b""
            with lock:
                stats["max_request"] = max(stats["max_request"], n)
                if n > max_block:
                    stats["too_long"] += 1
                if cmd == CMD_WZ:
                    stats["zero_requests"] += 1
                save_stats()
            if cmd == CMD_WRITE:
                if n > max_block:
                    skip(s, n)
                    err = EINVAL
                else:
                    os.pwrite(fd, recv_exact(s, n), off)
            elif n > max_block or cmd == CMD_WZ:
                err = EINVAL
            elif cmd == CMD_READ:
                data = os.pread(fd, n, off)
            elif cmd == CMD_FLUSH:
                os.fsync(fd)
            else:
                err = EINVAL
            s.sendall(struct.pack(">IIQ", REPLY_MAGIC, err, cookie) +
                      (data if err == 0 else b""))
    except (EOFError, OSError):
        pass
    finally:
        os.close(fd)
        s.close()


def main():
    save_stats()
    srv = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    srv.bind(sock_path)
    srv.listen(8)
    while True:
        s, _ = srv.accept()
        threading.Thread(target=serve, args=(s,), daemon=True).start()


main()
