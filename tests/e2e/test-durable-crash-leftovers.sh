#!/usr/bin/env bash
# A failover killed before it was durable (the state file still says
# running) leaves no journal and no buffer files behind once colofs has
# restarted: each buffer file is as large as the disk, and a buffer_dir
# sized for one run's buffers (a tmpfs) would stay full of them until
# the next failover replaced them.
. "$(dirname "$0")/lib.sh"

U=$((1 << 20))
mkdir -p "$T/buf"
make_image "$T/vda.img" $((4 * U)) 7
BUFFER=file EXTRA_CONFIG="buffer_dir = $T/buf" write_config
COLOFS_TEST_CRASH_AT=failover_buffers_synced start_colofs_fg
ctl start
view_write 0 $U bb
failover_dies failover_buffers_synced
ls "$T"/buf/*.hidden "$T"/buf/*.active >/dev/null 2>&1 ||
	fail "no buffer files after the crash: the test proves nothing"
fusermount3 -u "$MNT" 2>/dev/null || true

start_colofs_fg
[ "$(status_get state)" = none ] || fail "restarted in $(status_get state)"
left=$(ls "$T"/state/*.journal* "$T"/buf/*.hidden "$T"/buf/*.active \
	2>/dev/null || true)
[ -z "$left" ] || fail "left after the restart: $left"
ok "a failover killed before it was durable leaves no files after a restart"
