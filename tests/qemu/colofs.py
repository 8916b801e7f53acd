# SPDX-License-Identifier: MIT
"""colofs as a test peer, with the same interface as chain.QemuChain.

One disk "vda" on a raw image in DIR, NBD on DIR/nbd.sock, mounted on
DIR/mnt.  `build/colofs -c FILE` daemonizes once the mount is ready;
MNT/vda is the view, MNT/.colo/ctl takes the control words and
MNT/.colo/status has state=... lines.
"""
import os
import subprocess
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from chain import preadall, pwriteall  # noqa: E402

HERE = os.path.dirname(os.path.abspath(__file__))
DEFAULT_BIN = os.environ.get(
    "COLOFS_BIN", os.path.join(HERE, "..", "..", "build", "colofs"))


class Colofs:
    export = "vda"

    def __init__(self, workdir, size=None, image=None, binary=None,
                 buffer="memory", extra_config=""):
        self.dir = os.path.abspath(workdir)
        os.makedirs(self.dir, exist_ok=True)
        self.binary = os.path.abspath(binary or DEFAULT_BIN)
        self.disk = os.path.join(self.dir, "vda.img")
        self.mnt = os.path.join(self.dir, "mnt")
        self.view = os.path.join(self.mnt, "vda")
        self.ctl_path = os.path.join(self.mnt, ".colo", "ctl")
        self.status_path = os.path.join(self.mnt, ".colo", "status")
        self.nbd_sock = os.path.join(self.dir, "nbd.sock")
        self.config = os.path.join(self.dir, "colofs.ini")
        self.log = os.path.join(self.dir, "colofs.log")
        self.image = image
        self.size = size
        self.buffer = buffer
        self.extra_config = extra_config
        self._pid = None
        self.held = None

    def setup(self):
        if self.image:
            subprocess.run(["cp", "--sparse=always", self.image, self.disk],
                           check=True)
            self.size = os.path.getsize(self.disk)
        else:
            with open(self.disk, "wb") as f:
                f.truncate(self.size)
        os.makedirs(self.mnt, exist_ok=True)
        extra = self.extra_config
        if self.buffer != "memory":
            bufdir = os.path.join(self.dir, "buf")
            os.makedirs(bufdir, exist_ok=True)
            extra = "buffer_dir = %s\n%s" % (bufdir, extra)
        with open(self.config, "w") as f:
            f.write("[colofs]\nmountpoint = %s\nlisten = unix:%s\n"
                    "buffer = %s\nstate_dir = %s\n%s\n\n"
                    "[disk \"vda\"]\nimage = %s\n"
                    % (self.mnt, self.nbd_sock, self.buffer,
                       os.path.join(self.dir, "state"), extra, self.disk))
        with open(self.log, "ab") as log:
            r = subprocess.run([self.binary, "-c", self.config],
                               stdin=subprocess.DEVNULL, stdout=log,
                               stderr=log, timeout=60)
        if r.returncode != 0 or not os.path.ismount(self.mnt):
            with open(self.log) as f:
                sys.stderr.write(f.read())
            raise RuntimeError("colofs did not start (exit %d)"
                               % r.returncode)
        return self

    def pid(self):
        """The daemon's pid (it daemonizes, so look it up once)."""
        if self._pid is None:
            want = ["-c", self.config]
            for p in os.listdir("/proc"):
                if not p.isdigit():
                    continue
                try:
                    with open("/proc/%s/cmdline" % p, "rb") as f:
                        argv = f.read().split(b"\0")[:-1]
                except OSError:
                    continue
                argv = [a.decode(errors="replace") for a in argv]
                if (argv and os.path.basename(argv[0]) == "colofs"
                        and argv[1:3] == want):
                    self._pid = int(p)
                    break
        return self._pid

    def close(self):
        if self.held is not None:
            os.close(self.held)
            self.held = None
        pid = self.pid() if os.path.ismount(self.mnt) else self._pid
        if os.path.ismount(self.mnt):
            subprocess.run(["fusermount3", "-u", self.mnt],
                           stderr=subprocess.DEVNULL)
        if pid is not None:
            end = time.monotonic() + 10
            while os.path.exists("/proc/%d" % pid):
                if time.monotonic() > end:
                    os.kill(pid, 9)
                    break
                time.sleep(0.05)
        if os.path.ismount(self.mnt):
            subprocess.run(["fusermount3", "-u", "-z", self.mnt],
                           stderr=subprocess.DEVNULL)

    def __enter__(self):
        return self.setup()

    def __exit__(self, *exc):
        self.close()

    # -- control ----------------------------------------------------------
    def ctl(self, word):
        with open(self.ctl_path, "w") as f:
            f.write(word + "\n")

    def status(self):
        with open(self.status_path) as f:
            out = {}
            for line in f:
                k, sep, v = line.rstrip("\n").partition("=")
                if sep:
                    out[k] = v
            return out

    def start(self):
        self.ctl("start")

    def checkpoint(self):
        self.ctl("checkpoint")

    def stop(self):
        self.ctl("stop")

    def failover(self, wait=True, timeout=120.0):
        self.ctl("failover")
        if wait:
            self.wait_failover_done(timeout)

    def failover_done(self):
        return self.status().get("state") == "done"

    def wait_failover_done(self, timeout=120.0):
        end = time.monotonic() + timeout
        while not self.failover_done():
            if time.monotonic() > end:
                raise TimeoutError("colofs failover did not reach done: %r"
                                   % self.status())
            time.sleep(0.002)

    # -- I/O helpers --------------------------------------------------------
    def held_fd(self):
        """One fd kept open for the whole run: colofs must keep it
        coherent across checkpoints (QEMU's FUSE export does not)."""
        if self.held is None:
            self.held = os.open(self.view, os.O_RDWR)
        return self.held

    def read_view(self, off=0, length=None, fresh=False):
        if length is None:
            length = self.size - off
        if not fresh:
            return preadall(self.held_fd(), length, off)
        fd = os.open(self.view, os.O_RDONLY)
        try:
            return preadall(fd, length, off)
        finally:
            os.close(fd)

    def write_view(self, data, off):
        pwriteall(self.held_fd(), data, off)

    def read_disk_file(self):
        with open(self.disk, "rb") as f:
            return f.read()
