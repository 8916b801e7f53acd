# SPDX-License-Identifier: MIT
"""A unix-socket proxy that holds the client's bytes back on request:

  gate_proxy.py LISTEN_SOCKET TARGET_SOCKET GATE_FILE LIMIT_BYTES

Each connection to LISTEN_SOCKET is relayed to TARGET_SOCKET.  While
GATE_FILE exists, the client-to-target direction stops once LIMIT_BYTES
have passed on the connection, until GATE_FILE is removed; replies always
flow.  A test uses it to hold a primary's sync part-way, so that the
state "syncing" with some progress can be seen without a race.
"""
import os
import socket
import sys
import threading
import time


def pump(src, dst, gate, limit):
    passed = 0
    try:
        while True:
            data = src.recv(65536)
            if not data:
                break
            if gate is not None:
                while passed + len(data) > limit and os.path.exists(gate):
                    time.sleep(0.05)
                passed += len(data)
            dst.sendall(data)
    except OSError:
        pass
    for s in (src, dst):
        try:
            s.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass


def main():
    listen, target, gate, limit = sys.argv[1:5]
    limit = int(limit)
    srv = socket.socket(socket.AF_UNIX)
    srv.bind(listen)
    srv.listen(8)
    while True:
        c, _ = srv.accept()
        t = socket.socket(socket.AF_UNIX)
        t.connect(target)
        threading.Thread(target=pump, args=(c, t, gate, limit),
                         daemon=True).start()
        threading.Thread(target=pump, args=(t, c, None, 0),
                         daemon=True).start()


if __name__ == "__main__":
    main()
