#!/usr/bin/env bash
# The whole cycle, in place (issue 20): host X primary -> failover to Y ->
# Y protects with X as secondary ("protect URI" on Y's running mount, no
# unmount) -> failover back to X -> X protects with Y.  Data is written at
# every step, each protect copies only the granules written since its
# failover (read from the status), a file held open across the switch keeps
# working, a restart of a protected side comes back as a primary, and at the
# end the two images are equal byte for byte (cmp).
. "$(dirname "$0")/lib.sh"

SIZE=32M
GRAN=64K
GRANB=65536
XMNT=$T/xmnt
YMNT=$T/ymnt
mkdir -p "$XMNT" "$YMNT" "$T/xstate" "$T/ystate"
XURI="nbd+unix:///vda?socket=$T/x.sock"
YURI="nbd+unix:///vda?socket=$T/y.sock"
at_exit "fusermount3 -u $XMNT || umount -l $XMNT"
at_exit "fusermount3 -u $YMNT || umount -l $YMNT"

# config HOST MODE: $T/HOST-MODE.ini (host x or y; mode primary or
# secondary).  The state_dir is the host's, whatever the mode.
config() {
	local h=$1 mode=$2 peer mnt
	mnt=$T/${h}mnt
	if [ "$h" = x ]; then peer=$YURI; else peer=$XURI; fi
	{
		echo "[colofs]"
		echo "mountpoint = $mnt"
		echo "state_dir = $T/${h}state"
		echo "dirty_granularity = $GRAN"
		echo "secondary_timeout = 5s"
		if [ "$mode" = primary ]; then
			echo "mode = primary"
		else
			echo "listen = unix:$T/$h.sock"
		fi
		echo
		echo '[disk "vda"]'
		echo "image = $T/$h.img"
		[ "$mode" = primary ] && echo "secondary = $peer"
		true
	} >"$T/$h-$mode.ini"
}

# run HOST MODE [ARGS]: colofs -f for that config; its pid in PID_x/PID_y.
run() {
	local h=$1 mode=$2
	shift 2
	config "$h" "$mode"
	env --default-signal=INT,QUIT "$COLOFS_BIN" -c "$T/$h-$mode.ini" -f \
		"$@" 2>>"$T/$h.log" &
	eval "PID_$h=$!"
	at_exit "kill -9 $!"
	wait_for 10 mountpoint -q "$T/${h}mnt" || {
		cat "$T/$h.log" >&2
		fail "$h ($mode) did not mount"
	}
}

# stop HOST: a clean stop (unmount), exit status 0.
stop() {
	local pid
	eval "pid=\$PID_$1"
	fusermount3 -u "$T/$1mnt"
	wait_exit "$pid"
	[ "$EXIT_STATUS" = 0 ] || { cat "$T/$1.log" >&2; fail "$1 exited $EXIT_STATUS"; }
}

hctl() { echo "$2" >"$T/$1mnt/.colo/ctl" || fail "$1: ctl '$2': $(cat "$T/$1mnt/.colo/error")"; }
hget() { sed -n "s/^$2=//p" "$T/$1mnt/.colo/status"; }
wait_hstate() {
	wait_for 60 sh -c "grep -qx 'state=$2' '$T/$1mnt/.colo/status'" || {
		cat "$T/$1mnt/.colo/status" "$T/$1.log" >&2
		fail "$1 did not reach $2"
	}
}
sum() { dd if="$1" bs=1M status=none | sha256sum | cut -d' ' -f1; }
same_views() {
	[ "$(sum "$XMNT/vda")" = "$(sum "$YMNT/vda")" ] ||
		fail "$1: X's and Y's views differ"
	ok "$1: X's and Y's views are equal"
}
# wr HOST GRANULE COUNT: COUNT granules of fresh random data at GRANULE.
wr() {
	dd if=/dev/urandom of="$T/$1mnt/vda" bs=$GRANB seek="$2" count="$3" \
		conv=notrunc,fsync status=none || fail "$1: write at granule $2"
}

head -c "$SIZE" /dev/urandom >"$T/x.img"
truncate -s "$SIZE" "$T/y.img"

