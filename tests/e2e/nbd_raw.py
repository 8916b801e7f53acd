# SPDX-License-Identifier: MIT
"""A raw NBD client for robustness tests: speaks the wire protocol byte by
byte so it can send what real clients never do.

  nbd_raw.py ADDR EXPORT CASE [ARGS...]

ADDR is unix:PATH or HOST:PORT.  Each CASE checks one behaviour of the
server and exits 0 if it held, 1 (with a message) if not.
"""
import os
import socket
import struct
import sys
import time

NBDMAGIC = 0x4E42444D41474943
IHAVEOPT = 0x49484156454F5054
REP_MAGIC = 0x0003E889045565A9
REQ_MAGIC = 0x25609513
REPLY_MAGIC = 0x67446698

OPT_EXPORT_NAME, OPT_ABORT, OPT_LIST, OPT_STARTTLS, OPT_INFO, OPT_GO = 1, 2, 3, 5, 6, 7
REP_ACK, REP_SERVER, REP_INFO = 1, 2, 3
ERR_UNSUP, ERR_POLICY, ERR_INVALID = 0x80000001, 0x80000002, 0x80000003
ERR_UNKNOWN, ERR_SHUTDOWN = 0x80000006, 0x80000007
CMD_READ, CMD_WRITE, CMD_DISC, CMD_FLUSH, CMD_TRIM, CMD_WZ = 0, 1, 2, 3, 4, 6
EINVAL, ENOSPC, ESHUTDOWN, EPERM = 22, 28, 108, 1

TIMEOUT = 20


class Fail(Exception):
    pass


def check(cond, msg):
    if not cond:
        raise Fail(msg)


def connect(addr):
    if addr.startswith("unix:"):
        s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        s.settimeout(TIMEOUT)
        for attempt in range(200):
            try:
                s.connect(addr[5:])
                break
            except BlockingIOError:  # backlog full for a moment
                time.sleep(0.05)
        else:
            raise Fail("connect: backlog stayed full")
    else:
        host, port = addr.rsplit(":", 1)
        s = socket.create_connection((host.strip("[]"), int(port)), TIMEOUT)
    s.settimeout(TIMEOUT)
    return s


def recv_exact(s, n):
    buf = b""
    while len(buf) < n:
        chunk = s.recv(n - len(buf))
        if not chunk:
            raise EOFError("server closed after %d of %d bytes" % (len(buf), n))
        buf += chunk
    return buf


def closed_by_server(s):
    """True if the server closes the connection (EOF or reset) soon."""
    try:
        while True:
            if not s.recv(65536):
                return True
    except (ConnectionResetError, BrokenPipeError):
        return True
    except socket.timeout:
        return False


def greet(s, cflags=3):
    magic, opt, hflags = struct.unpack(">QQH", recv_exact(s, 18))
    check(magic == NBDMAGIC and opt == IHAVEOPT, "bad greeting")
    check(hflags == 3, "handshake flags %#x, want FIXED_NEWSTYLE|NO_ZEROES" % hflags)
    s.sendall(struct.pack(">I", cflags))


def send_opt(s, opt, data=b""):
    s.sendall(struct.pack(">QII", IHAVEOPT, opt, len(data)) + data)


def read_rep(s):
    magic, opt, rtype, rlen = struct.unpack(">QIII", recv_exact(s, 20))
    check(magic == REP_MAGIC, "bad option reply magic %#x" % magic)
    return opt, rtype, recv_exact(s, rlen)


def go_data(name, infos=()):
    n = name.encode()
    return struct.pack(">I", len(n)) + n + struct.pack(">H", len(infos)) + \
        b"".join(struct.pack(">H", i) for i in infos)


def opt_go(s, name, opt=OPT_GO, infos=(3,)):
    """Sends GO/INFO; returns (final reply type, {info type: data})."""
    send_opt(s, opt, go_data(name, infos))
    infos_got = {}
    while True:
        o, t, d = read_rep(s)
        check(o == opt, "reply for option %d, want %d" % (o, opt))
        if t == REP_INFO:
            infos_got[struct.unpack(">H", d[:2])[0]] = d
            continue
        return t, infos_got


def session(addr, export):
    """A connection in transmission; returns (socket, size, flags)."""
    s = connect(addr)
    greet(s)
    t, infos = opt_go(s, export)
    check(t == REP_ACK, "GO %s: reply %#x" % (export, t))
    check(0 in infos, "GO without NBD_INFO_EXPORT")
    _, size, flags = struct.unpack(">HQH", infos[0])
    return s, size, flags


