#!/usr/bin/env bash
# A damaged failover journal or buffer file is never obeyed (issue 16).
#
# colofs dies right after a failover became durable (the crash point
# failover_acked), leaving the state file (failover), the journal and the
# two buffer files.  Each field of the journal and each buffer file is
# then damaged, one at a time, on a fresh copy; the restart must exit 1,
# name the file and what is wrong, and leave S as it was.  The undamaged
# copy then restarts, finishes the commit, and S is the VM's view.
. "$(dirname "$0")/lib.sh"

U=$((1 << 20))
SIZE=$((6 * U))
mkdir -p "$T/buf"
make_image "$T/vda.img" $SIZE 11
BUFFER=file EXTRA_CONFIG="buffer_dir = $T/buf" write_config
COLOFS_TEST_CRASH_AT=failover_acked start_colofs_fg
ctl start
nbdsh_c "$(nbd_uri)" "
for off in range(0, 3 * $U, $U):
    h.pwrite(b'\xaa' * $U, off)
h.flush()
h.shutdown()"
view_write $((2 * U)) $((3 * U)) bb
view_write $((5 * U)) 8192 bc
cp "$MNT/vda" "$T/expect"
ctl_try "failover
" >/dev/null 2>&1 || true
wait "$COLOFS_PID" 2>/dev/null || true
fusermount3 -u "$MNT" 2>/dev/null || true
grep -q "crash point failover_acked" "$T/colofs.log" ||
	fail "the crash point was not reached"
