# SPDX-License-Identifier: MIT
"""A real QEMU COLO primary writing to colofs.

The primary is block-replication.txt's "Primary" usage in
qemu-system-x86_64 -M none:
    -drive if=none,driver=quorum,read-pattern=fifo,id=colo1,
           vote-threshold=1,children.0.file.filename=P.raw,
           children.0.driver=raw
then, once the secondary runs, the NBD child is added with HMP
    drive_add -n buddy driver=replication,mode=primary,file.driver=nbd,
              file.server.type=unix,file.server.path=SOCK,
              file.export=vda,node-name=nbd_client1
and QMP x-blockdev-change {parent: colo1, node: nbd_client1} and
xen-set-replication {enable: true, primary: true}.  Writes come from HMP
`qemu-io colo1 "write -P 0xNN OFF LEN"`: the quorum sends each to the
local file and, through the replication filter, over NBD to colofs.

    /usr/bin/python3 tests/qemu/primary.py test DIR [COLOFS_BIN]
runs the end-to-end check (tests/e2e/test-qemu-primary.sh);
    /usr/bin/python3 tests/qemu/primary.py test-tls DIR COLOFS_BIN psk|x509 CREDS
runs it over TLS (tests/e2e/test-tls-qemu-primary.sh): CREDS holds
keys.psk (psk), or server/ and client/ in QEMU's x509 layout (x509); the
primary connects with -object tls-creds-psk or tls-creds-x509 and
file.tls-creds=tls0;
    /usr/bin/python3 tests/qemu/primary.py probe DIR
probes the sub-sector write defect of QEMU's primary against QEMU's own
secondary.
"""
import os
import random
import subprocess
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import chain  # noqa: E402
from chain import QEMU  # noqa: E402
from colofs import Colofs  # noqa: E402
from qmp import QMP  # noqa: E402


class Primary:
    def __init__(self, workdir, image, tls_object=None):
        self.tls_object = tls_object   # "-object" argument, id=tls0
        self.dir = os.path.abspath(workdir)
        os.makedirs(self.dir, exist_ok=True)
        self.disk = os.path.join(self.dir, "primary.raw")
        self.qmp_sock = os.path.join(self.dir, "qmp.sock")
        self.log = os.path.join(self.dir, "qemu.log")
        self.image = image
        self.proc = None
        self.qmp = None

    def setup(self):
        subprocess.run(["cp", "--sparse=always", self.image, self.disk],
                       check=True)
        args = [
            QEMU, "-M", "none", "-nodefaults", "-display", "none",
            "-accel", "tcg",
            "-qmp", "unix:%s,server=on,wait=off" % self.qmp_sock,
            "-drive", "if=none,driver=quorum,read-pattern=fifo,id=colo1,"
            "vote-threshold=1,children.0.file.filename=%s,"
            "children.0.driver=raw" % self.disk,
        ]
        if self.tls_object:
            args += ["-object", self.tls_object]
        with open(self.log, "ab") as log:
            self.proc = subprocess.Popen(args, stdin=subprocess.DEVNULL,
                                         stdout=log, stderr=log,
                                         start_new_session=True)
        self.qmp = QMP(self.qmp_sock)
        return self

    def connect(self, nbd_sock, export):
        """Adds the replication(primary) -> NBD child and starts it."""
        out = self.qmp.hmp(
            "drive_add -n buddy driver=replication,mode=primary,"
            "file.driver=nbd,file.server.type=unix,file.server.path=%s,"
            "file.export=%s,node-name=nbd_client1%s"
            % (nbd_sock, export,
               self.tls_opts()))
        if out.strip() not in ("", "OK"):
            raise RuntimeError("drive_add: %s" % out.strip())
        self.qmp.execute("x-blockdev-change", parent="colo1",
                         node="nbd_client1")
        self.qmp.execute("xen-set-replication", enable=True, primary=True)

    def tls_opts(self):
        if not self.tls_object:
            return ""
        # A unix socket has no host name to check the server's
        # certificate against: name the one in its SAN.
        if self.tls_object.startswith("tls-creds-x509"):
            return ",file.tls-creds=tls0,file.tls-hostname=localhost"
        return ",file.tls-creds=tls0"

    def io(self, cmd):
        """One qemu-io command on the quorum; raises on an error."""
        out = self.qmp.hmp('qemu-io colo1 "%s"' % cmd)
        low = out.lower()
        if "error" in low or "failed" in low or "invalid" in low:
            raise RuntimeError("qemu-io %s: %s" % (cmd, out.strip()))
        return out

    def error(self):
        r = self.qmp.execute("query-xen-replication-status")
        return r.get("error"), r.get("desc")

    def close(self):
        chain.stop_qemu(self.qmp, self.proc)
        self.qmp = self.proc = None

    def __enter__(self):
        return self.setup()

    def __exit__(self, *exc):
        self.close()

    def read_disk(self):
        with open(self.disk, "rb") as f:
            return f.read()


def check(what, got, want):
    if got != want:
        i = next(k for k in range(min(len(got), len(want)))
                 if got[k] != want[k]) if len(got) == len(want) else -1
        raise AssertionError("%s: differs (first at byte %d)" % (what, i))
    print("ok: %s" % what)