def request(s, cmd, off, length, cookie=1, flags=0, data=b""):
    s.sendall(struct.pack(">IHHQQI", REQ_MAGIC, flags, cmd, cookie, off, length) + data)


def reply(s, datalen=0):
    magic, err, cookie = struct.unpack(">IIQ", recv_exact(s, 16))
    check(magic == REPLY_MAGIC, "bad reply magic %#x" % magic)
    data = recv_exact(s, datalen) if err == 0 and datalen else b""
    return err, cookie, data


def read(s, off, length, cookie=7):
    request(s, CMD_READ, off, length, cookie)
    err, c, data = reply(s, length)
    check(c == cookie, "cookie %#x, want %#x" % (c, cookie))
    return err, data


def disc(s):
    request(s, CMD_DISC, 0, 0)
    s.close()


def still_serves(addr, export):
    """A fresh connection can read and write."""
    s, size, _ = session(addr, export)
    err, _ = read(s, 0, 4096)
    check(err == 0, "read after the abuse failed: %d" % err)
    disc(s)


# --- cases -----------------------------------------------------------

def case_bad_request_magic(addr, export):
    s, _, _ = session(addr, export)
    s.sendall(struct.pack(">IHHQQI", 0xDEADBEEF, 0, CMD_READ, 1, 0, 512))
    check(closed_by_server(s), "server kept a connection after a bad request magic")


def case_bad_option_magic(addr, export):
    s = connect(addr)
    greet(s)
    s.sendall(struct.pack(">QII", 0x1122334455667788, OPT_GO, 0))
    check(closed_by_server(s), "server kept a connection after a bad option magic")


def case_bad_client_flags(addr, export):
    s = connect(addr)
    greet(s, cflags=0x80000003)
    check(closed_by_server(s), "server accepted unknown client flags")


def case_unknown_command(addr, export):
    s, _, _ = session(addr, export)
    for cmd in (5, 7, 8, 9, 0x55, 0xFFFF):
        request(s, cmd, 0, 512, cookie=cmd)
        err, c, _ = reply(s)
        check(err == EINVAL and c == cmd, "command %d: error %d, want EINVAL" % (cmd, err))
    request(s, CMD_WRITE, 0, 4, cookie=3, flags=0x80, data=b"abcd")
    err, _, _ = reply(s)
    check(err == EINVAL, "WRITE with an unknown flag: %d, want EINVAL" % err)
    request(s, CMD_READ, 0, 512, cookie=4, flags=2)
    err, _, _ = reply(s)
    check(err == EINVAL, "READ with NO_HOLE: %d, want EINVAL" % err)
    err, _ = read(s, 0, 512)
    check(err == 0, "the connection broke after unknown commands")
    disc(s)


def case_unknown_options(addr, export):
    s = connect(addr)
    greet(s)
    for opt, data in ((0x7654321, b"x" * 100), (8, b""), (9, b"abc"), (10, b""),
                      (11, b""), (0, b""), (0xFFFFFFFF, b"y" * 5000)):
        send_opt(s, opt, data)
        o, t, _ = read_rep(s)
        check(o == opt and t == ERR_UNSUP, "option %#x: reply %#x, want ERR_UNSUP" % (opt, t))
    send_opt(s, OPT_STARTTLS)
    o, t, _ = read_rep(s)
    check(t == ERR_POLICY, "STARTTLS: reply %#x, want ERR_POLICY" % t)
    send_opt(s, OPT_LIST, b"zz")
    _, t, _ = read_rep(s)
    check(t == ERR_INVALID, "LIST with data: %#x, want ERR_INVALID" % t)
    t, _ = opt_go(s, "no-such-export")
    check(t == ERR_UNKNOWN, "GO of an unknown export: %#x, want ERR_UNKNOWN" % t)
    t, _ = opt_go(s, "x" * 4096 + "y")
    check(t == ERR_INVALID, "GO with a 4097-byte name: %#x, want ERR_INVALID" % t)
    # namelen lies: bigger than the option, huge, and a NUL in the name
    for data in (struct.pack(">I", 0xFFFFFFFF) + b"ab\0\0",
                 struct.pack(">I", 100) + b"vda" + b"\0\0",
                 struct.pack(">I", 3) + b"v\0a" + b"\0\0",
                 struct.pack(">I", 0) + b"\0\x05\0\x03",
                 b"\0\0\0"):
        send_opt(s, OPT_GO, data)
        _, t, _ = read_rep(s)
        check(t == ERR_INVALID, "malformed GO %r: %#x, want ERR_INVALID" % (data[:12], t))
    # INFO then GO on the same connection (nbdkit CVE-2019-14851 shape)
    t, infos = opt_go(s, export, OPT_INFO, infos=(1, 2, 3, 99))
    check(t == REP_ACK and set(infos) >= {0, 1, 2, 3}, "INFO: %#x %r" % (t, sorted(infos)))
    check(infos[1][2:] == export.encode(), "NBD_INFO_NAME %r" % infos[1])
    check(struct.unpack(">HIII", infos[3]) == (3, 1, 4096, 32 << 20),
          "BLOCK_SIZE %r" % (struct.unpack(">HIII", infos[3]),))
    t, _ = opt_go(s, export)
    check(t == REP_ACK, "GO after INFO: %#x" % t)
    err, _ = read(s, 0, 512)
    check(err == 0, "read after the option ladder: %d" % err)
    disc(s)


