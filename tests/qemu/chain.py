# SPDX-License-Identifier: MIT
"""QEMU's own COLO secondary (block/replication.c), run as a test peer.

One qemu-system-x86_64 -M none holds the secondary chain of
docs/block-replication.txt ("Secondary" usage):

    top-disk1  quorum (read-pattern=fifo, vote-threshold=1)      <- FUSE view
      childs1  replication mode=secondary top-id=top-disk1
        active.qcow2 -> backing hidden.qcow2 -> backing colo1
    colo1      raw secondary disk                                <- NBD export

nbd-server-start on a unix socket + nbd-server-add colo1 writable take the
primary's writes; block-export-add type=fuse puts top-disk1 on a regular
file (the view).  Control is the Xen QMP path:
    start       xen-set-replication {enable: true,  primary: false}
    checkpoint  xen-colo-do-checkpoint
    failover    xen-set-replication {enable: false, primary: false,
                                     failover: true}
    stop        xen-set-replication {enable: false, primary: false}
(argument names checked with query-qmp-schema on Debian's QEMU 7.2).

Quirks of QEMU 7.2 (see doc/qemu-interop.md):
  - the FUSE file must be opened afresh for each read: an fd held open
    across a checkpoint keeps serving the dropped secondary writes from
    the kernel page cache;
  - stop without failover fails ("Backup job was cancelled unexpectedly")
    and leaves the buffers in place;
  - failover starts an internal commit job (no QMP job events, hidden from
    query-jobs); it is done when the replication node's file child has
    become the raw secondary disk (query-block);
  - the NBD server keeps accepting writes after failover; the docs say to
    run nbd-server-stop first, and failover() does so.

Also usable from the shell, for a quick look:
    /usr/bin/python3 tests/qemu/chain.py selftest [DIR]
"""
import os
import shutil
import signal
import subprocess
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from qmp import QMP, QMPError  # noqa: E402

QEMU = os.environ.get("QEMU", "qemu-system-x86_64")
QEMU_IMG = os.environ.get("QEMU_IMG", "qemu-img")


def have_qemu():
    return shutil.which(QEMU) is not None and shutil.which(QEMU_IMG) is not None



def stop_qemu(qmp, proc):
    """Asks QEMU to quit over QMP, waits for it (10 s, then SIGKILL to its
    process group).  Either argument may be None."""
    if qmp is not None:
        try:
            qmp.execute("quit")
        except Exception:
            pass
        qmp.close()
    if proc is not None:
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()

