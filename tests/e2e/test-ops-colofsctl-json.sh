#!/usr/bin/env bash
# Issue 17: colofsctl status --json is strict RFC 8259 whatever the status
# holds.  colofsctl reads only MOUNT/.colo/status, so a directory with a
# crafted one stands in for the mount: bytes that are not UTF-8 (in a value,
# a key and the mount path), 1e999, NaN, -Infinity, 2^64, and a status of
# 100000 keys (past colofsctl's bounds).  Python's json module, with
# non-finite constants refused and the bytes decoded as strict UTF-8,
# parses every output; nothing is lost without "truncated": true.
. "$(dirname "$0")/lib.sh"
CTL=${COLOFS_BUILD:-$(dirname "$COLOFS_BIN")}/colofsctl
[ -x "$CTL" ] || skip "colofsctl not built"

FAKE=$T/fake$'\xff'mnt
mkdir -p "$FAKE/.colo"
printf '%s\n' "state=running" "disks=1" "vda.size=4096" \
	"vda.note=caf"$'\xc3\xa9'" ok" "vda.bad=x"$'\xff\xfe'"y" \
	"overlong="$'\xc0\xaf' "surrogate="$'\xed\xa0\x80' \
	"big=1e999" "nan=NaN" "ninf=-Infinity" "two64=18446744073709551616" \
	"max=9223372036854775807" "neg=-5" "half=0.5" "exp=1.5e3" \
	"k"$'\xff'"ey=1" "nbd.listen=unix:/x" "nbd.refused=3" \
	>"$FAKE/.colo/status"

# strict FILE: parses FILE as strict JSON (UTF-8, finite numbers only) and
# prints it back (Python's repr) for the checks below.
strict() {
	"$PY3" - "$1" <<'EOPY'
import json, sys
raw = open(sys.argv[1], "rb").read()
text = raw.decode("utf-8")              # strict: raises on invalid UTF-8
def bad(c):
    raise ValueError("non-finite constant " + c)
j = json.loads(text, parse_constant=bad)
def walk(v):
    if isinstance(v, float):
        assert v == v and abs(v) != float("inf"), v
    elif isinstance(v, dict):
        for k, x in v.items():
            walk(x)
    elif isinstance(v, list):
        for x in v:
            walk(x)
walk(j)
json.dump(j, sys.stdout)
EOPY
}

"$CTL" -m "$FAKE" status --json >"$T/out.json" || fail "status --json"
strict "$T/out.json" >"$T/parsed" || { cat -v "$T/out.json"; fail "not strict JSON"; }
"$PY3" - "$T/parsed" <<'EOPY' || fail "values"
import json, sys
j = json.load(open(sys.argv[1]))
R = "\ufffd"
assert j["mount"].endswith("fake" + R + "mnt"), j["mount"]
d = j["disks"][0]
assert d["name"] == "vda" and d["size"] == 4096, d
assert d["note"] == "caf\u00e9 ok", d["note"]
assert d["bad"] == "x" + R + R + "y", d["bad"]
assert j["overlong"] == R + R and j["surrogate"] == R * 3, j
for k in ("big", "nan", "ninf", "two64"):
    assert isinstance(j[k], str), (k, j[k])
assert j["max"] == 9223372036854775807 and j["neg"] == -5
assert j["half"] == 0.5 and j["exp"] == 1500.0
assert j["k" + R + "ey"] == 1
assert j["nbd"] == {"listen": "unix:/x", "refused": 3}, j["nbd"]
assert "_encoding" in j and "truncated" not in j
EOPY
ok "non-UTF-8, 1e999, NaN, -Infinity and 2^64: strict JSON, marked"

# 100000 keys: past STATUS_MAX (1 MiB) and JSON_MAX_KEYS (65536).
"$PY3" -c '
import sys
with open(sys.argv[1], "w") as f:
    f.write("state=none\n")
    for i in range(100000):
        f.write("key%06d=%d\n" % (i, i))
' "$FAKE/.colo/status"
"$CTL" -m "$FAKE" status --json >"$T/big.json" || fail "status --json (big)"
strict "$T/big.json" >"$T/parsed" || fail "big: not strict JSON"
"$PY3" - "$T/parsed" <<'EOPY' || fail "big status"
import json, sys
j = json.load(open(sys.argv[1]))
keys = [k for k in j if k.startswith("key")]
assert j.get("truncated") is True, "keys dropped without truncated: true"
assert 0 < len(keys) < 100000, len(keys)
for k in keys:
    assert j[k] == int(k[3:]), (k, j[k])   # no cut value
print(len(keys), "of 100000 keys, truncated: true")
EOPY
# A status under the bounds is whole and says nothing of truncation.
head -n 2000 "$FAKE/.colo/status" >"$T/s" && mv "$T/s" "$FAKE/.colo/status"
"$CTL" -m "$FAKE" status --json >"$T/small.json" || fail "status --json (small)"
strict "$T/small.json" >"$T/parsed" || fail "small: not strict JSON"
"$PY3" -c '
import json, sys
j = json.load(open(sys.argv[1]))
assert "truncated" not in j and len([k for k in j if k.startswith("key")]) == 1999
' "$T/parsed" || fail "small status"
ok "a status past the bounds says truncated: true; one under them is whole"
