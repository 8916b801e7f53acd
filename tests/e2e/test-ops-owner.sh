#!/usr/bin/env bash
# One owner per image, and names that never collide:
#   - a second colofs (another config, another mountpoint) on an image that
#     a colofs serves is refused, exit 1, with a message naming the
#     holder; /proc/locks shows QEMU's lock bytes on the image;
#   - qemu-io cannot write an image colofs holds, and colofs refuses an
#     image that a qemu-io writer holds (QEMU's file-posix lock bytes);
#   - two primaries with one state_dir and a disk called vda each get
#     their own bitmap, named after the mountpoint;
#   - a second colofs on the same state files (the same mountpoint's
#     name in one state_dir, from another mount namespace) is refused by
#     the instance lock;
#   - a bitmap of the old name (STATE_DIR/vda.dirty) is refused with the
#     command that migrates it.
. "$(dirname "$0")/lib.sh"

make_image "$T/vda.img" 4M
write_config
start_colofs
at_exit "fusermount3 -u $MNT"

# The image's locks, as /proc/locks shows them (dev:ino of the file).
ino=$(stat -c %i "$T/vda.img")
grep -q "OFDLCK ADVISORY  READ .*:$ino 201 201" /proc/locks ||
	fail "no OFD lock on byte 201 of the image: $(grep ":$ino " /proc/locks)"
grep -q "OFDLCK ADVISORY  READ .*:$ino 100 102" /proc/locks ||
	fail "no OFD lock on bytes 100-102 of the image: $(grep ":$ino " /proc/locks)"
ok "the image carries QEMU's lock bytes: $(grep ":$ino " /proc/locks | tr '\n' ';')"

# 1. A second colofs on the same image, another config and mountpoint.
M2=$T/mnt2
mkdir -p "$M2"
sed -e "s|^mountpoint = .*|mountpoint = $M2|" \
	-e "s|^listen = .*|listen = unix:$T/nbd2.sock|" \
	-e "s|^state_dir = .*|state_dir = $T/state2|" \
	"$T/colofs.ini" >"$T/two.ini"
rc=0
"$COLOFS_BIN" -c "$T/two.ini" 2>"$T/two.err" || rc=$?
if mountpoint -q "$M2"; then
	fusermount3 -u "$M2"
	fail "a second colofs mounted the image that the first serves"
fi
[ "$rc" = 1 ] || fail "the second colofs exited $rc, want 1: $(cat "$T/two.err")"
grep -q "vda.img.*in use.*pid $(colofs_pid)" "$T/two.err" ||
	fail "the refusal does not name the holder: $(cat "$T/two.err")"
ok "a second colofs on the image is refused: $(grep -m1 'in use' "$T/two.err")"
rc=0
"$COLOFS_BIN" -c "$T/two.ini" --check-config 2>"$T/two.err" || rc=$?
[ "$rc" = 1 ] && grep -q "vda.img.*in use.*pid $(colofs_pid)" "$T/two.err" ||
	fail "--check-config does not see the image in use (exit $rc): $(cat "$T/two.err")"
ok "--check-config names the holder too"

# 2. qemu-io cannot write the image colofs holds; nor can qemu-img read
# it for a consistent view (QEMU's own rule for a running VM's disk).
if qemu-io -f raw -c 'write -P 0x55 0 4096' "$T/vda.img" >"$T/qio.out" 2>&1; then
	fail "qemu-io wrote the image colofs holds: $(cat "$T/qio.out")"
fi
grep -q 'Failed to get "write" lock' "$T/qio.out" ||
	fail "qemu-io's refusal is not about the lock: $(cat "$T/qio.out")"
expect_bytes "$T/vda.img" 0 4096 00
ok "qemu-io is refused: $(grep -m1 'lock' "$T/qio.out")"
stop_colofs

# 3. colofs refuses an image that a qemu-io writer holds.  qemu-io reads
# its commands from a fifo and holds the image until the fifo closes.
mkfifo "$T/qio.fifo"
qemu-io -f raw "$T/vda.img" <"$T/qio.fifo" >"$T/qio2.out" 2>&1 &
QIO=$!
exec 3>"$T/qio.fifo"
at_exit "kill $QIO"
wait_for 30 grep -q ":$ino 100 101" /proc/locks ||
	fail "qemu-io took no lock: $(cat "$T/qio2.out")"
rc=0
"$COLOFS_BIN" -c "$T/colofs.ini" 2>"$T/one.err" || rc=$?
if mountpoint -q "$MNT"; then
	fail "colofs mounted an image that qemu-io writes"
fi
[ "$rc" = 1 ] || fail "colofs exited $rc beside a qemu-io writer, want 1"
grep -q "vda.img.*in use.*pid $QIO" "$T/one.err" ||
	fail "the refusal does not name qemu-io ($QIO): $(cat "$T/one.err")"
ok "colofs refuses an image qemu-io writes: $(grep -m1 'in use' "$T/one.err")"
exec 3>&-
wait "$QIO" || true
start_colofs
stop_colofs
ok "once qemu-io is gone, colofs starts"

