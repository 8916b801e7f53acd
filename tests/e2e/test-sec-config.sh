#!/usr/bin/env bash
# Issue 17: --check-config and start refuse a state_dir, buffer_dir or
# metrics directory another user could write into (a symlink, group- or
# world-writable, owned by another user, or under an ancestor others can
# swap), a state file, bitmap or buffer there that is not colofs's own, a metrics_file that is a directory or a FIFO, and any two settings
# naming the same file (metrics_file = the image replaced the disk with
# metrics text).  Each refusal names the setting(s) and the path.
. "$(dirname "$0")/lib.sh"
[ "$(id -u)" = 0 ] || skip "needs root (chown to another user)"

make_image "$T/vda.img" 4M 5a
make_image "$T/vdb.img" 4M
mkdir -m 700 "$T/state" "$T/buf" "$T/prom"

# conf [COLOFS-LINES] [DISK-LINES]: writes $T/c.ini; $STATE, $BUF, $LISTEN
# and $IMAGE replace the defaults.
conf() {
	cat >"$T/c.ini" <<EOC
[colofs]
mountpoint = $MNT
listen = unix:${LISTEN:-$T/nbd.sock}
buffer = file
buffer_dir = ${BUF:-$T/buf}
state_dir = ${STATE:-$T/state}
${1:-}

[disk "vda"]
image = ${IMAGE:-$T/vda.img}
${2:-}
EOC
}

# refuse WHAT PATTERN: --check-config fails and says PATTERN.
refuse() {
	local rc=0
	"$COLOFS_BIN" -c "$T/c.ini" --check-config >"$T/out" 2>&1 || rc=$?
	[ "$rc" != 0 ] || fail "$1: --check-config accepts it"
	[ "$rc" = 1 ] || { cat "$T/out"; fail "$1: --check-config exit $rc"; }
	grep -qF -- "$2" "$T/out" ||
		{ cat "$T/out"; fail "$1: the message does not say '$2'"; }
	ok "$1 is refused"
}

conf
"$COLOFS_BIN" -c "$T/c.ini" --check-config >"$T/out" 2>&1 ||
	{ cat "$T/out"; fail "the safe config is refused"; }

# Directories colofs writes into.
for key in state_dir buffer_dir; do
	dir=$T/$key.d
	mkdir -m 700 "$dir"
	var=STATE
	[ $key = buffer_dir ] && var=BUF
	eval "$var=\$dir" conf
	chmod 770 "$dir"
	refuse "group-writable $key" "chmod 700 $dir"
	chmod 1777 "$dir"
	refuse "sticky world-writable $key" "chmod 700 $dir"
	chmod 700 "$dir"
	chown 65534 "$dir"
	refuse "$key owned by another user" "chown root $dir"
	chown 0 "$dir"
	ln -s "$dir" "$T/$key.link"
	eval "$var=\$T/\$key.link" conf
	refuse "$key as a symlink" "$key $T/$key.link is a symbolic link"
done
mkdir -m 777 "$T/open"
STATE=$T/open/state conf
refuse "state_dir under a world-writable, non-sticky ancestor" \
	"its ancestor $T/open is writable by group or others"

# Files planted while a directory was open to others (it is root's again):
# --check-config names each one colofs would refuse when it reads it.
conf
ln -s "$T/vda.img" "$T/state/x.state"
refuse "a state file that is a link" "x.state is a symbolic link"
rm "$T/state/x.state"
printf 'x' >"$T/state/vda.dirty"
chown 65534 "$T/state/vda.dirty"
refuse "a bitmap owned by another user" "vda.dirty is owned by another user"
rm "$T/state/vda.dirty"
printf 'x' >"$T/buf/m.vda.hidden"
chmod 666 "$T/buf/m.vda.hidden"
refuse "a buffer file others can write" "m.vda.hidden is writable by group or others"
rm "$T/buf/m.vda.hidden"

# The metrics file: its directory, its kind, and the other settings.
chmod 1777 "$T/prom"
conf "metrics_file = $T/prom/colofs.prom"
refuse "a world-writable metrics directory" "chmod 700 $T/prom"
chmod 700 "$T/prom"
conf "metrics_file = $T/prom"
refuse "metrics_file naming a directory" "is a directory"
mkfifo "$T/prom/fifo"
conf "metrics_file = $T/prom/fifo"
refuse "metrics_file naming a FIFO" "a special file"

same="are the same file"
conf "metrics_file = $T/vda.img"
refuse "metrics_file = the image" "metrics_file $T/vda.img and disk vda image"
conf "metrics_file = $T/nbd.sock"
refuse "metrics_file = the listen socket (not made yet)" "$same"
conf "metrics_file = $T/buf/vda.overlay" "format = qcow2"
refuse "metrics_file = a qcow2 overlay" "disk vda's overlay file"
ln "$T/vda.img" "$T/vda-again.img"
conf "" "[disk \"vdb\"]
image = $T/vda-again.img"
refuse "two disks on one image (by a hard link)" "disk vda image $T/vda.img and disk vdb image"
STATE=$T/buf conf
refuse "state_dir = buffer_dir" "state_dir $T/buf and buffer_dir $T/buf"
LISTEN=$T/vdb.img IMAGE=$T/vdb.img conf
refuse "the listen socket = the image" "listen $T/vdb.img and disk vda image"

# start refuses too, and the image is not replaced by metrics text.
conf "metrics_file = $T/vda.img"
sum=$(md5sum <"$T/vda.img")
"$COLOFS_BIN" -c "$T/c.ini" >"$T/out" 2>&1 && {
	fusermount3 -u "$MNT"
	fail "colofs started with metrics_file = the image"
}
[ "$(md5sum <"$T/vda.img")" = "$sum" ] || fail "the image was replaced"
grep -qF "$same" "$T/out" || { cat "$T/out"; fail "start: no reason given"; }
ok "start refuses metrics_file = the image; the image is intact"