def case_list(addr, export):
    s = connect(addr)
    greet(s)
    send_opt(s, OPT_LIST)
    names = []
    while True:
        o, t, d = read_rep(s)
        if t == REP_ACK:
            break
        check(t == REP_SERVER, "LIST reply %#x" % t)
        n = struct.unpack(">I", d[:4])[0]
        names.append(d[4:4 + n].decode())
    check(export in names, "LIST gave %r, no %s" % (names, export))
    send_opt(s, OPT_ABORT)
    try:
        o, t, _ = read_rep(s)
        check(t == REP_ACK, "ABORT reply %#x" % t)
    except EOFError:
        pass
    check(closed_by_server(s), "server kept the connection after ABORT")


def case_oversized_option(addr, export):
    for length in (0xFFFFFFFF, 0x80000000, (64 << 10) + 1):
        s = connect(addr)
        greet(s)
        s.sendall(struct.pack(">QII", IHAVEOPT, OPT_GO, length) + b"\0" * 64)
        check(closed_by_server(s), "option length %#x did not close the connection" % length)


def case_truncated_option(addr, export):
    s = connect(addr)
    greet(s)
    s.sendall(struct.pack(">QII", IHAVEOPT, OPT_GO, 100) + b"\0\0\0\x03vd")
    s.close()
    s = connect(addr)
    greet(s)
    s.sendall(struct.pack(">QI", IHAVEOPT, OPT_GO))  # header cut short
    s.close()


def case_too_many_options(addr, export):
    s = connect(addr)
    greet(s)
    answered = 0
    try:
        for _ in range(1000):
            send_opt(s, 0x1234)
            _, t, _ = read_rep(s)
            check(t == ERR_UNSUP, "reply %#x" % t)
            answered += 1
    except (EOFError, ConnectionResetError, BrokenPipeError):
        pass
    check(answered < 1000, "server answered 1000 options without closing")


def case_export_name(addr, export, cflags):
    cflags = int(cflags)
    s = connect(addr)
    greet(s, cflags)
    send_opt(s, OPT_EXPORT_NAME, export.encode())
    want = 10 if cflags & 2 else 134
    data = recv_exact(s, want)
    size, flags = struct.unpack(">QH", data[:10])
    check(data[10:] == b"\0" * (want - 10), "padding not zero")
    check(flags & 0x6D == 0x6D, "transmission flags %#x" % flags)
    # The very next bytes must be a reply: no stray padding.
    err, _ = read(s, 0, 512)
    check(err == 0, "read after EXPORT_NAME (cflags %d): %d" % (cflags, err))
    disc(s)
    s = connect(addr)
    greet(s)
    send_opt(s, OPT_EXPORT_NAME, b"no-such-export")
    check(closed_by_server(s), "EXPORT_NAME of an unknown export did not close")


