#!/usr/bin/env bash
# Issue 17: a local user (uid 65534) who can write a sticky, world-writable
# state_dir, buffer_dir or metrics directory plants symlinks at the names
# root's colofs writes (the metrics file's and the bitmap's temporary
# files, the qcow2 overlay's log and map) and a forged state file saying
# done.  Nothing outside may change, and the forged state must not be
# obeyed: colofs refuses such a directory at start and in --check-config,
# naming the fix.  (The failover journal's NAME.journal.tmp is left to the
# journal's own tests: core/journal.c is being rewritten onto core/fdio.h.)
. "$(dirname "$0")/lib.sh"
command -v setpriv >/dev/null || skip "setpriv (util-linux) is needed"
[ "$(id -u)" = 0 ] || skip "needs root: the attack is on root's colofs"

chmod 755 "$T"			# the attacker must reach $T/pub
PUB=$T/pub
mkdir -m 1777 "$PUB"
as_nobody() { setpriv --reuid=65534 --regid=65534 --clear-groups "$@"; }
as_nobody true || skip "cannot run as uid 65534"

printf 'precious\n' >"$T/victim"
victim_intact() {
	[ "$(cat "$T/victim")" = precious ] ||
		fail "$1: the victim was written through a planted link"
}
plant() { as_nobody ln -s "$T/victim" "$PUB/$1" || fail "plant $1"; }

# try_start CONFIG: runs colofs -f on CONFIG; STARTED=1 if it mounted
# (then it is stopped after WAIT_FOR), 0 if it exited.  Its log: $T/try.log.
try_start() {
	local cfg=$1 mnt pid i
	mnt=$(sed -n 's/^mountpoint = //p' "$cfg")
	: >"$T/try.log"
	env "$COLOFS_BIN" -c "$cfg" -f 2>>"$T/try.log" &
	pid=$!
	at_exit "kill -9 $pid"
	STARTED=0
	for ((i = 0; i < 300; i++)); do
		if mountpoint -q "$mnt"; then STARTED=1; break; fi
		alive "$pid" || break
		sleep 0.1
	done
	TRY_PID=$pid TRY_MNT=$mnt
}
stop_try() {
	[ "$STARTED" = 1 ] || return 0
	fusermount3 -u "$TRY_MNT"
	wait_exit "$TRY_PID"
}
refused() {
	[ "$STARTED" = 0 ] || fail "$1: colofs started"
	grep -q "chmod 700 $PUB" "$T/try.log" ||
		{ cat "$T/try.log"; fail "$1: the refusal does not name the fix"; }
	"$COLOFS_BIN" -c "$2" --check-config >"$T/check.log" 2>&1 &&
		fail "$1: --check-config accepts it"
	grep -q "chmod 700 $PUB" "$T/check.log" ||
		fail "$1: --check-config does not name the fix"
}

make_image "$T/vda.img" 4M

# 1. metrics_file in the public directory, its old temporary name planted.
plant colofs.prom.tmp
EXTRA_CONFIG="metrics_file = $PUB/colofs.prom" write_config
try_start "$T/colofs.ini"
# The daemon writes the file at start and every 5 s: wait for the write.
[ "$STARTED" = 1 ] && wait_for 15 sh -c \
	"test -e $PUB/colofs.prom || ! grep -q precious $T/victim"
stop_try
victim_intact "metrics_file"
refused "metrics_file" "$T/colofs.ini"
ok "a link at the metrics file's temporary name is not followed"

# 2. A forged state file saying done in a public state_dir.  Its name comes
#    from a run on a safe state_dir.
write_config
start_colofs
stop_colofs
name=$(basename "$(ls "$T"/state/*.state)")
as_nobody sh -c 'printf "colofs-state 1\nstate=done\ngeneration=%s\njournaled=0\n" \
	0123456789abcdef0123456789abcdef >"$1"' sh "$PUB/$name" ||
	fail "cannot forge $PUB/$name"
sed -i "s|^state_dir = .*|state_dir = $PUB|" "$T/colofs.ini"
try_start "$T/colofs.ini"
if [ "$STARTED" = 1 ]; then
	st=$(status_get state)
	stop_try
	[ "$st" != done ] || fail "the forged state file was obeyed (state done)"
fi
refused "forged state file" "$T/colofs.ini"
ok "a forged state file in a public state_dir is not obeyed"

# 3. A primary's dirty bitmap in a public state_dir.
rm -f "$PUB"/*
plant vda.dirty.tmp
PMNT=$T/pmnt
mkdir -p "$PMNT"
cat >"$T/p.ini" <<EOC
[colofs]
mountpoint = $PMNT
mode = primary
state_dir = $PUB

[disk "vda"]
image = $T/vda.img
secondary = nbd+unix:///vda?socket=$T/none.sock
EOC
try_start "$T/p.ini"
stop_try
victim_intact "dirty bitmap"
refused "dirty bitmap" "$T/p.ini"
ok "a link at the bitmap's temporary name is not followed"

# 4. A qcow2 overlay in a public buffer_dir: its log and map planted.
command -v qemu-img >/dev/null || skip "qemu-img is needed for the rest"
rm -f "$PUB"/*
plant vda.overlay.log
plant vda.overlay.map.tmp
qemu-img create -q -f qcow2 "$T/vda.qcow2" 4M
cat >"$T/q.ini" <<EOC
[colofs]
mountpoint = $MNT
listen = unix:$T/nbd.sock
buffer = file
buffer_dir = $PUB
state_dir = $T/state

[disk "vda"]
image = $T/vda.qcow2
format = qcow2
EOC
try_start "$T/q.ini"
if [ "$STARTED" = 1 ]; then
	dd if=/dev/urandom of="$MNT/vda" bs=64K count=4 conv=notrunc,fsync \
		status=none || true
	stop_try
fi
victim_intact "qcow2 overlay"
refused "qcow2 overlay" "$T/q.ini"
ok "links at the overlay's log and map names are not followed"