def test(workdir, colofs_bin=None, tls=None, creds=None):
    """tls: None, "psk" or "x509" (creds: see the module's text)."""
    extra, tls_object = "", None
    if tls == "psk":
        extra = "tls_psk_file = %s/keys.psk\n" % creds
        tls_object = ("tls-creds-psk,id=tls0,dir=%s,username=qemu,"
                      "endpoint=client" % creds)
    elif tls == "x509":
        extra = "tls_certificates = %s/server\n" % creds
        tls_object = ("tls-creds-x509,id=tls0,dir=%s/client,"
                      "endpoint=client" % creds)
    size = 8 << 20
    rng = random.Random(20261122)
    image = os.path.join(workdir, "initial.raw")
    with open(image, "wb") as f:
        f.write(rng.randbytes(size))
    initial = open(image, "rb").read()
    sec = Colofs(os.path.join(workdir, "colofs"), image=image,
                 binary=colofs_bin, extra_config=extra)
    with sec:
        sec.start()                    # the secondary first, as the docs say
        with Primary(os.path.join(workdir, "primary"), image,
                     tls_object) as pri:
            pri.connect(sec.nbd_sock, sec.export)
            if tls:
                st = sec.status()
                check("the primary's connection is a TLS session",
                      int(st.get("nbd.tls_sessions", "0")) >= 1, True)
                check("no handshake failed",
                      st.get("nbd.tls_handshake_failures"), "0")
            # Sector-aligned writes of every other shape, as a guest issues
            # them: not page- or cluster-aligned, straddling 64 KiB
            # clusters, zeros, up to the end of the disk.  Not below 512
            # bytes: QEMU 7.2's primary replication filter pads a sub-sector
            # write with stale memory instead of the disk's bytes, towards
            # QEMU's own secondary too (doc/qemu-interop.md).
            epochs = [
                ["write -P 0x22 0 65536", "write -P 0x33 12288 7168",
                 "write -P 0x44 130560 200192", "write -z 1048576 131072",
                 "write -P 0x55 %d 4096" % (size - 4096)],
                ["write -P 0x66 0 512", "write -P 0x77 65024 1024",
                 "write -P 0x88 4000256 1048576", "write -P 0x99 12800 512",
                 "write -z 7000064 70144"],
            ]
            for n, cmds in enumerate(epochs):
                # A secondary VM write, to be dropped by the checkpoint.
                sec.write_view(b"\xab" * 3000, 500000 + n)
                before = sec.read_view()
                for c in cmds:
                    pri.io(c)
                pri.io("flush")
                err, desc = pri.error()
                if err:
                    raise AssertionError("primary replication error: %s"
                                         % desc)
                p = pri.read_disk()
                check("epoch %d: colofs image equals the primary's image" % n,
                      sec.read_disk_file(), p)
                check("epoch %d: colofs view unchanged by primary writes" % n,
                      sec.read_view(), before)
                if n == 0:
                    check("epoch 0: the primary's image changed", p != initial,
                          True)
                sec.checkpoint()
                check("epoch %d: after checkpoint the view equals the "
                      "primary" % n, sec.read_view(), p)
                check("epoch %d: fresh open agrees" % n,
                      sec.read_view(fresh=True), p)
            final = pri.read_disk()
        # The primary is gone: fail over to the secondary.
        sec.write_view(b"\xcd" * 777, 123)
        want = bytearray(final)
        want[123:900] = b"\xcd" * 777
        sec.failover()
        check("after failover the view is the last checkpoint plus the "
              "secondary's writes", sec.read_view(), bytes(want))
        check("after failover colofs's image is the view",
              sec.read_disk_file(), bytes(want))
    print("QEMU primary test: ok")
    return 0


def probe_subsector(workdir):
    """QEMU primary -> QEMU's own secondary: does a write smaller than a
    sector reach the secondary intact?  Prints what it finds; informational
    (QEMU 7.2 pads it with stale memory: a QEMU defect, not colofs's)."""
    size = 1 << 20
    image = os.path.join(workdir, "init.raw")
    with open(image, "wb") as f:
        f.write(b"\x11" * size)
    with chain.QemuChain(os.path.join(workdir, "sec"), image=image) as s:
        s.start()
        with Primary(os.path.join(workdir, "pri"), image) as p:
            p.connect(s.nbd_sock, s.export)
            p.io("write -P 0x33 12288 4096")
            p.io("write -P 0x44 131000 2000")
            p.io("flush")
            pd = p.read_disk()
            s.qmp.execute("nbd-server-stop")
            sd = s.read_disk_file()
    bad = sum(1 for a, b in zip(pd, sd) if a != b)
    if bad:
        print("QEMU primary pads a sub-sector write with stale memory: "
              "%d bytes of QEMU's own secondary differ from the primary "
              "(known QEMU 7.2 defect, doc/qemu-interop.md)" % bad)
    else:
        print("QEMU primary sub-sector write: intact (defect absent)")
    return 0


if __name__ == "__main__":
    if len(sys.argv) >= 3 and sys.argv[1] == "probe":
        if not chain.have_qemu():
            print("SKIP: qemu-system-x86_64 not installed")
            sys.exit(77)
        chain.exit_on_signals()
        sys.exit(probe_subsector(sys.argv[2]))
    if len(sys.argv) >= 3 and sys.argv[1] == "test":
        if not chain.have_qemu():
            print("SKIP: qemu-system-x86_64 not installed")
            sys.exit(77)
        chain.exit_on_signals()
        sys.exit(test(sys.argv[2], sys.argv[3] if len(sys.argv) > 3
                      else None))
    if len(sys.argv) == 6 and sys.argv[1] == "test-tls":
        if not chain.have_qemu():
            print("SKIP: qemu-system-x86_64 not installed")
            sys.exit(77)
        chain.exit_on_signals()
        sys.exit(test(sys.argv[2], sys.argv[3], sys.argv[4], sys.argv[5]))
    print(__doc__)
    sys.exit(2)
