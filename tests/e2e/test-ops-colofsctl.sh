#!/usr/bin/env bash
# colofsctl against a real mount: status --json carries every documented
# key with the value .colo/status has; the ctl words and their exit codes;
# failover --wait reaches done; watch refreshes; -c finds the mount; a
# status read that meets ESTALE is read again.
. "$(dirname "$0")/lib.sh"

CTL=${COLOFSCTL_BIN:-$(dirname "$COLOFS_BIN")/colofsctl}
DOC=$(cd "$(dirname "$0")/../.." && pwd)/doc/colofsctl.8.md
[ -x "$CTL" ] || fail "no colofsctl at $CTL"

make_image "$T/vda.img" 64M
make_image "$T/vdb.img" 2M
write_config
export COLOFS_TEST_ESTALE_ONCE=$T/estale
cat >>"$T/colofs.ini" <<EOC

[disk "vdb"]
image = $T/vdb.img
EOC
start_colofs

# expect_rc RC COMMAND...: runs it, its stderr in $T/err.
expect_rc() {
	local want=$1 rc=0
	shift
	"$@" >"$T/out" 2>"$T/err" || rc=$?
	[ "$rc" = "$want" ] || {
		cat "$T/err" >&2
		fail "$* exited $rc, want $want"
	}
}

# Exit codes and refusals.
expect_rc 2 "$CTL" status
grep -q "give -m MOUNT or -c CONFIG" "$T/err" || fail "no mount: $(cat "$T/err")"
expect_rc 2 "$CTL" -m "$MNT" frobnicate
expect_rc 2 "$CTL" -m "$MNT" status --bogus
expect_rc 3 "$CTL" -m "$T" status
grep -q "colofs mount" "$T/err" || fail "not a mount: $(cat "$T/err")"
expect_rc 1 "$CTL" -m "$MNT" checkpoint
grep -q "checkpoint refused: .*not running.*(Invalid argument)" "$T/err" ||
	fail "refusal message: $(cat "$T/err")"
expect_status state none
expect_rc 0 "$CTL" -c "$T/colofs.ini" start
expect_status state running
expect_rc 1 "$CTL" -m "$MNT" start
grep -q "(Device or resource busy)" "$T/err" || fail "EBUSY: $(cat "$T/err")"
expect_rc 0 "$CTL" -m "$MNT" checkpoint
expect_status checkpoints 1
ok "exit codes: usage 2, not a mount 3, refused 1 with the reason, done 0"

# Known I/O, then the JSON against the status, key by key.
view_write 0 12288 01
nbd_write 1048576 8192 02
nbd_write 0 512 03 vdb
"$CTL" -m "$MNT" status --json >"$T/status.json" || fail "status --json"
cp "$MNT/.colo/status" "$T/status.txt"
"$PY3" - "$T/status.json" "$T/status.txt" "$DOC" "$MNT" <<'EOPY' || fail "status --json"
import json, re, sys
j = json.load(open(sys.argv[1]))
st = dict(l.split("=", 1) for l in open(sys.argv[2]).read().splitlines())
doc = open(sys.argv[3]).read()

# The stable keys are the ones the man page lists.
sect = doc[doc.index("These keys are stable"):doc.index("Example:")]
groups = re.findall(r"^- ([^:]+): (.*?)(?=^- |\Z)", sect, re.S | re.M)
keys = {g.split()[0].strip("`"): re.findall(r"`([a-z_]+)`", body)
        for g, body in groups}
assert set(keys) == {"top", "each", "nbd"}, keys
assert len(keys["top"]) >= 12 and len(keys["each"]) >= 11 and \
    len(keys["nbd"]) >= 15, keys

def same(jv, sv, what):
    if isinstance(jv, str):
        assert jv == sv, f"{what}: json {jv!r}, status {sv!r}"
    else:
        assert isinstance(jv, int) and not isinstance(jv, bool), what
        assert jv == int(sv), f"{what}: json {jv}, status {sv}"

for k in keys["top"]:
    assert k in j, f"top-level {k} missing"
    if k == "mount":
        assert j[k] == sys.argv[4]
    elif k == "disks":
        assert isinstance(j[k], list) and len(j[k]) == int(st["disks"])
    else:
        same(j[k], st[k], k)
assert [d["name"] for d in j["disks"]] == ["vda", "vdb"], j["disks"]
for d in j["disks"]:
    for k in keys["each"]:
        if k == "name":
            continue
        same(d[k], st[f"{d['name']}.{k}"], f"{d['name']}.{k}")
for k in keys["nbd"]:
    same(j["nbd"][k], st[f"nbd.{k}"], f"nbd.{k}")