# 4. Two primaries, one state_dir, each with a disk called vda.
primary_ini() { # NAME MOUNTPOINT IMAGE
	cat >"$T/$1.ini" <<EOC
[colofs]
mountpoint = $2
mode = primary
state_dir = $T/pstate
dirty_granularity = 64K

[disk "vda"]
image = $3
secondary = nbd+unix:///vda?socket=$T/none-$1.sock
EOC
}
PA=$T/pa PB=$T/pb
mkdir -p "$PA" "$PB"
make_image "$T/pa.img" 4M
make_image "$T/pb.img" 4M
primary_ini pa "$PA" "$T/pa.img"
primary_ini pb "$PB" "$T/pb.img"
"$COLOFS_BIN" -c "$T/pa.ini" 2>"$T/pa.err" || fail "primary a: $(cat "$T/pa.err")"
at_exit "fusermount3 -u $PA"
"$COLOFS_BIN" -c "$T/pb.ini" 2>"$T/pb.err" || fail "primary b: $(cat "$T/pb.err")"
at_exit "fusermount3 -u $PB"
fusermount3 -u "$PA"
fusermount3 -u "$PB"
wait_for 20 sh -c "! pgrep -f '[c]olofs -c $T/p[ab].ini'" ||
	fail "the primaries did not stop"
sa=$(systemd-escape --path "$PA") sb=$(systemd-escape --path "$PB")
[ -f "$T/pstate/$sa.vda.dirty" ] && [ -f "$T/pstate/$sb.vda.dirty" ] ||
	fail "no bitmap per primary: $(ls "$T/pstate")"
[ ! -e "$T/pstate/vda.dirty" ] || fail "a shared vda.dirty was made"
ok "two primaries, one state_dir: $(cd "$T/pstate" && ls -- *.dirty | tr '\n' ' ')"

# 5. The same state files twice: a copied config run in a container
# (another mount namespace, where the first mount is not seen) that shares
# the host's state_dir.  The instance lock refuses it.
# A private mount namespace needs / to be a mount point: in a chroot (a
# fresh-debian check) it is not, and unshare cannot run this case.
if unshare -m --propagation private true 2>/dev/null; then
	"$COLOFS_BIN" -c "$T/pa.ini" 2>"$T/pa.err" || fail "primary a: $(cat "$T/pa.err")"
	sed -e "s|$T/pa.img|$T/pb.img|" "$T/pa.ini" >"$T/pa2.ini"
	rc=0
	unshare -m --propagation private sh -c \
		"umount -l '$PA' && exec '$COLOFS_BIN' -c '$T/pa2.ini'" 2>"$T/pa2.err" || rc=$?
	[ "$rc" = 1 ] || fail "a second colofs on the same state files exited $rc: $(cat "$T/pa2.err")"
	grep -F "$sa.lock" "$T/pa2.err" | grep -q "in use: pid [0-9]* (.*pa.ini)" ||
		fail "the refusal does not name the holder: $(cat "$T/pa2.err")"
	ok "the same state files twice: $(grep -m1 'in use' "$T/pa2.err")"
	fusermount3 -u "$PA"
	wait_for 20 sh -c "! pgrep -f '[c]olofs -c $T/pa.ini'" || fail "a did not stop"
else
	ok "the same state files twice: skipped, / is not a mount point here (a chroot?)"
fi

# 6. A bitmap of the old name: refused, with the command that migrates it.
mv "$T/pstate/$sa.vda.dirty" "$T/pstate/vda.dirty"
rc=0
"$COLOFS_BIN" -c "$T/pa.ini" 2>"$T/pa.err" || rc=$?
[ "$rc" = 1 ] || fail "an old-named bitmap was not refused (exit $rc)"
mig="mv -n '$T/pstate/vda.dirty' '$T/pstate/$sa.vda.dirty'"
grep -qF "$mig" "$T/pa.err" ||
	fail "no migration command ($mig): $(cat "$T/pa.err")"
rc=0
"$COLOFS_BIN" -c "$T/pa.ini" --check-config 2>"$T/pa.err" || rc=$?
[ "$rc" = 1 ] && grep -qF "$mig" "$T/pa.err" ||
	fail "--check-config does not give the migration (exit $rc): $(cat "$T/pa.err")"
eval "$mig"
"$COLOFS_BIN" -c "$T/pa.ini" 2>"$T/pa.err" ||
	fail "after the migration: $(cat "$T/pa.err")"
fusermount3 -u "$PA"
ok "an old bitmap name is refused with: $mig"

# 7. A qcow2 image is locked the same way (libqcow reads it; colofs holds
# QEMU's bytes on a descriptor of its own).
qemu-img create -q -f qcow2 "$T/q.qcow2" 4M
mkdir -p "$T/qbuf"
cat >"$T/q.ini" <<EOC
[colofs]
mountpoint = $MNT
listen = unix:$T/nbdq.sock
buffer_dir = $T/qbuf
state_dir = $T/qstate

[disk "vda"]
image = $T/q.qcow2
format = qcow2
EOC
"$COLOFS_BIN" -c "$T/q.ini" 2>"$T/q.err" || fail "colofs on qcow2: $(cat "$T/q.err")"
if qemu-io -f qcow2 -c 'write 0 4096' "$T/q.qcow2" >"$T/qio3.out" 2>&1; then
	fail "qemu-io wrote the qcow2 image colofs holds"
fi
grep -q 'Failed to get "write" lock' "$T/qio3.out" ||
	fail "qemu-io on the qcow2 image: $(cat "$T/qio3.out")"
fusermount3 -u "$MNT"
ok "a qcow2 image is locked too: $(grep -m1 lock "$T/qio3.out")"
