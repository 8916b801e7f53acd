# SPDX-License-Identifier: MIT
"""A network fuzzer for the NBD listener with several concurrent
connections (the libFuzzer target, fuzz-nbd.c, drives one connection's
protocol loop in memory and cannot reach what connections do to each
other: the shared byte budget, the reconnect barrier, evictions).

  nbd_multiconn.py ADDR EXPORT STATUS_FILE SECONDS [SEED] [CONNS]

CONNS (default 4) client threads each open a session and send a random
mix, from SEED (printed, so a failure can be replayed), of: WRITEs of 4K
to 32 MiB whose payload goes in random pieces with random pauses (some
held short for a while, some cut off), READs of up to 32 MiB, pipelined
requests, TRIM / WRITE_ZEROES / FLUSH with random flags, bad magic, and
abrupt closes followed by a reconnect.  A reader thread per connection
drains the replies.  Every second a probe (a fresh connection: a 4K
WRITE and its READ back) must be answered within PROBE_DEADLINE (retried
while the listener refuses it at max_connections, which nbd.refused
shows); at the end the clients stop, a last probe must pass, and every
connection slot and the budget must come back (nbd.connections and
nbd.memory_used in STATUS_FILE).  Exits 0,
or 1 with what wedged and the seed.
"""
import os
import random
import socket
import struct
import sys
import threading
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)),
                                "..", "e2e"))
import nbd_raw  # noqa: E402
from nbd_raw import (CMD_FLUSH, CMD_READ, CMD_TRIM, CMD_WRITE, CMD_WZ,  # noqa: E402
                     REQ_MAGIC, Fail, check)

PROBE_DEADLINE = 90     # generous: a wedge is forever, load is not
MiB = 1 << 20
FLAG_FUA, FLAG_NO_HOLE = 1, 2


def header(cmd, off, length, cookie, flags=0):
    return struct.pack(">IHHQQI", REQ_MAGIC, flags, cmd, cookie, off, length)


class Client(threading.Thread):
    def __init__(self, addr, export, rng, stop):
        super().__init__(daemon=True)
        self.addr, self.export, self.rng, self.stop = addr, export, rng, stop
        self.sent = 0
        self.error = None

    def session(self):
        s, size, _ = nbd_raw.session(self.addr, self.export)
        s.settimeout(PROBE_DEADLINE)
        self.drainer = threading.Thread(target=self.drain, args=(s,),
                                        daemon=True)
        self.drainer.start()
        return s, size

    def hangup(self, s):
        """Ends the session as a client that goes away does.  A bare
        close() does not while the drain thread waits in recv (poll) on
        the socket: Linux keeps the socket open until that poll returns
        (PROBE_DEADLINE), so the listener rightly sees a client idle
        between requests, not a closed one, and keeps its slot and any
        reply it cannot send (io_timeout).  Worse, the fd number, reused
        by the next connection, could be read by the stale drain thread.
        So: shut the socket down (the listener sees the end, the drain
        thread's recv returns), let the drain thread go, then close."""
        try:
            s.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass
        self.drainer.join(PROBE_DEADLINE)
        s.close()

    @staticmethod
    def drain(s):
        try:
            while s.recv(1 << 20):
                pass
        except OSError:
            pass

    def pause(self):
        r = self.rng.random()
        if r < 0.6:
            return
        time.sleep(self.rng.choice((0.001, 0.01, 0.05, 0.2, 0.5)))

    def length(self, size):
        r = self.rng.random()
        if r < 0.6:
            n = self.rng.choice((1, 512, 4096, 65536))
        elif r < 0.93:
            n = self.rng.randrange(1, 4 * MiB)
        else:
            n = self.rng.choice((16 * MiB, 32 * MiB - 1, 32 * MiB))
        return min(n, size)

    def step(self, s, size):
        """One action; False when the connection is gone."""
        r = self.rng.random()
        cookie = self.rng.getrandbits(64)
        n = self.length(size)
        off = self.rng.randrange(0, size - n + 1)
        if r < 0.35:
            payload = bytes([self.rng.getrandbits(8)]) * n
            s.sendall(header(CMD_WRITE, off, n, cookie,
                             FLAG_FUA if self.rng.random() < 0.1 else 0))
            # In up to 8 pieces (a 1-byte one now and then), with pauses;
            # now and then the last piece never comes.
            cuts = sorted(self.rng.randrange(0, n + 1)
                          for _ in range(self.rng.randrange(0, 8)))
            if self.rng.random() < 0.2:
                cuts.append(max(n - 1, 0))
            pos = 0
            for end in cuts + [n]:
                if end <= pos:
                    continue
                if end == n and self.rng.random() < 0.05:
                    return False          # the payload never completes
                s.sendall(payload[pos:end])
                pos = end
                self.pause()
        elif r < 0.6:
            s.sendall(header(CMD_READ, off, n, cookie))
        elif r < 0.7:
            reqs = b"".join(header(CMD_READ, self.rng.randrange(0, size - 4096),
                                   4096, cookie + i) for i in range(16))
            s.sendall(reqs)
        elif r < 0.8:
            flags = self.rng.choice((0, FLAG_FUA, FLAG_NO_HOLE,
                                     FLAG_FUA | FLAG_NO_HOLE))
            cmd = self.rng.choice((CMD_TRIM, CMD_WZ))
            if cmd == CMD_TRIM:
                flags &= FLAG_FUA
            s.sendall(header(cmd, off, n, cookie, flags))
        elif r < 0.85:
            s.sendall(header(CMD_FLUSH, 0, 0, cookie))
        elif r < 0.88:
            s.sendall(b"\xde\xad\xbe\xef" * 7)   # bad magic: closed
            return False
        elif r < 0.93:
            return False                         # an abrupt close
        else:
            self.pause()
        self.sent += 1
        return True

    def run(self):
        s = None
        try:
            while not self.stop.is_set():
                if s is None:
                    s, size = self.session()
                try:
                    alive = self.step(s, size)
                except OSError:
                    alive = False
                if not alive:
                    self.hangup(s)
                    s = None
        except (Fail, EOFError, OSError) as e:
            if not self.stop.is_set():
                self.error = e
        finally:
            if s is not None:
                self.hangup(s)


