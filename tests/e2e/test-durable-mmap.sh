#!/usr/bin/env bash
# page_cache = true and a writable shared mmap: a page dirtied through the
# mapping before a checkpoint belongs to the epoch the checkpoint drops.
# colofs writes dirty pages back before it swaps the buffers, so once the
# checkpoint has returned, V == S, and stays so when the mapping goes.
. "$(dirname "$0")/lib.sh"

make_image "$T/vda.img" 4M 11
EXTRA_CONFIG="page_cache = true" write_config
start_colofs
ctl start
"$PY3" - "$MNT" <<'EOPY' || fail "mmap case"
import mmap, os, sys
mnt = sys.argv[1]
fd = os.open(mnt + "/vda", os.O_RDWR)
m = mmap.mmap(fd, 1 << 20, mmap.MAP_SHARED, mmap.PROT_READ | mmap.PROT_WRITE)
m[0:8192] = b"\x99" * 8192           # dirty pages, not written back yet
with open(mnt + "/.colo/ctl", "w") as f:
    f.write("checkpoint\n")
def view(off, n):
    d = os.open(mnt + "/vda", os.O_RDONLY | os.O_DIRECT)
    buf = mmap.mmap(-1, n)
    os.preadv(d, [buf], off)
    os.close(d)
    return bytes(buf)
got = set(view(0, 8192))
if got != {0x11}:
    sys.exit("FAIL: V after the checkpoint holds %s, want S (11)" % sorted(got))
if set(m[0:8192]) != {0x11}:
    sys.exit("FAIL: the mapping shows %s after the checkpoint" % sorted(set(m[0:8192])))
m.close()
os.close(fd)                         # a close writes back what is dirty
got = set(view(0, 8192))
if got != {0x11}:
    sys.exit("FAIL: V after the mapping went holds %s, want S (11)" % sorted(got))
EOPY
cmp <(head -c 8192 "$MNT/vda") <(head -c 8192 "$T/vda.img") || fail "V != S"
ok "a page dirtied through mmap before a checkpoint is gone with it: V == S"
