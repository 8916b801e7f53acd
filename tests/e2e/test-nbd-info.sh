#!/usr/bin/env bash
# nbdinfo and nbdinfo --list: export name, size, description, flags and
# block sizes as the listener advertises them.
. "$(dirname "$0")/lib.sh"
command -v nbdinfo >/dev/null || skip "nbdinfo not installed (libnbd-bin)"

make_image "$T/vda.img" 8M
write_config
start_colofs
at_exit stop_colofs

U=$(nbd_uri)
out=$(nbdinfo "$U") || fail "nbdinfo failed"
echo "$out"
want() { grep -qx "[[:space:]]*$1" <<<"$out" || fail "nbdinfo lacks '$1'"; }
want 'export="vda":'
want 'export-size: 8388608 (8M)'
# The description carries the secondary's generations and its
# incarnation: its state and epoch, the state file's generation (core/gi.h).
want "description: colofs secondary disk vda colofs-gi v1 cur=$(status_get gi_current) since=[0-9]* hist=[0-9a-f,]* colofs-run v1 state=none epoch=$(status_get generation)"
want 'can_flush: true'
want 'can_fua: true'
want 'can_trim: true'
want 'can_zero: true'
want 'can_multi_conn: true'
want 'is_read_only: false'
want 'block_size_minimum: 1'
want 'block_size_preferred: 4096'
want 'block_size_maximum: 33554432'
grep -q 'newstyle-fixed' <<<"$out" || fail "not fixed newstyle"

list=$(nbdinfo --list "nbd+unix://?socket=$T/nbd.sock") || fail "nbdinfo --list failed"
echo "$list"
grep -qx 'export="vda":' <<<"$list" || fail "--list lacks vda"

for c in flush fua trim zero multi-conn; do
	nbdinfo --can "$c" "$U" || fail "nbdinfo --can $c: $?"
done
nbdinfo --size "$U" | grep -qx 8388608 || fail "size"

# An unknown export is an error, and the listener keeps serving.
if nbdinfo "nbd+unix:///nosuch?socket=$T/nbd.sock" 2>/dev/null; then
	fail "nbdinfo of an unknown export succeeded"
fi
nbdinfo --size "$U" >/dev/null || fail "listener dead after an unknown export"
ok "nbdinfo"