def case_bounds(addr, export):
    s, size, _ = session(addr, export)
    err, _ = read(s, size - 512, 1024)
    check(err == EINVAL, "read beyond the end: %d, want EINVAL" % err)
    err, _ = read(s, size, 1)
    check(err == EINVAL, "read at the end: %d, want EINVAL" % err)
    err, _ = read(s, 2**64 - 512, 1024)
    check(err == EINVAL, "read with offset+length wrapping: %d, want EINVAL" % err)
    err, _ = read(s, 0, (32 << 20) + 1)
    check(err == EINVAL, "read over 32 MiB: %d, want EINVAL" % err)
    request(s, CMD_WRITE, size - 100, 200, cookie=5, data=b"\x55" * 200)
    err, c, _ = reply(s)
    check(err == ENOSPC and c == 5, "write beyond the end: %d, want ENOSPC" % err)
    request(s, CMD_WRITE, 2**64 - 100, 200, cookie=6, data=b"\x55" * 200)
    err, _, _ = reply(s)
    check(err == ENOSPC, "write with wrapping offset: %d, want ENOSPC" % err)
    for cmd in (CMD_TRIM, CMD_WZ):
        request(s, cmd, size - 512, 1024, cookie=8)
        err, _, _ = reply(s)
        check(err in (EINVAL, ENOSPC), "%d beyond the end: %d" % (cmd, err))
    # over 32 MiB with its payload: skipped, answered EINVAL, framing kept
    n = (32 << 20) + 4096
    request(s, CMD_WRITE, 0, n, cookie=9, data=b"\x66" * n)
    err, c, _ = reply(s)
    check(err == EINVAL and c == 9, "write over 32 MiB: %d, want EINVAL" % err)
    err, data = read(s, size - 512, 512)
    check(err == 0, "the connection broke after bounds errors")
    disc(s)
    # a WRITE header announcing 4 GiB: answered EINVAL, then closed
    s, _, _ = session(addr, export)
    request(s, CMD_WRITE, 0, 0xFFFFFFFF, cookie=10)
    err, c, _ = reply(s)
    check(err == EINVAL, "4 GiB write: %d, want EINVAL" % err)
    check(closed_by_server(s), "4 GiB write without payload: connection kept")


