# SPDX-License-Identifier: MIT
"""The handshake flood of issue 17, from one source address.

  nbd_flood.py HOST:PORT SRC IDLE STALLED STALLED_TLS CHURNERS SECS

From SRC (e.g. 127.0.0.2, another loopback address than the real client's),
for SECS seconds, holds open:
  IDLE         connections that never send a byte,
  STALLED      connections that answer the greeting, then stop mid-option,
  STALLED_TLS  connections that get STARTTLS's ACK, then stop inside the
               TLS ClientHello,
each reconnecting as soon as the server closes it, while CHURNERS threads
connect and close as fast as they can.  Prints "ready" once every holder
has connected once, and at the end one line of counts.
"""
import os
import socket
import struct
import sys
import threading
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from nbd_raw import IHAVEOPT, OPT_STARTTLS, recv_exact  # noqa: E402

stop = threading.Event()
lock = threading.Lock()
counts = {"connects": 0, "closed_by_server": 0, "errors": 0}
first = threading.Semaphore(0)


def bump(key):
    with lock:
        counts[key] += 1


def dial(addr, src):
    host, port = addr.rsplit(":", 1)
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    s.bind((src, 0))
    s.settimeout(30)
    s.connect((host, int(port)))
    bump("connects")
    return s


def hold(addr, src, kind):
    announced = False
    while not stop.is_set():
        try:
            s = dial(addr, src)
            if kind != "idle":
                recv_exact(s, 18)
                s.sendall(struct.pack(">I", 3))
                if kind == "stalled":
                    s.sendall(struct.pack(">Q", IHAVEOPT))  # half an option
                else:
                    s.sendall(struct.pack(">QII", IHAVEOPT, OPT_STARTTLS, 0))
                    recv_exact(s, 20)
                    # A TLS record header announcing 512 bytes, then nothing.
                    s.sendall(b"\x16\x03\x01\x02\x00\x01")
            if not announced:
                first.release()
                announced = True
            s.settimeout(0.5)
            while not stop.is_set():
                try:
                    if not s.recv(4096):
                        break
                except socket.timeout:
                    continue
            bump("closed_by_server")
            s.close()
        except (OSError, EOFError):
            bump("errors")
            if not announced:
                first.release()
                announced = True
            time.sleep(0.05)


def churn(addr, src):
    while not stop.is_set():
        try:
            dial(addr, src).close()
        except OSError:
            bump("errors")
            time.sleep(0.01)


def main():
    addr, src = sys.argv[1], sys.argv[2]
    idle, stalled, stalled_tls, churners, secs = map(int, sys.argv[3:8])
    threads = []
    for kind, n in (("idle", idle), ("stalled", stalled),
                    ("tls", stalled_tls)):
        for _ in range(n):
            threads.append(threading.Thread(target=hold,
                                            args=(addr, src, kind)))
    holders = len(threads)
    for _ in range(churners):
        threads.append(threading.Thread(target=churn, args=(addr, src)))
    for t in threads:
        t.daemon = True
        t.start()
    for _ in range(holders):
        first.acquire()
    print("ready", flush=True)
    stop.wait(secs)
    stop.set()
    for t in threads:
        t.join(5)
    print("connects=%(connects)d closed_by_server=%(closed_by_server)d "
          "errors=%(errors)d" % counts, flush=True)


if __name__ == "__main__":
    main()