class QemuChain:
    """QEMU's secondary in DIR.  disk is the raw secondary disk: a copy of
    image if given, else a zero file of size bytes."""

    export = "colo1"

    def __init__(self, workdir, size=None, image=None, cache_direct=False,
                 buffer_dir=None):
        """buffer_dir: where the active and hidden qcow2 go (the docs
        advise a ramdisk); default workdir."""
        self.dir = os.path.abspath(workdir)
        os.makedirs(self.dir, exist_ok=True)
        self.buffer_dir = os.path.abspath(buffer_dir or self.dir)
        os.makedirs(self.buffer_dir, exist_ok=True)
        self.disk = os.path.join(self.dir, "secondary.raw")
        self.active = os.path.join(self.buffer_dir, "active.qcow2")
        self.hidden = os.path.join(self.buffer_dir, "hidden.qcow2")
        self.view = os.path.join(self.dir, "view")
        self.nbd_sock = os.path.join(self.dir, "nbd.sock")
        self.qmp_sock = os.path.join(self.dir, "qmp.sock")
        self.log = os.path.join(self.dir, "qemu.log")
        self.image = image
        self.size = size
        self.cache_direct = cache_direct
        self.proc = None
        self.qmp = None
        self.top_node = None

    # -- life cycle -------------------------------------------------------
    def setup(self):
        """Creates the images and starts QEMU with the chain, the NBD
        server and the FUSE view; replication is not started yet."""
        if self.image:
            subprocess.run(["cp", "--sparse=always", self.image, self.disk],
                           check=True)
            self.size = os.path.getsize(self.disk)
        else:
            with open(self.disk, "wb") as f:
                f.truncate(self.size)
        for img in (self.active, self.hidden):
            subprocess.run([QEMU_IMG, "create", "-q", "-f", "qcow2", img,
                            str(self.size)], check=True)
        # The FUSE export needs an existing regular file as its mountpoint.
        with open(self.view, "wb"):
            pass
        cache = ",cache.direct=on" if self.cache_direct else ""
        args = [
            QEMU, "-M", "none", "-nodefaults", "-display", "none",
            "-accel", "tcg",
            "-qmp", "unix:%s,server=on,wait=off" % self.qmp_sock,
            "-drive", "if=none,driver=raw,file.filename=%s,id=colo1%s"
            % (self.disk, cache),
            "-drive", "if=none,id=childs1,driver=replication,mode=secondary,"
            "top-id=top-disk1,file.driver=qcow2,file.file.filename=%s,"
            "file.backing.driver=qcow2,file.backing.file.filename=%s,"
            "file.backing.backing=colo1%s" % (self.active, self.hidden, cache),
            "-drive", "if=none,driver=quorum,read-pattern=fifo,id=top-disk1,"
            "vote-threshold=1,children.0=childs1",
        ]
        with open(self.log, "ab") as log:
            self.proc = subprocess.Popen(args, stdin=subprocess.DEVNULL,
                                         stdout=log, stderr=log,
                                         start_new_session=True)
        try:
            self.qmp = QMP(self.qmp_sock)
        except Exception:
            self._dump_log()
            raise
        for b in self.qmp.execute("query-block"):
            if b["device"] == "top-disk1":
                self.top_node = b["inserted"]["node-name"]
        self.qmp.execute("nbd-server-start", addr={
            "type": "unix", "data": {"path": self.nbd_sock}})
        self.qmp.execute("nbd-server-add", device="colo1", writable=True)
        self.qmp.execute("block-export-add", type="fuse", id="view",
                         mountpoint=self.view, writable=True,
                         **{"node-name": self.top_node})
        return self

    def close(self):
        """Stops QEMU, unmounts the view; safe to call twice."""
        stop_qemu(self.qmp, self.proc)
        self.qmp = self.proc = None
        if os.path.ismount(self.view):
            subprocess.run(["fusermount3", "-u", "-z", self.view],
                           stderr=subprocess.DEVNULL)

    def __enter__(self):
        return self.setup()

    def __exit__(self, *exc):
        self.close()

    def pid(self):
        return self.proc.pid if self.proc else None

    def _dump_log(self):
        try:
            with open(self.log) as f:
                sys.stderr.write(f.read())
        except OSError:
            pass

    # -- control ----------------------------------------------------------
    def start(self):
        self.qmp.execute("xen-set-replication", enable=True, primary=False)

    def checkpoint(self):
        self.qmp.execute("xen-colo-do-checkpoint")

    def stop(self):
        """Stop without failover.  Raises QMPError on QEMU 7.2 (known
        defect: "Backup job was cancelled unexpectedly")."""
        self.qmp.execute("xen-set-replication", enable=False, primary=False)

    def failover(self, wait=True, timeout=120.0):
        """nbd-server-stop (as the docs say), then failover; with wait,
        returns once the commit job has finished."""
        self.qmp.execute("nbd-server-stop")
        self.qmp.execute("xen-set-replication", enable=False, primary=False,
                         failover=True)
        if wait:
            self.wait_failover_done(timeout)

    def failover_done(self):
        """True once the commit has replaced the active disk by the raw
        secondary disk under the replication node."""
        for b in self.qmp.execute("query-block"):
            if b["device"] == "childs1":
                fn = b["inserted"]["image"]["filename"]
                return "qcow2" not in fn
        raise RuntimeError("childs1 vanished from query-block")

    def wait_failover_done(self, timeout=120.0):
        end = time.monotonic() + timeout
        while not self.failover_done():
            if time.monotonic() > end:
                raise TimeoutError("QEMU's failover commit did not finish")
            time.sleep(0.005)

    def error(self):
        """query-xen-replication-status: (error, desc)."""
        r = self.qmp.execute("query-xen-replication-status")
        return r.get("error"), r.get("desc")

    # -- I/O helpers --------------------------------------------------------
    def read_view(self, off=0, length=None):
        """Reads the view with a fresh open (see the stale cache quirk)."""
        if length is None:
            length = self.size - off
        fd = os.open(self.view, os.O_RDONLY)
        try:
            return preadall(fd, length, off)
        finally:
            os.close(fd)

    def write_view(self, data, off):
        fd = os.open(self.view, os.O_WRONLY)
        try:
            pwriteall(fd, data, off)
        finally:
            os.close(fd)

    def read_disk_file(self):
        with open(self.disk, "rb") as f:
            return f.read()