# 1. X primary, Y secondary: the first (full) sync, then writes.
run y secondary
run x primary
hctl x start
wait_hstate x replicating
hctl y start
# Protect is for done: a running secondary refuses it and stays one.
echo "protect $XURI" >"$YMNT/.colo/ctl" 2>/dev/null &&
	fail "protect succeeded on a running secondary"
grep -q "protect is for done" "$YMNT/.colo/error" ||
	fail "protect refused without saying why: $(cat "$YMNT/.colo/error")"
[ "$(hget y state)" = running ] || fail "a refused protect changed Y's state"
wr x 3 5
hctl x checkpoint
hctl y checkpoint
same_views "X primary"

# Since that checkpoint: Y's VM writes granule 50 (its active buffer) and
# X writes granule 60 (Y's hidden buffer keeps the old data).  The
# failover commits both into Y's S: both differ from X now, both count.
wr y 50 1
wr x 60 1

# 2. X goes away cleanly; failover to Y; Y's VM writes 3 granules, one of
# them twice.
stop x
hctl y failover
wait_hstate y done
wr y 100 2
wr y 100 1

# 3. X comes back as a secondary; Y protects in place.  A file opened
# before (fd 7; after X started, which must not inherit it) stays open
# across the protect and writes before and after it.
run x secondary
exec 7<>"$YMNT/vda"
dd if=/dev/urandom bs=$GRANB count=1 status=none | dd of=/dev/fd/7 bs=$GRANB \
	seek=200 conv=notrunc,fsync status=none || fail "the fd's write in done"
hctl y "protect $XURI"
[ "$(hget y mode)" = primary ] || fail "Y's status does not say mode=primary"
wait_hstate y replicating
[ "$(hget y sync_total_bytes)" = $((5 * GRANB)) ] ||
	fail "Y's protect copied $(hget y sync_total_bytes) bytes, want $((5 * GRANB)) (the granules written since the failover)"
[ "$(hget x vda.primary_write_bytes)" = $((5 * GRANB)) ] ||
	fail "X received $(hget x vda.primary_write_bytes) bytes, want $((5 * GRANB))"
ok "Y's protect copied only the 5 dirty granules (2 by the failover commit)"
hctl x start
# The fd opened in done writes through the primary now.
dd if=/dev/urandom bs=$GRANB count=1 status=none | dd of=/dev/fd/7 bs=$GRANB \
	seek=300 conv=notrunc,fsync status=none || fail "the old fd's write"
exec 7>&-
wr y 400 4
hctl y checkpoint
hctl x checkpoint
same_views "Y protected by X"

# A restart of the protected side comes back as a primary (no --demote).
stop y
run y secondary
[ "$(hget y mode)" = primary ] || fail "Y did not restart as a primary"
hctl y start
wait_hstate y replicating
[ "$(hget y sync_total_bytes)" = 0 ] ||
	fail "Y's restart resynced $(hget y sync_total_bytes) bytes, want 0"
wr y 450 1
hctl y checkpoint
hctl x checkpoint
same_views "Y restarted as a primary"

# 4. Failover back to X; X's VM writes 2 granules.
stop y
hctl x failover
wait_hstate x done
wr x 460 2

# 5. Y comes back as a secondary (its state file says primary: --demote);
# X protects in place.
run y secondary --demote
[ "$(hget y mode)" = secondary ] || fail "Y --demote is not a secondary"
# This one through colofsctl.
"$(dirname "$COLOFS_BIN")/colofsctl" -m "$XMNT" protect "$YURI" ||
	fail "colofsctl protect: $(cat "$XMNT/.colo/error")"
wait_hstate x replicating
[ "$(hget x sync_total_bytes)" = $((2 * GRANB)) ] ||
	fail "X's protect copied $(hget x sync_total_bytes) bytes, want $((2 * GRANB))"
ok "X's protect copied only the 2 dirty granules"
hctl y start
wr x 480 3
hctl x checkpoint
hctl y checkpoint
same_views "X protected by Y"

stop x
stop y
cmp "$T/x.img" "$T/y.img" || fail "the images differ at the end"
ok "after the whole cycle the images are equal (cmp)"