grep -qx "state=failover" "$T"/state/*.state || fail "state file: not failover"
J=$(basename "$(ls "$T"/state/*.journal)")
A=$(basename "$(ls "$T"/buf/*.active)")
H=$(basename "$(ls "$T"/buf/*.hidden)")
cp -a "$T/state" "$T/state.good"
cp -a "$T/buf" "$T/buf.good"
cp "$T/vda.img" "$T/s.before"

restore() {
	rm -rf "$T/state" "$T/buf"
	cp -a "$T/state.good" "$T/state"
	cp -a "$T/buf.good" "$T/buf"
}

# flip OFFSET: xor one byte of the journal with 0x01.
flip() {
	"$PY3" - "$T/state/$J" "$1" <<'EOPY'
import sys
path, off = sys.argv[1], int(sys.argv[2])
with open(path, "r+b") as f:
    f.seek(off)
    b = f.read(1)
    f.seek(off)
    f.write(bytes([b[0] ^ 1]))
EOPY
}

# expect_refused WHAT WANT: colofs must exit 1 with WANT in its log, S
# untouched.
expect_refused() {
	local what=$1 want=$2 rc=0
	: >"$T/colofs.log"
	timeout 60 "$COLOFS_BIN" -c "$T/colofs.ini" -f 2>>"$T/colofs.log" || rc=$?
	fusermount3 -u "$MNT" 2>/dev/null || true
	[ "$rc" = 1 ] || { cat "$T/colofs.log" >&2; fail "$what: exit $rc, want 1"; }
	grep -qF -- "$want" "$T/colofs.log" ||
		{ cat "$T/colofs.log" >&2; fail "$what: the log does not say '$want'"; }
	cmp -s "$T/vda.img" "$T/s.before" || fail "$what: S was written"
	echo "ok: $what: exit 1: $(grep -F -- "$want" "$T/colofs.log" | head -n 1 | sed 's/.*resume: //' )"
}

HDR=128 REC=40
n=$(( ($(stat -c %s "$T/state/$J") - HDR) / REC ))
[ "$n" -ge 2 ] || fail "journal holds $n records"
END=$((HDR + (n - 1) * REC))	# the end record is the last one

# Every header field.
for f in magic:0 version:8 header_length:12 size:16 generation:24 salt:32 \
	disk:40 disk_padding:100 header_checksum:120; do
	restore; flip "${f#*:}"
	expect_refused "journal ${f%:*}" "$J"
done
# Every field of the first snapshot record and of the end record.
for base in $HDR $END; do
	for f in op:0 padding:3 seq:8 off:16 len:24 checksum:32; do
		restore; flip $((base + ${f#*:}))
		expect_refused "record at $base: ${f%:*}" "$J"
	done
done
# Cut short: inside the header, inside a record, before the end record.
for cut in 10 40 $HDR $((HDR + 20)) $END; do
	restore; truncate -s "$cut" "$T/state/$J"
	expect_refused "journal cut to $cut bytes" "$J"
done
restore; rm "$T/state/$J"
expect_refused "journal missing" "$J"
restore; mv "$T/state/$J" "$T/state/elsewhere"; ln -s elsewhere "$T/state/$J"
expect_refused "journal a symlink" "$J"
restore; ln "$T/state/$J" "$T/state/hardlink"
expect_refused "journal with a second hard link" "has other hard links"
# Each buffer file: cut, grown, missing, a symlink, a directory.
for b in "$A" "$H"; do
	restore; truncate -s $U "$T/buf/$b"
	expect_refused "$b cut to 1 MiB" "$b: 1048576 bytes"
	restore; truncate -s $((SIZE + 8192)) "$T/buf/$b"
	expect_refused "$b grown" "$b: $((SIZE + 8192)) bytes"
	restore; "$PY3" -c "
import sys
with open(sys.argv[1], 'r+b') as f:
    f.seek(int(sys.argv[2])); b = f.read(1); f.seek(int(sys.argv[2]))
    f.write(bytes([b[0] ^ 1]))" "$T/buf/$b" $((SIZE + 20))
	expect_refused "$b: its stamp damaged" "$b: no valid buffer stamp"
	restore; rm "$T/buf/$b"
	expect_refused "$b missing" "$b"
	restore; mv "$T/buf/$b" "$T/buf/x"; ln -s x "$T/buf/$b"
	expect_refused "$b a symlink" "$b is a symbolic link"
	restore; chmod g+w "$T/buf/$b"
	expect_refused "$b writable by its group" "writable by group"
	restore; rm "$T/buf/$b"; mkdir "$T/buf/$b"
	expect_refused "$b a directory" "not a regular file"
done
# The two buffer files swapped: each stamp names its buffer.
restore; mv "$T/buf/$A" "$T/buf/x"; mv "$T/buf/$H" "$T/buf/$A"; mv "$T/buf/x" "$T/buf/$H"
expect_refused "hidden and active swapped" "the stamp says it is the"
ok "every damaged field and buffer file refused, S untouched"

# The journal as printed by colofsctl.
restore
"$COLOFS_BUILD/colofsctl" journal "$T/state/$J" >"$T/journal.txt" ||
	fail "colofsctl journal failed on a good journal"
grep -q "^end " "$T/journal.txt" || fail "colofsctl journal: no end record shown"
flip 16
rc=0; "$COLOFS_BUILD/colofsctl" journal "$T/state/$J" >/dev/null 2>"$T/err" || rc=$?
[ "$rc" = 1 ] && grep -q "checksum" "$T/err" ||
	fail "colofsctl journal on a damaged journal: exit $rc, $(cat "$T/err")"
ok "colofsctl journal prints a good journal, refuses a damaged one"

# The operator's way out when the buffers are lost for good.
restore; truncate -s $U "$T/buf/$A"
start_colofs_fg --discard-failover
wait_state done
grep -q "may mix" "$MNT/.colo/error" || fail "--discard-failover: .colo/error: $(cat "$MNT/.colo/error")"
[ -e "$T/state/$J.discarded" ] && [ -e "$T/buf/$A.discarded" ] ||
	fail "--discard-failover: the files were not kept aside"
expect_ctl start EBUSY	# done: start is refused, the fence stays
kill -TERM "$COLOFS_PID"
wait_exit "$COLOFS_PID"
start_colofs_fg
wait_state done
kill -TERM "$COLOFS_PID"
wait_exit "$COLOFS_PID"
ok "--discard-failover: fenced in done, files kept aside, says S may mix"

# And the undamaged copy finishes the commit.
restore
start_colofs_fg
wait_state done
cmp "$T/vda.img" "$T/expect" || fail "the undamaged journal: S is not V"
kill -TERM "$COLOFS_PID"
wait_exit "$COLOFS_PID"
ok "the undamaged journal finishes the commit: S = V"