def case_truncated_write(addr, export, off, length, byte):
    """Sends a WRITE of LENGTH bytes of BYTE at OFF, stops after half the
    payload and vanishes: nothing may be applied."""
    off, length, byte = int(off), int(length), int(byte, 16)
    s, _, _ = session(addr, export)
    request(s, CMD_WRITE, off, length, cookie=11, data=bytes([byte]) * (length // 2))
    time.sleep(0.2)
    s.close()


def case_vanish(addr, export):
    """Pipelined requests, then gone without reading a reply."""
    s, size, _ = session(addr, export)
    err, block0 = read(s, 0, 4096)
    check(err == 0, "read")
    for i in range(16):
        request(s, CMD_READ, (i * 1 << 20) % size, 1 << 20, cookie=i)
    request(s, CMD_WRITE, 0, 4096, cookie=99, data=block0)
    s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    s.close()


def case_pipeline(addr, export, off):
    """16 writes in flight, then 16 reads; replies matched by cookie."""
    off = int(off)
    s, _, _ = session(addr, export)
    blocks = {i: bytes([i + 1]) * 65536 for i in range(16)}
    for i, b in blocks.items():
        request(s, CMD_WRITE, off + i * 65536, 65536, cookie=1000 + i, data=b)
    seen = set()
    for _ in blocks:
        err, c, _ = reply(s)
        check(err == 0, "pipelined write %d: %d" % (c, err))
        seen.add(c)
    check(seen == {1000 + i for i in blocks}, "cookies %r" % sorted(seen))
    for i, b in blocks.items():
        err, data = read(s, off + i * 65536, 65536, cookie=2000 + i)
        check(err == 0 and data == b, "block %d read back wrong" % i)
    request(s, CMD_FLUSH, 0, 0, cookie=3)
    err, _, _ = reply(s)
    check(err == 0, "flush: %d" % err)
    disc(s)


def case_storm(addr, export, n):
    """n quick connects and disconnects of several shapes."""
    n = int(n)
    for i in range(n):
        s = connect(addr)
        k = i % 4
        try:
            if k == 1:
                recv_exact(s, 18)
            elif k == 2:
                greet(s)
                send_opt(s, OPT_ABORT)
            elif k == 3:
                s2, _, _ = session(addr, export)
                disc(s2)
        finally:
            s.close()


def case_write_error(addr, export, want, cmd):
    """Connects, runs the shell command CMD (e.g. a failover), then a
    write must fail with error WANT and the server close the connection."""
    s, _, _ = session(addr, export)
    check(os.system(cmd) == 0, "command failed: %s" % cmd)
    request(s, CMD_WRITE, 0, 512, cookie=12, data=b"\x42" * 512)
    err, _, _ = reply(s)
    check(err == int(want), "write: error %d, want %s" % (err, want))
    check(closed_by_server(s), "connection kept after ESHUTDOWN")


def case_refused(addr, export):
    s = connect(addr)
    greet(s)
    t, _ = opt_go(s, export)
    check(t == ERR_SHUTDOWN, "GO after failover: %#x, want ERR_SHUTDOWN" % t)
    s.close()
    s = connect(addr)
    greet(s)
    send_opt(s, OPT_EXPORT_NAME, export.encode())
    check(closed_by_server(s), "EXPORT_NAME after failover was served")


def case_hold(addr, export, off, ready, go):
    """Another client's connection, open across the abuse: writes, says
    READY (creates the file), waits for GO, then reads back and writes."""
    off = int(off)
    s, _, _ = session(addr, export)
    request(s, CMD_WRITE, off, 4096, cookie=1, data=b"\x4b" * 4096)
    check(reply(s)[0] == 0, "hold: first write")
    open(ready, "w").close()
    deadline = time.time() + 280
    while not os.path.exists(go):
        check(time.time() < deadline, "hold: no go")
        time.sleep(0.1)
    err, data = read(s, off, 4096)
    check(err == 0 and data == b"\x4b" * 4096, "hold: read back after the abuse")
    request(s, CMD_WRITE, off + 4096, 4096, cookie=2, data=b"\x4c" * 4096)
    check(reply(s)[0] == 0, "hold: write after the abuse")
    disc(s)


def case_flood(addr, export, off, length, byte, piece="65536"):
    """Writes BYTE over [OFF, OFF+LENGTH) in PIECE-byte writes, 20 in
    flight, forever: the test kills it mid-stream."""
    off, length, byte, piece = int(off), int(length), int(byte, 16), int(piece)
    s, _, _ = session(addr, export)
    data = bytes([byte]) * piece
    n, pos, inflight = 0, 0, 0
    while True:
        while inflight < 20:
            request(s, CMD_WRITE, off + pos, piece, cookie=n, data=data)
            n += 1
            inflight += 1
            pos = (pos + piece) % length
        err, _, _ = reply(s)
        check(err == 0, "flood write: %d" % err)
        inflight -= 1
        if n == 21:
            print("flooding", flush=True)


def case_write_after(addr, export, off, length, byte, cmd):
    """Connects, runs the shell command CMD (e.g. kill another client),
    then at once writes BYTE over [OFF, OFF+LENGTH) and disconnects."""
    off, length, byte = int(off), int(length), int(byte, 16)
    s, _, _ = session(addr, export)
    check(os.system(cmd) == 0, "command failed: %s" % cmd)
    request(s, CMD_WRITE, off, length, cookie=5, data=bytes([byte]) * length)
    err, _, _ = reply(s)
    check(err == 0, "write: %d" % err)
    disc(s)


def case_stalled(addr, export, n, want_closed_within):
    """Opens N connections that stop after the greeting (or get no greeting
    at all: the server's connection limit) and checks that the server has
    closed every one of them within WANT_CLOSED_WITHIN seconds."""
    n, within = int(n), float(want_closed_within)
    socks = []
    for _ in range(n):
        s = connect(addr)
        socks.append(s)
    start = time.time()
    for s in socks:
        left = max(0.1, within - (time.time() - start))
        s.settimeout(left)
        try:
            while s.recv(4096):
                pass
        except socket.timeout:
            raise Fail("a stalled handshake was still open after %.0f s" % within)
        except (ConnectionResetError, BrokenPipeError):
            pass
        s.close()


def case_still_serves(addr, export):
    still_serves(addr, export)


def case_half_open(addr, export, n):
    """Opens n connections that stop mid-handshake and keeps them open
    while a normal client is served; exits once they are closed."""
    socks = []
    for i in range(int(n)):
        s = connect(addr)
        recv_exact(s, 18)
        socks.append(s)
    still_serves(addr, export)
    for s in socks:
        s.close()


def raise_nofile():
    import resource
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))


def wait_file(path, secs=280):
    deadline = time.time() + secs
    while not os.path.exists(path):
        check(time.time() < deadline, "no %s" % path)
        time.sleep(0.05)


