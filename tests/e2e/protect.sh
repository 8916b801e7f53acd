# SPDX-License-Identifier: MIT
# Two hosts X and Y on one machine, for the protect-in-place tests.  Source
# it after lib.sh.  Each host has its image ($T/x.img, $T/y.img), its
# mount ($XMNT, $YMNT), its state_dir and, as a secondary, a unix socket
# ($XURI, $YURI); "run HOST MODE" starts it in either mode.

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

# pair_up: fresh images (X's random, Y's zero), Y a secondary, X its
# primary: the first (full) sync, then Y started.
pair_up() {
	head -c "$SIZE" /dev/urandom >"$T/x.img"
	truncate -s "$SIZE" "$T/y.img"
	run y secondary
	run x primary
	hctl x start
	wait_hstate x replicating
	hctl y start
}

# pair_written N: pair_up, then N granules written on X at granule 3 and
# a checkpoint on both.
pair_written() {
	pair_up
	wr x 3 "$1"
	hctl x checkpoint
	hctl y checkpoint
}

# crash HOST: kill -9 of HOST's colofs, its dead mount removed.
crash() {
	local pid
	eval "pid=\$PID_$1"
	kill -9 "$pid"
	wait "$pid" 2>/dev/null || true
	fusermount3 -u "$T/$1mnt" 2>/dev/null || umount -l "$T/$1mnt"
}

# end_equal: both hosts stopped cleanly, their images equal byte for byte.
end_equal() {
	stop x
	stop y
	cmp "$T/x.img" "$T/y.img" || fail "the images differ at the end"
	ok "the images are equal (cmp)"
}

# tracked HOST BYTES: HOST's protect handed on a bitmap that tracked
# exactly BYTES since the failover (its log says so), with its base
# generation (the pair the failover left).
tracked() {
	grep -q "vda: protect: incremental ($2 dirty bytes tracked, base" "$T/$1.log" || {
		grep "protect:" "$T/$1.log" >&2
		fail "$1's protect did not track exactly $2 bytes"
	}
}

# copied HOST BYTES: HOST's last sync copied exactly BYTES (its status).
copied() {
	[ "$(hget "$1" sync_total_bytes)" = "$2" ] || {
		grep -E "protect|generations|sync|returning|leftover" "$T/$1.log" >&2
		fail "$1's sync copied $(hget "$1" sync_total_bytes) bytes, want $2"
	}
}
