# SPDX-License-Identifier: MIT
"""A seeded random COLO workload, replayed on several secondaries at once.

Peers: "model" (a byte-exact Python model of COLO's semantics: the
oracle), "qemu" (chain.QemuChain: QEMU's own secondary) and "colofs"
(colofs.Colofs).  Every step is applied to every peer, then the whole view
and the whole secondary disk of every peer are compared with the model,
byte for byte.

The model:  D = the secondary disk, V = the secondary VM's view.
    before start   primary write: D and V change (pass-through);
                   view I/O fails (EIO)
    primary write  D changes, V does not (the old content goes to hidden)
    view write     V changes, D does not (it goes to active)
    checkpoint     V := D (both buffers dropped)
    failover       D := V, then pass-through (V = D)
    stop           V := D, then pass-through

Steps (generated up front from the seed; unaligned offsets and lengths,
all within the disk):
    pw  primary write (NBD WRITE, random bytes), sometimes + FLUSH
    pz  primary write of zeros (NBD WRITE_ZEROES)
    vw  view write (FUSE file)
    vr  view read of a random range, compared with the model
    cc  concurrent: up to 12 primary writes in flight (aio, replies in
        any order) while the view is written and read in another thread
    ck  checkpoint
    fo  failover (final), then a few vw/vr in pass-through
    st  stop without failover (final, instead of fo, in some seeds)

QEMU 7.2's known defects and how they are treated (doc/qemu-interop.md):
  - stale page cache: QEMU's view is read with a fresh open; in addition,
    right after each checkpoint a read through an fd held open all along
    probes the defect; what it finds is counted, not failed.  colofs is
    read through one held fd only, so it must not have the defect.
  - stop without failover fails in QEMU: from then on QEMU leaves the
    comparison (noted as the known defect); colofs goes on.
Any other difference from the model fails the run, with the seed.

    /usr/bin/python3 tests/qemu/workload.py --peers model,qemu --seed 1
"""
import argparse
import os
import random
import shutil
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import chain  # noqa: E402
from chain import QemuChain, QMPError, nbd_connect, preadall  # noqa: E402
from colofs import Colofs  # noqa: E402

CLUSTER = 65536


class Divergence(Exception):
    pass