# Numbers are numbers, strings strings.
assert j["disks"][0]["view_write_bytes"] == 12288
assert j["disks"][0]["primary_write_bytes"] == 8192
assert j["disks"][1]["primary_write_bytes"] == 512
assert j["state"] == "running" and j["checkpoints"] == 1
assert isinstance(j["error"], str) and isinstance(j["nbd"]["listen"], str)
# Nothing lost: every status line is somewhere in the JSON.
# mount and nbd are extra, the disks array stands for disks=N.
n = len(j) - 2 + sum(len(d) - 1 for d in j["disks"]) + len(j["nbd"])
assert n == len(st), (n, len(st))
print("json ok:", len(st), "status lines")
EOPY
"$CTL" -m "$MNT" status >"$T/human" || fail "status"
grep -q "state running" "$T/human" || fail "human status: $(cat "$T/human")"
grep -q "^vdb " "$T/human" || fail "human status lacks vdb"
ok "status --json: every documented key, as .colo/status has it"

# A status read that meets ESTALE (a live restart between the open and a
# read: the text died with the old process) is read again from a new open.
: >"$T/estale"
"$CTL" -m "$MNT" status >"$T/human" || fail "status after an ESTALE read"
[ ! -e "$T/estale" ] || fail "the ESTALE hook was not reached"
grep -q "state running" "$T/human" || fail "status after ESTALE: $(cat "$T/human")"
ok "status: a read that meets ESTALE is read again from a new open"

# watch: a few refreshes, then SIGTERM from timeout.
rc=0
timeout 2 "$CTL" -m "$MNT" watch -n 0.2 >"$T/watch" 2>&1 || rc=$?
[ "$rc" = 124 ] || fail "watch ended with $rc before timeout: $(cat "$T/watch")"
n=$(grep -c '^Every 0.2s' "$T/watch")
[ "$n" -ge 3 ] || fail "watch refreshed $n times in 2 s"
ok "watch: $n refreshes in 2 s"
# On a terminal (script(1) gives it one) watch redraws the screen.
if command -v script >/dev/null; then
	script -qec "timeout 1 $CTL -m $MNT watch -n 0.2" /dev/null >"$T/tty" 2>&1 || true
	[ "$(grep -c $'\033\\[H\033\\[2J' "$T/tty")" -ge 2 ] ||
		fail "watch on a terminal does not redraw: $(od -c "$T/tty" | head -5)"
	ok "watch redraws on a terminal"
fi

# failover --wait: 40 MiB of view writes to commit.
dd if=/dev/urandom of="$MNT/vda" bs=1M count=40 conv=notrunc status=none
head -c 40M "$MNT/vda" >"$T/view.bin"
expect_rc 0 "$CTL" -m "$MNT" failover --wait
grep -q "^failover: done in .* (40.0 MiB were buffered)" "$T/out" ||
	fail "no done line: $(cat "$T/out")"
! grep -q $'\033' "$T/out" || fail "terminal escapes in non-terminal output"
done_line=$(tail -n 1 "$T/out")
expect_status state done
cmp <(head -c 40M "$T/vda.img") "$T/view.bin" || fail "S is not the view"
# A second failover --wait in done: done at once, exit 0 (colofs itself
# refuses a second failover word with EBUSY; --wait only wants done).
expect_rc 0 "$CTL" -m "$MNT" failover --wait
ok "failover --wait: $done_line"

# failover --wait when the commit fails: the image is a sparse file on a
# 2 MiB tmpfs, so committing 8 MiB meets ENOSPC: exit 4 and the reason.
stop_colofs
mkdir "$T/small"
mount -t tmpfs -o size=2M tmpfs "$T/small" || skip "cannot mount a tmpfs"
at_exit "umount -l $T/small"
truncate -s 64M "$T/small/vda.img"
rm -rf "$T/state"	# a new image, a new deployment: forget the done above
cat >"$T/colofs.ini" <<EOC
[colofs]
mountpoint = $MNT
state_dir = $T/state
[disk "vda"]
image = $T/small/vda.img
EOC
start_colofs
expect_rc 0 "$CTL" -m "$MNT" start
dd if=/dev/urandom of="$MNT/vda" bs=1M count=8 conv=notrunc status=none
expect_rc 4 "$CTL" -m "$MNT" failover --wait
grep -q "failover ended in state failover_failed: .*No space left on device" "$T/err" ||
	fail "failover_failed message: $(cat "$T/err")"
expect_status state failover_failed
ok "failover --wait: exit 4 at failover_failed, with the reason"
