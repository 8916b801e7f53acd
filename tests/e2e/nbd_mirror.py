# SPDX-License-Identifier: MIT
"""Drives a COLO-style resync: qemu-storage-daemon mirrors a local raw
image onto colofs's export with blockdev-mirror sync=full (which first
zeroes the whole target, then copies data), over QMP.

  nbd_mirror.py QMP_SOCKET NBD_SOCKET EXPORT
"""
import json
import socket
import sys
import time


class QMP:
    def __init__(self, path):
        deadline = time.time() + 20
        while True:
            try:
                self.s = socket.socket(socket.AF_UNIX)
                self.s.connect(path)
                break
            except OSError:
                if time.time() > deadline:
                    raise
                time.sleep(0.1)
        self.f = self.s.makefile("rw")
        self.events = []
        json.loads(self.f.readline())  # greeting
        self.cmd("qmp_capabilities")

    def cmd(self, name, **args):
        self.f.write(json.dumps({"execute": name, "arguments": args}) + "\n")
        self.f.flush()
        while True:
            msg = json.loads(self.f.readline())
            if "event" in msg:
                self.events.append(msg)
                continue
            if "error" in msg:
                raise SystemExit("%s: %s" % (name, msg["error"]))
            return msg["return"]

    def wait_event(self, name, timeout=120):
        deadline = time.time() + timeout
        self.s.settimeout(timeout)
        while True:
            for i, e in enumerate(self.events):
                if e["event"] == name:
                    return self.events.pop(i)
            if time.time() > deadline:
                raise SystemExit("no %s event" % name)
            self.events.append(json.loads(self.f.readline()))


def main():
    qmp_path, nbd_path, export = sys.argv[1:4]
    q = QMP(qmp_path)
    q.cmd("blockdev-add", driver="nbd", **{"node-name": "tgt"},
          server={"type": "unix", "path": nbd_path}, export=export)
    q.cmd("blockdev-mirror", **{"job-id": "resync"}, device="src",
          target="tgt", sync="full")
    q.wait_event("BLOCK_JOB_READY")
    q.cmd("block-job-complete", device="resync")
    ev = q.wait_event("BLOCK_JOB_COMPLETED")
    if ev["data"].get("error"):
        raise SystemExit("mirror failed: %s" % ev["data"]["error"])
    q.cmd("blockdev-del", **{"node-name": "tgt"})
    q.cmd("quit")
    print("mirror done")


main()
