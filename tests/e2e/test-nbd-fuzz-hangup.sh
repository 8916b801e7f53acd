#!/usr/bin/env bash
# The multi-connection fuzzer's clients (tests/fuzz/nbd_multiconn.py) end
# their sessions for real.  Each session has a drain thread waiting in
# recv (poll) on its socket; a bare close() from another thread does not
# end the connection then: Linux keeps the socket open until that poll
# returns (PROBE_DEADLINE, 90 s), so the listener saw an idle client,
# kept its slot (and any reply it could not send, for io_timeout) and the
# fuzz sample waited about 90 s for nbd.connections to come back, or
# failed.  Here: one fuzzer session, its drain thread seen in poll, its
# hangup; the listener's slot comes back at once (an idle client has no
# deadline, so before the fix it stayed for the drain's 90 s).
. "$(dirname "$0")/lib.sh"
ROOT=$(cd "$(dirname "$0")/../.." && pwd)

make_image "$T/vda.img" 64M
EXTRA_CONFIG="io_timeout = 5" write_config
start_colofs_fg
at_exit stop_colofs
timeout 120 "$PY3" - "$ROOT/tests/fuzz" "unix:$T/nbd.sock" vda \
	"$MNT/.colo/status" <<'EOPY' || fail "a fuzzer client's hangup left its connection open"
import random, sys, threading, time
sys.path.insert(0, sys.argv[1])
import nbd_multiconn
from nbd_raw import Fail, check, status_value
addr, export, status = sys.argv[2:5]

def in_poll(tid):
    """The thread TID sleeps in poll/ppoll (x86_64 7/271, arm64 73)."""
    base = "/proc/self/task/%d/" % tid
    with open(base + "syscall") as f:
        nr = f.read().split()[0]
    with open(base + "wchan") as f:
        wchan = f.read()
    return nr in ("7", "271", "73") or "poll" in wchan

try:
    c = nbd_multiconn.Client(addr, export, random.Random(1), threading.Event())
    s, _ = c.session()
    deadline = time.time() + 10
    while not in_poll(c.drainer.native_id):
        check(time.time() < deadline, "the drain thread never waited")
        time.sleep(0.01)
    check(status_value(status, "nbd.connections") == 1, "no connection")
    t0 = time.time()
    c.hangup(s)
    # Well under the drain's PROBE_DEADLINE, and over io_timeout.
    while status_value(status, "nbd.connections") != 0:
        check(time.time() < t0 + 10, "nbd.connections stays at %d" %
              status_value(status, "nbd.connections"))
        time.sleep(0.05)
    print("slot back %.2f s after the hangup" % (time.time() - t0))
except Fail as e:
    print("FAIL: %s" % e, file=sys.stderr)
    sys.exit(1)
EOPY
alive "$COLOFS_PID" || fail "colofs died"
ok "a fuzzer client's hangup ends its connection"