def probe_once(addr, export, byte):
    s, size, _ = nbd_raw.session(addr, export)
    s.settimeout(PROBE_DEADLINE)
    off = size - 4096
    nbd_raw.request(s, CMD_WRITE, off, 4096, cookie=1, data=bytes([byte]) * 4096)
    err, _, _ = nbd_raw.reply(s)
    check(err == 0, "probe WRITE: error %d" % err)
    err, data = nbd_raw.read(s, off, 4096)
    check(err == 0, "probe READ: error %d" % err)
    nbd_raw.disc(s)


def probe(addr, export, byte, status):
    """A fresh connection's WRITE and READ are answered within
    PROBE_DEADLINE.  The listener may refuse the connection while the
    clients hold max_connections (a bound, not a wedge: nbd.refused in
    STATUS rises); then the probe tries again until the deadline.  Returns
    how many refusals it met."""
    deadline = time.time() + PROBE_DEADLINE
    refusals = 0
    while True:
        refused0 = nbd_raw.status_value(status, "nbd.refused")
        try:
            probe_once(addr, export, byte)
            return refusals
        except (EOFError, OSError) as e:
            if nbd_raw.status_value(status, "nbd.refused") == refused0:
                raise
            refusals += 1
            check(time.time() < deadline, "probes refused for %d s (%s): "
                  "a connection slot never came free" % (PROBE_DEADLINE, e))
            time.sleep(0.2)


def main():
    addr, export, status, secs = sys.argv[1:5]
    seed = int(sys.argv[5]) if len(sys.argv) > 5 and sys.argv[5] else \
        random.SystemRandom().getrandbits(32)
    nconns = int(sys.argv[6]) if len(sys.argv) > 6 else 4
    print("multiconn fuzz: seed %d, %d connections, %s s" % (seed, nconns, secs),
          flush=True)
    master = random.Random(seed)
    stop = threading.Event()
    clients = [Client(addr, export, random.Random(master.getrandbits(64)), stop)
               for _ in range(nconns)]
    start = time.time()
    end = start + float(secs)
    probes = 0
    try:
        for c in clients:
            c.start()
        slowest = 0.0
        refusals = 0
        while time.time() < end:
            t0 = time.time()
            refusals += probe(addr, export, probes & 0xff, status)
            slowest = max(slowest, time.time() - t0)
            probes += 1
            time.sleep(1)
        stop.set()
        t0 = time.time()
        for c in clients:
            c.join(PROBE_DEADLINE)
        print("clients stopped in %.1f s" % (time.time() - t0), flush=True)
        for c in clients:
            check(not c.is_alive(), "a client thread is stuck")
            if c.error:
                raise Fail("a client failed: %s" % c.error)
        probe(addr, export, 0x77, status)
        deadline = time.time() + PROBE_DEADLINE
        # Every slot comes back: the clients are gone, so is every
        # connection but none.
        while nbd_raw.status_value(status, "nbd.connections") != 0:
            check(time.time() < deadline, "nbd.connections stays at %d" %
                  nbd_raw.status_value(status, "nbd.connections"))
            time.sleep(0.2)
        while nbd_raw.status_value(status, "nbd.memory_used") != 0:
            check(time.time() < deadline, "nbd.memory_used stays at %d" %
                  nbd_raw.status_value(status, "nbd.memory_used"))
            time.sleep(0.2)
    except (Fail, EOFError, OSError) as e:
        print("FAIL multiconn fuzz (seed %d): %s" % (seed, e), file=sys.stderr)
        sys.exit(1)
    print("multiconn fuzz: %d requests on %d connections, %d probes answered "
          "(slowest %.1f s, %d refusals at max_connections first), %.0f s "
          "in all" % (sum(c.sent for c in clients), nconns, probes, slowest,
                      refusals, time.time() - start))


if __name__ == "__main__":
    main()
