#!/usr/bin/env bash
# Concurrent readers and writers across checkpoints: three view writers
# (O_DIRECT, own regions), one primary writer over NBD, two O_DIRECT
# readers that check every 64 KiB block is whole and plausible, and a
# buffered reader, while checkpoints run in a loop.  Then a final pass per
# writer and a checkpoint, and the view must equal the image exactly.
. "$(dirname "$0")/lib.sh"

make_image "$T/vda.img" 32M 00
write_config
start_colofs
ctl start

"$PY3" - "$MNT" "$(nbd_uri)" <<'EOPY'
import mmap, os, sys, threading, time, nbd

mnt, uri = sys.argv[1], sys.argv[2]
B = 65536
REG = 4 << 20                   # bytes per region
NBLK = REG // B
# Regions: 0..2 the view writers, 3 the primary, 4.. untouched.
WRITER_BYTE = {0: 0x10, 1: 0x20, 2: 0x30}
PRIMARY_REGION, PRIMARY_BYTE = 3, 0xee
DURATION = 3.0
errors = []
stop = threading.Event()
counts = {}

def allowed(blk):
    region = blk * B // REG
    if region in WRITER_BYTE:
        return {0x00, WRITER_BYTE[region]}
    if region == PRIMARY_REGION:
        # V = S where no view write: S has 00 or ee.
        return {0x00, PRIMARY_BYTE}
    return {0x00}

def aligned(n):
    m = mmap.mmap(-1, n)
    return m

def view_writer(region, byte, passes=None):
    fd = os.open(mnt + "/vda", os.O_WRONLY | os.O_DIRECT)
    buf = aligned(B)
    buf.write(bytes([byte]) * B)
    i = 0
    try:
        while not stop.is_set() if passes is None else i < NBLK:
            blk = region * NBLK + (i * 7) % NBLK
            if os.pwritev(fd, [buf], blk * B) != B:
                errors.append("short view write")
            i += 1
    except OSError as e:
        errors.append("view write: %s" % e)
    os.close(fd)
    counts["w%d" % region] = counts.get("w%d" % region, 0) + i

def primary_writer():
    h = nbd.NBD()
    h.connect_uri(uri)
    data = bytes([PRIMARY_BYTE]) * B
    i = 0
    while not stop.is_set():
        h.pwrite(data, (PRIMARY_REGION * NBLK + (i * 5) % NBLK) * B)
        i += 1
    h.flush()
    h.shutdown()
    counts["primary"] = i

def direct_reader(seed):
    fd = os.open(mnt + "/vda", os.O_RDONLY | os.O_DIRECT)
    buf = aligned(B)
    n = 0
    nblocks = os.fstat(fd).st_size // B
    while not stop.is_set():
        blk = (seed * 131 + n * 17) % nblocks
        if os.preadv(fd, [buf], blk * B) != B:
            errors.append("short read")
        vals = set(buf[:])
        if len(vals) != 1:
            errors.append("block %d torn: %s" % (blk, sorted(vals)))
        elif not vals <= allowed(blk):
            errors.append("block %d holds %s, allowed %s" % (blk, sorted(vals), sorted(allowed(blk))))
        n += 1
    os.close(fd)
    counts["r%d" % seed] = n

def buffered_reader():
    fd = os.open(mnt + "/vda", os.O_RDONLY)
    n = 0
    nblocks = os.fstat(fd).st_size // B
    while not stop.is_set():
        blk = (n * 13) % nblocks
        vals = set(os.pread(fd, B, blk * B))
        if not vals <= allowed(blk):
            errors.append("buffered: block %d holds %s" % (blk, sorted(vals)))
        n += 1
    os.close(fd)
    counts["rb"] = n

def checkpointer():
    n = 0
    while not stop.is_set():
        with open(mnt + "/.colo/ctl", "w") as f:
            f.write("checkpoint\n")
        n += 1
        time.sleep(0.05)
    counts["checkpoints"] = n

threads = [threading.Thread(target=view_writer, args=(r, b)) for r, b in WRITER_BYTE.items()]
threads += [threading.Thread(target=primary_writer),
            threading.Thread(target=direct_reader, args=(1,)),
            threading.Thread(target=direct_reader, args=(2,)),
            threading.Thread(target=buffered_reader),
            threading.Thread(target=checkpointer)]
for t in threads:
    t.start()
time.sleep(DURATION)
stop.set()
for t in threads:
    t.join(60)
    if t.is_alive():
        sys.exit("FAIL: a thread is stuck")
if errors:
    sys.exit("FAIL: %d errors, first: %s" % (len(errors), errors[:5]))
for k in ("w0", "w1", "w2", "primary", "r1", "r2", "rb"):
    if counts.get(k, 0) == 0:
        sys.exit("FAIL: %s did nothing: %s" % (k, counts))
if counts.get("checkpoints", 0) < 2:
    sys.exit("FAIL: too few checkpoints: %s" % counts)
print("ok: concurrent phase clean:", counts)

# Final pass: each writer covers its whole region once, concurrently.
final = [threading.Thread(target=view_writer, args=(r, b, 1)) for r, b in WRITER_BYTE.items()]
for t in final:
    t.start()
for t in final:
    t.join()
if errors:
    sys.exit("FAIL: final pass: %s" % errors[:5])
with open(mnt + "/vda", "rb") as f:
    for region, byte in WRITER_BYTE.items():
        f.seek(region * REG)
        if f.read(REG) != bytes([byte]) * REG:
            sys.exit("FAIL: region %d is not all %02x after the final pass" % (region, byte))
    f.seek(PRIMARY_REGION * REG)
    if set(f.read(REG)) - {0x00, PRIMARY_BYTE}:
        sys.exit("FAIL: primary region holds foreign bytes")
print("ok: final pass: every writer region reads its own byte")
EOPY

# The view's writes never reached S; the primary's all did.
for r in 0 1 2; do
	expect_bytes "$T/vda.img" $((r * 4194304)) 4194304 00
done
expect_bytes "$T/vda.img" $((4 * 4194304)) $((4 * 4194304)) 00
ctl checkpoint
cmp "$MNT/vda" "$T/vda.img" || fail "view and image differ after the last checkpoint"
ok "after the last checkpoint the view equals the image"