# -- the steps ---------------------------------------------------------------
def rand_range(rng, size):
    """An (off, len) within [0, size), biased to awkward shapes."""
    kind = rng.random()
    if kind < 0.35:
        n = rng.randint(1, 700)
    elif kind < 0.7:
        n = rng.randint(1, 3 * CLUSTER // 2)
    elif kind < 0.85:
        n = rng.randint(1, 5 * CLUSTER)
    else:
        n = 4096 * rng.randint(1, 40)
    n = min(n, size)
    where = rng.random()
    if where < 0.1:
        off = size - n                          # up to the end
    elif where < 0.25:
        c = rng.randrange(0, max(1, size // CLUSTER)) * CLUSTER
        off = max(0, min(size - n, c - rng.randint(1, 100)))  # straddle
    elif where < 0.4:
        off = rng.randrange(0, (size - n) // 4096 + 1) * 4096
    else:
        off = rng.randint(0, size - n)
    return off, n


def make_steps(seed, nsteps, size):
    rng = random.Random(seed)
    steps = []
    for _ in range(rng.randint(0, 3)):         # before start
        off, n = rand_range(rng, size)
        steps.append(("pw", off, n, rng.getrandbits(32), False))
    steps.append(("none_io",) + rand_range(rng, size) +
                 (rng.getrandbits(32),))
    steps.append(("start",))
    for _ in range(nsteps):
        r = rng.random()
        if r < 0.32:
            off, n = rand_range(rng, size)
            steps.append(("pw", off, n, rng.getrandbits(32),
                          rng.random() < 0.1))
        elif r < 0.37:
            off, n = rand_range(rng, size)
            steps.append(("pz", off, n))
        elif r < 0.67:
            off, n = rand_range(rng, size)
            steps.append(("vw", off, n, rng.getrandbits(32)))
        elif r < 0.80:
            steps.append(("vr",) + rand_range(rng, size))
        elif r < 0.87:
            steps.append(make_batch(rng, size))
        else:
            steps.append(("ck",))
    steps.append(("st",) if rng.random() < 0.25 else ("fo",))
    for _ in range(rng.randint(1, 4)):
        off, n = rand_range(rng, size)
        if rng.random() < 0.6:
            steps.append(("vw", off, n, rng.getrandbits(32)))
        else:
            steps.append(("vr", off, n))
    return steps


def disjoint_ranges(rng, size, count, avoid=()):
    """Up to count ranges that overlap neither each other nor avoid."""
    out = []
    for _ in range(count * 4):
        if len(out) == count:
            break
        off, n = rand_range(rng, size)
        if all(off + n <= o or o + m <= off for o, m in out + list(avoid)):
            out.append((off, n))
    return out


def make_batch(rng, size):
    """A concurrent step: primary writes all in flight at once (libnbd aio,
    replies in any order) while the view is written and read.  Primary
    writes do not overlap each other, view writes do not either, and view
    reads avoid the batch's view writes, so the outcome is defined: primary
    and view I/O commute in COLO (D and V are independent)."""
    pws = [(o, n, rng.getrandbits(32))
           for o, n in disjoint_ranges(rng, size, rng.randint(2, 12))]
    vws = [(o, n, rng.getrandbits(32))
           for o, n in disjoint_ranges(rng, size, rng.randint(0, 4))]
    vrs = disjoint_ranges(rng, size, rng.randint(1, 6),
                          avoid=[(o, n) for o, n, _ in vws])
    return ("cc", pws, vws, vrs)


def make_size(seed):
    rng = random.Random(seed ^ 0x5EED)
    return rng.choice([1 << 20, 2 << 20, 4 << 20, (3 << 20) + 1536,
                       (2 << 20) + 4096 * 3])


def data_for(dseed, n):
    return random.Random(dseed).randbytes(n)


def fmt_step(i, st):
    name = st[0]
    if name in ("pw", "vw"):
        return "#%d %s off=%d len=%d%s" % (i, name, st[1], st[2],
                                           " +flush" if len(st) > 4 and st[4]
                                           else "")
    if name == "cc":
        return "#%d cc primary %s | view writes %s | view reads %s" % (
            i, [(o, n) for o, n, _ in st[1]], [(o, n) for o, n, _ in st[2]],
            st[3])
    if name in ("pz", "vr", "none_io"):
        return "#%d %s off=%d len=%d" % (i, name, st[1], st[2])
    return "#%d %s" % (i, name)


# -- the peers -----------------------------------------------------------------
class ModelPeer:
    name = "model"

    def __init__(self, size):
        self.size = size
        self.D = bytearray(size)
        self.V = bytearray(size)
        self.state = "none"

    def setup(self, initial):
        self.D[:] = initial
        self.V[:] = initial

    def close(self):
        pass

    def pw(self, data, off, flush):
        if self.state in ("failover", "done"):
            return
        self.D[off:off + len(data)] = data
        if self.state == "none":
            self.V[off:off + len(data)] = data

    def pz(self, off, n):
        self.pw(bytes(n), off, False)

    def vw(self, data, off):
        if self.state == "none":
            raise OSError(5, "view write before start")
        self.V[off:off + len(data)] = data
        if self.state == "done":
            self.D[off:off + len(data)] = data

    def vr(self, off, n):
        if self.state == "none":
            raise OSError(5, "view read before start")
        return bytes(self.V[off:off + n])

    def start(self):
        self.state = "running"

    def ck(self):
        self.V[:] = self.D

    def fo(self):
        self.D[:] = self.V
        self.state = "done"

    def st(self):
        self.V[:] = self.D
        self.state = "done"

    def view(self):
        return bytes(self.V)

    def disk(self):
        return bytes(self.D)


class RealPeer:
    """Drives a QemuChain or a Colofs: NBD for primary writes, the FUSE
    file for view I/O."""

    def __init__(self, name, impl):
        self.name = name
        self.impl = impl
        self.h = None
        self.state = "none"
        self.held = None          # QEMU only: probes the stale cache
        self.stale_probes = 0
        self.stale_bytes = 0
        self.out = False          # left the comparison (known defect)
        self.note = None

    def setup(self):
        self.impl.setup()
        self.size = self.impl.size
        self.h = nbd_connect(self.impl.nbd_sock, self.impl.export)
        if self.name == "qemu":
            self.held = os.open(self.impl.view, os.O_RDONLY)

    def close(self):
        if self.held is not None:
            os.close(self.held)
            self.held = None
        if self.h is not None:
            try:
                self.h.shutdown()
            except Exception:
                pass
            self.h = None
        self.impl.close()

    def pw(self, data, off, flush):
        self.h.pwrite(data, off)
        if flush:
            self.h.flush()

    def pz(self, off, n):
        self.h.zero(n, off)

    def vw(self, data, off):
        self.impl.write_view(data, off)

    def vr(self, off, n):
        return self.impl.read_view(off, n)

    def batch(self, pws, vws, vrs):
        """Primary writes in flight together on one connection (another
        thread) while this thread writes and reads the view.  Returns the
        view reads."""
        import nbd
        import threading
        err = []

        def primary():
            try:
                cookies = [self.h.aio_pwrite(
                    nbd.Buffer.from_bytearray(bytearray(data_for(d, n))), o)
                    for o, n, d in pws]
                while self.h.aio_in_flight() > 0:
                    self.h.poll(-1)
                for c in cookies:
                    self.h.aio_command_completed(c)
            except Exception as e:          # reported by the main thread
                err.append(e)

        t = threading.Thread(target=primary)
        t.start()
        reads = []
        try:
            todo = [("w", o, n, d) for o, n, d in vws] + \
                   [("r", o, n, None) for o, n in vrs]
            random.Random(len(pws) * 7919 + len(vrs)).shuffle(todo)
            for kind, o, n, d in todo:
                if kind == "w":
                    self.vw(data_for(d, n), o)
                else:
                    reads.append(((o, n), self.vr(o, n)))
        finally:
            t.join()
        if err:
            raise err[0]
        order = {r: k for k, r in enumerate(vrs)}
        reads.sort(key=lambda x: order[x[0]])
        return [data for _, data in reads]

    def start(self):
        self.impl.start()
        self.state = "running"

    def ck(self):
        self.impl.checkpoint()

    def fo(self):
        if self.h is not None:
            self.h.shutdown()
            self.h = None
        self.impl.failover(wait=True)
        self.state = "done"

    def st(self):
        try:
            self.impl.stop()
        except QMPError as e:
            if self.name != "qemu":
                raise
            self.out = True
            self.note = ("stop without failover failed: %s (known QEMU "
                         "7.2 defect); QEMU left the comparison"
                         % e.error.get("desc"))
        self.state = "done"

    def probe_stale(self, model_view):
        """QEMU only, right after a checkpoint: read through the fd held
        open all along and count what the page cache got wrong."""
        got = preadall(self.held, self.size, 0)
        self.stale_probes += 1
        if got != model_view:
            self.stale_bytes += sum(1 for a, b in zip(got, model_view)
                                    if a != b)
            return True
        return False

    def view(self):
        return self.impl.read_view()

    def disk(self):
        if self.state == "done":
            return self.impl.read_disk_file()
        out = bytearray()
        chunk = 4 << 20
        for off in range(0, self.size, chunk):
            out += self.h.pread(min(chunk, self.size - off), off)
        return bytes(out)


def first_diff(a, b):
    for i in range(min(len(a), len(b))):
        if a[i] != b[i]:
            j = i
            while j < min(len(a), len(b)) and a[j] != b[j]:
                j += 1
            return "bytes [%d, %d) differ (got %02x.., want %02x..)" % (
                i, j, a[i], b[i])
    return "lengths %d vs %d" % (len(a), len(b))


# -- the run -------------------------------------------------------------------
def colofs_buffer_for(seed, choice):
    """"seed": memory for even seeds, file for odd ones."""
    if choice == "seed":
        return "file" if seed % 2 else "memory"
    return choice


def run(seed, nsteps, peer_names, workdir, colofs_bin=None, verbose=False,
        colofs_buffer="memory"):
    size = make_size(seed)
    steps = make_steps(seed, nsteps, size)
    initial = random.Random(seed ^ 0x1A1A).randbytes(size)
    model = ModelPeer(size)
    model.setup(initial)
    init_path = os.path.join(workdir, "initial.raw")
    with open(init_path, "wb") as f:
        f.write(initial)
    peers = []
    stats = {"stale_after_checkpoint": 0, "checkpoints": 0, "notes": []}
    try:
        for name in peer_names:
            d = os.path.join(workdir, name)
            if name == "qemu":
                p = RealPeer("qemu", QemuChain(d, image=init_path))
            elif name == "colofs":
                p = RealPeer("colofs", Colofs(d, image=init_path,
                                              binary=colofs_bin,
                                              buffer=colofs_buffer))
            else:
                continue
            peers.append(p)
            p.setup()

        def live():
            return [p for p in peers if not p.out]

        def compare(i, st):
            want_v, want_d = model.view(), model.disk()
            for p in live():
                if p.state != "none":
                    got = p.view()
                    if got != want_v:
                        raise Divergence("%s: %s view differs from the model: "
                                         "%s" % (fmt_step(i, st), p.name,
                                                 first_diff(got, want_v)))
                got = p.disk()
                if got != want_d:
                    raise Divergence("%s: %s disk differs from the model: %s"
                                     % (fmt_step(i, st), p.name,
                                        first_diff(got, want_d)))

        for i, st in enumerate(steps):
            if verbose:
                print(fmt_step(i, st), flush=True)
            op = st[0]
            if op == "pw":
                data = data_for(st[3], st[2])
                model.pw(data, st[1], st[4])
                for p in live():
                    p.pw(data, st[1], st[4])
            elif op == "pz":
                model.pz(st[1], st[2])
                for p in live():
                    p.pz(st[1], st[2])
            elif op == "vw":
                data = data_for(st[3], st[2])
                model.vw(data, st[1])
                for p in live():
                    p.vw(data, st[1])
            elif op == "vr":
                want = model.vr(st[1], st[2])
                for p in live():
                    got = p.vr(st[1], st[2])
                    if got != want:
                        raise Divergence("%s: %s read differs from the "
                                         "model: %s" % (fmt_step(i, st),
                                                        p.name,
                                                        first_diff(got, want)))
            elif op == "cc":
                for o, n, d in st[1]:
                    model.pw(data_for(d, n), o, False)
                for o, n, d in st[2]:
                    model.vw(data_for(d, n), o)
                for p in live():
                    for (o, n), got in zip(st[3], p.batch(st[1], st[2],
                                                           st[3])):
                        want = model.vr(o, n)
                        if got != want:
                            raise Divergence(
                                "%s: %s concurrent view read [%d,+%d) "
                                "differs from the model: %s"
                                % (fmt_step(i, st), p.name, o, n,
                                   first_diff(got, want)))
            elif op == "none_io":
                none_io(peers, model, i, st, stats)
            elif op == "start":
                model.start()
                for p in live():
                    p.start()
            elif op == "ck":
                model.ck()
                stats["checkpoints"] += 1
                for p in live():
                    p.ck()
                    if p.held is not None and p.probe_stale(model.view()):
                        stats["stale_after_checkpoint"] += 1
            elif op == "fo":
                model.fo()
                for p in live():
                    p.fo()
                # colofs refuses primary writes after failover
                for p in live():
                    if p.name == "colofs":
                        check_refused(p, i, st)
            elif op == "st":
                model.st()
                for p in live():
                    p.st()
                    if p.note:
                        stats["notes"].append(p.note)
            compare(i, st)
        # The final word: the image files themselves, after shutdown.
        for p in peers:
            p.close()
        for p in peers:
            if p.out:
                continue
            got = p.impl.read_disk_file()
            if got != model.disk():
                raise Divergence("after shutdown: %s image differs from the "
                                 "model: %s" % (p.name,
                                                first_diff(got, model.disk())))
    finally:
        for p in peers:
            p.close()
    if stats["stale_after_checkpoint"]:
        stats["notes"].append(
            "QEMU's FUSE view read through an fd held open was stale after "
            "%d of %d checkpoints (known QEMU 7.2 defect)"
            % (stats["stale_after_checkpoint"], stats["checkpoints"]))
    return stats


def none_io(peers, model, i, st, stats):
    """View I/O before start.  A view write fails everywhere (QEMU: EIO
    in stage NONE; colofs: EIO) and changes nothing.  A view read differs
    by design: QEMU fails it (EIO), colofs serves V = S (core/secondary.c:
    "NONE: V = S; view writes fail")."""
    off, n, dseed = st[1], st[2], st[3]
    data = data_for(dseed, n)
    for p in peers:
        if p.out:
            continue
        try:
            p.vw(data, off)
        except OSError:
            pass
        else:
            raise Divergence("%s: %s view write before start succeeded"
                             % (fmt_step(i, st), p.name))
        try:
            got = p.impl.read_view(off, n)
        except OSError as e:
            if p.name == "qemu":
                continue
            raise Divergence("%s: %s view read before start failed: %s"
                             % (fmt_step(i, st), p.name, e))
        if p.name == "qemu":
            raise Divergence("%s: qemu view read before start succeeded "
                             "(QEMU 7.2 returns EIO in stage NONE)"
                             % fmt_step(i, st))
        want = bytes(model.D[off:off + n])
        if got != want:
            raise Divergence("%s: %s view read before start is not S: %s"
                             % (fmt_step(i, st), p.name, first_diff(got, want)))
    if "none_read" not in stats:
        stats["none_read"] = True
        if any(p.name == "qemu" for p in peers) and \
                any(p.name == "colofs" for p in peers):
            stats["notes"].append(
                "view read before start: QEMU EIO, colofs S (design "
                "difference, both as documented)")


def check_refused(p, i, st):
    """A primary write after failover must fail and leave S alone."""
    try:
        h = nbd_connect(p.impl.nbd_sock, p.impl.export)
    except Exception:
        return          # refused at connect: fine
    try:
        h.pwrite(b"\xee" * 512, 0)
    except Exception:
        return
    finally:
        try:
            h.shutdown()
        except Exception:
            pass
    raise Divergence("%s: %s accepted a primary write after failover"
                     % (fmt_step(i, st), p.name))


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--seed", type=int, action="append",
                    help="seed (repeatable); default: one random seed")
    ap.add_argument("--seeds", type=int, default=0,
                    help="run N random seeds")
    ap.add_argument("--steps", type=int, default=40)
    ap.add_argument("--peers", default="model,qemu,colofs")
    ap.add_argument("--dir", help="work dir (default: a temp dir)")
    ap.add_argument("--colofs", help="colofs binary")
    ap.add_argument("--colofs-buffer", default="seed",
                    choices=("memory", "file", "seed"),
                    help="colofs's buffer store (seed: by the seed's parity)")
    ap.add_argument("--time-limit", type=float, default=0,
                    help="stop starting new seeds after this many seconds")
    ap.add_argument("-v", "--verbose", action="store_true")
    ap.add_argument("--print-steps", action="store_true",
                    help="print the steps of --seed and exit")
    args = ap.parse_args()
    chain.exit_on_signals()
    names = args.peers.split(",")
    seeds = list(args.seed or [])
    sysrng = random.SystemRandom()
    seeds += [sysrng.getrandbits(31) for _ in range(args.seeds)]
    if not seeds:
        seeds = [sysrng.getrandbits(31)]
    if args.print_steps:
        for s in seeds:
            size = make_size(s)
            print("seed %d: disk %d bytes" % (s, size))
            for i, st in enumerate(make_steps(s, args.steps, size)):
                print("  " + fmt_step(i, st))
        return 0
    if "qemu" in names and not chain.have_qemu():
        print("SKIP: qemu-system-x86_64 not installed (Debian: "
              "qemu-system-x86)")
        return 77
    t0 = time.monotonic()
    ran = 0
    for s in seeds:
        if args.time_limit and ran and time.monotonic() - t0 > args.time_limit:
            print("time limit reached after %d seeds" % ran)
            break
        work = args.dir or tempfile.mkdtemp(prefix="colo-wl.")
        work = os.path.join(work, "seed-%d" % s)
        os.makedirs(work, exist_ok=True)
        t = time.monotonic()
        try:
            stats = run(s, args.steps, names, work, args.colofs, args.verbose,
                        colofs_buffer_for(s, args.colofs_buffer))
        except Divergence as e:
            print("FAIL seed %d (%d steps, peers %s): %s"
                  % (s, args.steps, args.peers, e))
            print("replay: /usr/bin/python3 %s --seed %d --steps %d "
                  "--peers %s --colofs-buffer %s -v"
                  % (sys.argv[0], s, args.steps, args.peers,
                     colofs_buffer_for(s, args.colofs_buffer)))
            return 1
        except Exception:
            print("ERROR seed %d (%d steps, peers %s); replay with "
                  "--seed %d -v" % (s, args.steps, args.peers, s))
            raise
        print("ok seed %d: %d steps, disk %d bytes, %s agree (%.1fs%s)"
              % (s, args.steps, make_size(s), args.peers,
                 time.monotonic() - t,
                 ", colofs buffer=" + colofs_buffer_for(s, args.colofs_buffer)
                 if "colofs" in names else ""))
        for n in stats["notes"]:
            print("  note: " + n)
        if not args.dir:
            shutil.rmtree(os.path.dirname(work), ignore_errors=True)
        ran += 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