def case_idle(addr, export, n, ready, go):
    """Opens N connections that never finish the handshake (a third read
    the greeting, a third also send the client flags, a third nothing),
    says READY, and holds them until GO exists."""
    raise_nofile()
    socks = []
    for i in range(int(n)):
        s = connect(addr)
        if i % 3 >= 1:
            recv_exact(s, 18)
        if i % 3 == 2:
            s.sendall(struct.pack(">I", 3))
        socks.append(s)
    open(ready, "w").close()
    wait_file(go)
    for s in socks:
        s.close()


def case_reconnect_flood(addr, export, n, secs):
    """N sockets that connect and stall; whenever the server closes one it
    reconnects at once, for SECS seconds.  Prints how many connects."""
    import selectors
    raise_nofile()
    n, secs = int(n), float(secs)
    sel = selectors.DefaultSelector()
    connects = 0

    def new():
        nonlocal connects
        while True:
            try:
                s = connect(addr)
                break
            except OSError:     # backlog full, or out of fds: retry
                time.sleep(0.01)
        s.setblocking(False)
        sel.register(s, selectors.EVENT_READ)
        connects += 1

    for _ in range(n):
        new()
    end = time.time() + secs
    while time.time() < end:
        for key, _ in sel.select(timeout=0.2):
            s = key.fileobj
            try:
                data = s.recv(4096)
            except (BlockingIOError, InterruptedError):
                continue
            except OSError:
                data = b""
            if data:
                continue        # the greeting: stall
            sel.unregister(s)
            s.close()
            new()
    print("connects %d" % connects)


def open_session_nb(addr, export):
    s, size, _ = session(addr, export)
    return s, size


def case_slowloris(addr, export, n, length, ready, go):
    """N clients that each send a WRITE header of LENGTH bytes and all but
    one byte of its payload (as much as the server takes without
    blocking), then stall.  Says READY once every one has sent what it
    could for a while, holds them until GO exists."""
    raise_nofile()
    n, length = int(n), int(length)
    payload = b"\x33" * (length - 1)
    conns = []
    for i in range(n):
        s, _ = open_session_nb(addr, export)
        request(s, CMD_WRITE, 0, length, cookie=i)
        s.setblocking(False)
        conns.append([s, 0])
    # Push until no socket takes more for 1 s.
    idle_since = start = time.time()
    while time.time() - idle_since < 1.0 and time.time() - start < 5:
        moved = False
        for c in conns:
            s, sent = c
            if sent >= len(payload):
                continue
            try:
                k = s.send(payload[sent:sent + (1 << 20)])
            except (BlockingIOError, InterruptedError):
                continue
            except OSError:
                c[1] = len(payload)   # closed by the server
                continue
            c[1] += k
            moved = True
        if moved:
            idle_since = time.time()
        else:
            time.sleep(0.05)
    total = sum(c[1] for c in conns)
    print("slowloris: %d clients pushed %d MiB" % (n, total >> 20), flush=True)
    open(ready, "w").close()
    wait_file(go)
    for s, _ in conns:
        s.close()


def case_stall_payload(addr, export, length, within):
    """A WRITE whose payload stops one byte short: the server closes the
    connection within WITHIN seconds (io_timeout) and applies nothing."""
    length, within = int(length), float(within)
    s, _ = open_session_nb(addr, export)
    request(s, CMD_WRITE, 0, length, cookie=1, data=b"\x44" * (length - 1))
    s.settimeout(within)
    check(closed_by_server(s), "a stalled payload was still open after %.0f s" % within)


def case_small_stall_budget(addr, export, status, within):
    """A small WRITE (4K) whose payload stops short on connection A, its
    socket left open, and then a READ of the largest payload (32 MiB: the
    whole budget) on connection B.  io_timeout ends A, so the READ is
    answered, without error, within WITHIN seconds, and the budget comes
    back; a stalled small payload used to pin its buffer until the client
    closed, and B's READ waited NBD_WAIT_MS (60 s) and failed."""
    within = float(within)
    a, _ = open_session_nb(addr, export)
    request(a, CMD_WRITE, 0, 4096, cookie=1, data=b"\x45" * 100)
    b, _ = open_session_nb(addr, export)
    t0 = time.time()
    request(b, CMD_READ, 0, 32 << 20, cookie=2)
    b.settimeout(within)
    try:
        err, cookie, _ = reply(b, 32 << 20)
    except socket.timeout:
        raise Fail("the 32 MiB READ was not answered within %.0f s" % within)
    check(err == 0 and cookie == 2, "READ: error %d cookie %d after %.1f s" %
          (err, cookie, time.time() - t0))
    a.settimeout(max(0.1, within - (time.time() - t0)))
    check(closed_by_server(a), "the stalled small payload's connection "
          "was still open after %.0f s" % within)
    disc(b)
    while status_value(status, "nbd.memory_used") != 0:
        check(time.time() < t0 + within, "nbd.memory_used stays at %d" %
              status_value(status, "nbd.memory_used"))
        time.sleep(0.05)


