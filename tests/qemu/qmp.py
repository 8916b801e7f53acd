# SPDX-License-Identifier: MIT
"""A small QMP client over a unix socket (Python standard library only).

    q = QMP(path)            # connects, reads the greeting, qmp_capabilities
    q.execute("query-status")           # returns "return", raises QMPError
    q.hmp("info block")                 # human-monitor-command, returns text
    q.events                            # every event seen so far, in order
    q.wait_event("BLOCK_JOB_COMPLETED", timeout=10)

QMP is line-delimited JSON; events may arrive between a command and its
reply, so every read collects them into self.events.
"""
import json
import socket
import time


class QMPError(Exception):
    def __init__(self, cmd, error):
        self.cmd = cmd
        self.error = error
        super().__init__("%s: %s: %s" % (cmd, error.get("class"),
                                         error.get("desc")))


class QMP:
    def __init__(self, path, timeout=30.0, connect_timeout=10.0):
        self.path = path
        self.timeout = timeout
        self.events = []
        self._buf = b""
        self._id = 0
        deadline = time.monotonic() + connect_timeout
        while True:
            s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            try:
                s.connect(path)
                break
            except (FileNotFoundError, ConnectionRefusedError):
                s.close()
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.05)
        s.settimeout(timeout)
        self.sock = s
        # An event (RESUME) can beat the greeting when we connect while
        # QEMU is still starting up.
        greeting = self._read()
        while "event" in greeting:
            self.events.append(greeting)
            greeting = self._read()
        if "QMP" not in greeting:
            raise RuntimeError("not a QMP greeting: %r" % greeting)
        self.greeting = greeting
        self.execute("qmp_capabilities")

    def close(self):
        if self.sock is not None:
            self.sock.close()
            self.sock = None

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def _read(self):
        while b"\n" not in self._buf:
            chunk = self.sock.recv(65536)
            if not chunk:
                raise EOFError("QMP socket %s closed" % self.path)
            self._buf += chunk
        line, self._buf = self._buf.split(b"\n", 1)
        return json.loads(line)

    def cmd(self, name, **args):
        """Sends a command; returns the whole reply dict (return or error)."""
        self._id += 1
        msg = {"execute": name, "id": self._id}
        if args:
            msg["arguments"] = args
        self.sock.sendall(json.dumps(msg).encode() + b"\n")
        while True:
            r = self._read()
            if "event" in r:
                self.events.append(r)
                continue
            if r.get("id") != self._id:
                continue
            return r

    def execute(self, name, **args):
        """Runs a command; returns its "return" value, raises QMPError."""
        r = self.cmd(name, **args)
        if "error" in r:
            raise QMPError(name, r["error"])
        return r.get("return")

    def hmp(self, line):
        """Runs an HMP command line; returns its text output."""
        return self.execute("human-monitor-command", **{"command-line": line})

    def poll_events(self, timeout=0.0):
        """Reads the events that arrive within timeout seconds."""
        end = time.monotonic() + timeout
        while True:
            left = end - time.monotonic()
            if left <= 0 and b"\n" not in self._buf:
                self.sock.settimeout(0.001)
            else:
                self.sock.settimeout(max(left, 0.001))
            try:
                r = self._read()
            except (socket.timeout, BlockingIOError):
                break
            finally:
                self.sock.settimeout(self.timeout)
            if "event" in r:
                self.events.append(r)
            if time.monotonic() >= end:
                break
        return self.events

    def wait_event(self, name, timeout=30.0, pred=None):
        """Returns (and removes) the first event NAME matching pred."""
        end = time.monotonic() + timeout
        while True:
            for i, e in enumerate(self.events):
                if e["event"] == name and (pred is None or pred(e)):
                    return self.events.pop(i)
            left = end - time.monotonic()
            if left <= 0:
                raise TimeoutError("no %s event in %.1fs" % (name, timeout))
            self.poll_events(min(left, 0.2))