def preadall(fd, length, off):
    out = bytearray()
    while len(out) < length:
        b = os.pread(fd, min(length - len(out), 1 << 22), off + len(out))
        if not b:
            raise IOError("short read at %d" % (off + len(out)))
        out += b
    return bytes(out)


def pwriteall(fd, data, off):
    mv = memoryview(data)
    done = 0
    while done < len(mv):
        done += os.pwrite(fd, mv[done:], off + done)


def nbd_connect(sock, export):
    import nbd
    h = nbd.NBD()
    h.set_export_name(export)
    h.connect_unix(sock)
    return h


def exit_on_signals():
    """Turns SIGTERM/SIGHUP into SystemExit so that `with` blocks close
    QEMU and unmount its view when a time limit kills the script."""
    def handler(signum, frame):
        raise SystemExit(128 + signum)
    for s in (signal.SIGTERM, signal.SIGHUP):
        signal.signal(s, handler)


def selftest(workdir):
    """Checks the chain behaves as COLO says, and probes the two known
    defects; prints what it finds.  Returns 0 if the chain is usable."""
    size = 1 << 20
    with QemuChain(os.path.join(workdir, "a"), size=size) as q:
        h = nbd_connect(q.nbd_sock, q.export)
        h.pwrite(b"\x11" * size, 0)           # before start: pass-through
        q.start()
        held = os.open(q.view, os.O_RDWR)
        assert q.read_view() == b"\x11" * size
        h.pwrite(b"\x22" * 100000, 70000)      # primary write: view keeps 0x11
        assert q.read_view(70000, 100000) == b"\x11" * 100000
        assert bytes(h.pread(100000, 70000)) == b"\x22" * 100000
        pwriteall(held, b"\x33" * 5000, 1000)  # secondary write
        assert preadall(held, 5000, 1000) == b"\x33" * 5000
        q.checkpoint()                         # view := disk
        stale = preadall(held, 5000, 1000)     # before any fresh open
        fresh = q.read_view()
        want = bytearray(b"\x11" * size)
        want[70000:170000] = b"\x22" * 100000
        assert fresh == want, "checkpoint did not make view = disk"
        print("stale page cache after checkpoint (known defect): %s"
              % ("present" if stale != fresh[1000:6000] else "absent"))
        os.close(held)
        q.write_view(b"\x44" * 3000, 200000)
        want[200000:203000] = b"\x44" * 3000
        h.shutdown()
        t = time.monotonic()
        q.failover()
        print("failover done in %.3f s" % (time.monotonic() - t))
        assert q.read_view() == want, "view changed by failover"
        assert q.read_disk_file() == want, "failover did not commit"
        q.write_view(b"\x55" * 10, 5)
        want[5:15] = b"\x55" * 10
        assert q.read_disk_file() == want, "view write after failover"
    with QemuChain(os.path.join(workdir, "b"), size=size) as q:
        h = nbd_connect(q.nbd_sock, q.export)
        q.start()
        q.write_view(b"\x66" * 4096, 0)
        h.pwrite(b"\x77" * 4096, 8192)
        try:
            q.stop()
            print("stop without failover: succeeded (defect absent)")
        except QMPError as e:
            print("stop without failover fails (known defect): %s"
                  % e.error.get("desc"))
        v = q.read_view(0, 12288)
        print("after stop: view keeps the secondary write: %s; "
              "view shows the primary write: %s"
              % (v[:4096] == b"\x66" * 4096, v[8192:] == b"\x77" * 4096))
        h.shutdown()
    print("QEMU chain selftest: ok")
    return 0


if __name__ == "__main__":
    if len(sys.argv) >= 2 and sys.argv[1] == "selftest":
        if not have_qemu():
            print("qemu-system-x86_64 or qemu-img not installed")
            sys.exit(77)
        import tempfile
        d = sys.argv[2] if len(sys.argv) > 2 else tempfile.mkdtemp(
            prefix="qemu-chain.")
        exit_on_signals()
        sys.exit(selftest(d))
    print(__doc__)
    sys.exit(2)