def case_read_flood(addr, export, n, k, length):
    """N clients that each pipeline K READs of LENGTH bytes and close
    without reading a reply."""
    n, k, length = int(n), int(k), int(length)
    for i in range(n):
        s, size = open_session_nb(addr, export)
        reqs = b"".join(struct.pack(">IHHQQI", REQ_MAGIC, 0, CMD_READ, j, 0,
                                    min(length, size)) for j in range(k))
        try:
            s.sendall(reqs)
        except OSError:
            pass
        s.close()


def status_value(path, key):
    with open(path) as f:
        for line in f:
            if line.startswith(key + "="):
                return int(line.split("=", 1)[1])
    raise Fail("no %s in %s" % (key, path))


def hold_write_and_read(addr, export, status, length):
    """A WRITE of LENGTH bytes held one byte short on a new connection A,
    then a 4K READ on a new connection B, waiting until the READ waits for
    budget (nbd.memory_waits in STATUS rises).  Returns (a, b)."""
    waits0 = status_value(status, "nbd.memory_waits")
    a, _ = open_session_nb(addr, export)
    request(a, CMD_WRITE, 0, length, cookie=1, data=b"\x61" * (length - 1))
    b, _ = open_session_nb(addr, export)
    request(b, CMD_READ, 0, 4096, cookie=2)
    deadline = time.time() + TIMEOUT
    while status_value(status, "nbd.memory_waits") == waits0:
        check(time.time() < deadline, "the READ never waited for budget")
        time.sleep(0.05)
    return a, b


def case_barrier_budget(addr, export, status, length):
    """The reconnect barrier must not wait while holding budget: a WRITE of
    LENGTH bytes (the whole budget) is held one byte short on connection A;
    a 4K READ on connection B waits for budget (nbd.memory_waits in the
    STATUS file rises); A's last byte is sent.  Then both are answered, a
    fresh client's WRITE too, and the budget comes back."""
    a, b = hold_write_and_read(addr, export, status, int(length))
    a.sendall(b"\x61")
    err, cookie, _ = reply(a)
    check(err == 0 and cookie == 1, "WRITE: error %d cookie %d" % (err, cookie))
    err, cookie, data = reply(b, 4096)
    check(err == 0 and cookie == 2, "READ: error %d cookie %d" % (err, cookie))
    check(data == b"\x61" * 4096, "READ does not see the WRITE")
    c, _ = open_session_nb(addr, export)
    request(c, CMD_WRITE, 4096, 4096, cookie=3, data=b"\x62" * 4096)
    err, cookie, _ = reply(c)
    check(err == 0 and cookie == 3, "fresh WRITE: error %d" % err)
    for s in (a, b, c):
        disc(s)


def case_budget_wait_hold(addr, export, status, length, ready):
    """A WRITE of LENGTH bytes (the whole budget) held one byte short, and
    a READ on a second connection waiting for budget (nbd.memory_waits in
    STATUS rises); then READY is created and both are held until the
    server closes them (its shutdown)."""
    a, b = hold_write_and_read(addr, export, status, int(length))
    open(ready, "w").close()
    b.settimeout(240)
    check(closed_by_server(b), "the server did not close the READ's connection")
    a.close()


def main(cases=None):
    """Runs case_NAME(addr, export, args...) from argv, found in cases (a
    module's globals(); default ours)."""
    addr, export, case = sys.argv[1:4]
    try:
        (cases or globals())["case_" + case.replace("-", "_")](addr, export, *sys.argv[4:])
    except (Fail, EOFError, OSError) as e:
        print("FAIL %s: %s" % (case, e), file=sys.stderr)
        sys.exit(1)
    print("ok %s" % case)


if __name__ == "__main__":
    main()
