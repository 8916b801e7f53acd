# SPDX-License-Identifier: MIT
"""Raw NBD clients for the TLS tests: what real clients never send.

  nbd_tls_raw.py ADDR EXPORT CASE [ARGS...]

Builds on nbd_raw.py.  Each CASE checks one behaviour and exits 0 if it
held, 1 (with a message) if not.
"""
import os
import socket
import ssl
import struct
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import nbd_raw  # noqa: E402
from nbd_raw import (OPT_ABORT, OPT_EXPORT_NAME, OPT_GO, OPT_LIST,  # noqa: E402
                     OPT_STARTTLS, REP_ACK, REQ_MAGIC, CMD_READ, CMD_DISC,
                     Fail, check, closed_by_server, connect, go_data, greet,
                     read_rep, recv_exact, send_opt)

ERR_TLS_REQD = 0x80000005


def starttls(s):
    send_opt(s, OPT_STARTTLS)
    o, t, _ = read_rep(s)
    check(o == OPT_STARTTLS and t == REP_ACK, "STARTTLS: reply %#x" % t)


def case_plaintext_refused(addr, export):
    """Every option before STARTTLS gets TLS_REQD; EXPORT_NAME closes."""
    s = connect(addr)
    greet(s)
    for opt, data in ((OPT_GO, go_data(export)), (OPT_LIST, b""),
                      (8, b""), (OPT_GO, go_data(export))):
        send_opt(s, opt, data)
        o, t, _ = read_rep(s)
        check(o == opt and t == ERR_TLS_REQD,
              "option %d before TLS: reply %#x, want TLS_REQD" % (opt, t))
    send_opt(s, OPT_EXPORT_NAME, export.encode())
    check(closed_by_server(s), "EXPORT_NAME before TLS did not close")
    s2 = connect(addr)
    greet(s2)
    send_opt(s2, OPT_ABORT)
    o, t, _ = read_rep(s2)
    check(t == REP_ACK, "ABORT before TLS: reply %#x" % t)


def case_garbage_after_starttls(addr, export):
    s = connect(addr)
    greet(s)
    starttls(s)
    try:
        s.sendall(os.urandom(65536))
    except (BrokenPipeError, ConnectionResetError):
        return
    check(closed_by_server(s), "garbage after STARTTLS did not close")


def case_stall_in_handshake(addr, export, within):
    """Sends half a TLS record after STARTTLS and stalls: the server must
    close the connection by its handshake deadline."""
    s = connect(addr)
    greet(s)
    starttls(s)
    s.sendall(b"\x16\x03\x01\x02\x00")    # a ClientHello's header only
    start = time.monotonic()
    s.settimeout(float(within))
    check(closed_by_server(s), "stalled handshake still open after %s s"
          % within)
    print("closed after %.1f s" % (time.monotonic() - start))


def tls_session(addr, export, certdir):
    s = connect(addr)
    greet(s)
    starttls(s)
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.load_verify_locations(os.path.join(certdir, "ca-cert.pem"))
    ctx.load_cert_chain(os.path.join(certdir, "client-cert.pem"),
                        os.path.join(certdir, "client-key.pem"))
    ctx.check_hostname = False
    t = ctx.wrap_socket(s)
    send_opt(t, OPT_GO, go_data(export))
    while True:
        o, ty, d = read_rep(t)
        if ty != 3:
            check(ty == REP_ACK, "GO over TLS: reply %#x" % ty)
            return t


def case_record_flood(addr, export, certdir, secs):
    """Over TLS, sends READs one byte per TLS record for secs seconds
    (tens of thousands of records), 8 in flight, and reads every reply."""
    t = tls_session(addr, export, certdir)
    end = time.monotonic() + float(secs)
    records = reads = 0
    while time.monotonic() < end:
        for i in range(8):
            req = struct.pack(">IHHQQI", REQ_MAGIC, 0, CMD_READ, i, 0, 512)
            for b in req:
                t.sendall(bytes([b]))
                records += 1
        for i in range(8):
            magic, e, cookie = struct.unpack(">IIQ", recv_exact(t, 16))
            check(magic == 0x67446698 and e == 0, "bad reply %#x %d" % (magic, e))
            recv_exact(t, 512)
            reads += 1
    t.sendall(struct.pack(">IHHQQI", REQ_MAGIC, 0, CMD_DISC, 0, 0, 0))
    print("%d records, %d reads answered" % (records, reads))


if __name__ == "__main__":
    nbd_raw.main(globals())
