# SPDX-License-Identifier: MIT
"""A colofs primary (mode = primary) replicating into QEMU 7.2's own
secondary chain (chain.QemuChain: nbd-server-start, nbd-server-add, the
replication driver in mode=secondary, a FUSE view).

    colofs_primary.py DIR

The primary's disk (random data) is first synced whole into QEMU's
secondary disk; then replication starts on both, writes go to the
primary's file, both sides checkpoint, and after each checkpoint QEMU's
view must equal the primary's file.  Then a failover on both: QEMU's
disk must equal the primary's image.  Exit 0 if every check passed.
"""
import os
import random
import subprocess
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from chain import QemuChain, preadall, pwriteall  # noqa: E402

HERE = os.path.dirname(os.path.abspath(__file__))
COLOFS = os.environ.get(
    "COLOFS_BIN", os.path.join(HERE, "..", "..", "build", "colofs"))
SIZE = 16 << 20


def status(mnt):
    with open(os.path.join(mnt, ".colo", "status")) as f:
        return dict(line.rstrip("\n").split("=", 1) for line in f if "=" in line)


def ctl(mnt, word):
    with open(os.path.join(mnt, ".colo", "ctl"), "w") as f:
        f.write(word + "\n")


def wait_state(mnt, want, timeout=60):
    end = time.monotonic() + timeout
    while status(mnt)["state"] != want:
        if time.monotonic() > end:
            sys.exit("the colofs primary did not reach %s: %s" % (want, status(mnt)))
        time.sleep(0.05)


def read_file(path, size):
    fd = os.open(path, os.O_RDONLY)
    try:
        return preadall(fd, size, 0)
    finally:
        os.close(fd)


def main(workdir):
    workdir = os.path.abspath(workdir)
    os.makedirs(workdir, exist_ok=True)
    rng = random.Random(12)
    pimg = os.path.join(workdir, "primary.raw")
    with open(pimg, "wb") as f:
        f.write(rng.randbytes(SIZE))
    mnt = os.path.join(workdir, "pmnt")
    state = os.path.join(workdir, "state")
    os.makedirs(mnt, exist_ok=True)
    chain = QemuChain(os.path.join(workdir, "qemu"), size=SIZE)
    proc = None
    try:
        chain.setup()
        cfg = os.path.join(workdir, "p.ini")
        with open(cfg, "w") as f:
            f.write("[colofs]\nmountpoint = %s\nmode = primary\n"
                    "state_dir = %s\n\n[disk \"vda\"]\nimage = %s\n"
                    "secondary = nbd+unix:///%s?socket=%s\n"
                    % (mnt, state, pimg, chain.export, chain.nbd_sock))
        proc = subprocess.Popen([COLOFS, "-c", cfg, "-f"],
                                stderr=open(os.path.join(workdir, "p.log"), "ab"))
        end = time.monotonic() + 10
        while not os.path.ismount(mnt):
            if time.monotonic() > end or proc.poll() is not None:
                sys.exit("the colofs primary did not mount")
            time.sleep(0.05)
        ctl(mnt, "start")
        wait_state(mnt, "replicating")
        if read_file(chain.disk, SIZE) != read_file(os.path.join(mnt, "vda"), SIZE):
            sys.exit("after the first sync QEMU's disk differs")
        print("ok: first sync into QEMU's secondary disk")
        chain.start()
        vda = os.path.join(mnt, "vda")
        for rnd in range(3):
            fd = os.open(vda, os.O_WRONLY)
            for _ in range(20):
                n = rng.randrange(1, 65) * 4096
                off = rng.randrange(0, (SIZE - n) // 512) * 512
                pwriteall(fd, rng.randbytes(n), off)
            os.fsync(fd)
            os.close(fd)
            ctl(mnt, "checkpoint")
            chain.checkpoint()
            if chain.read_view() != read_file(vda, SIZE):
                sys.exit("round %d: QEMU's view differs from the primary's file" % rnd)
            print("ok: round %d: QEMU's view equals the primary's file" % rnd)
        err = chain.error()
        if err[0]:
            sys.exit("QEMU's replication reports an error: %s" % (err,))
        ctl(mnt, "failover")
        chain.failover()
        if chain.read_disk_file() != read_file(vda, SIZE):
            sys.exit("after failover QEMU's disk differs from the primary's")
        print("ok: after failover QEMU's disk equals the primary's")
    finally:
        if proc is not None:
            subprocess.run(["fusermount3", "-u", mnt], stderr=subprocess.DEVNULL)
            try:
                proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        chain.close()
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1]))
