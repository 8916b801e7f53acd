#!/usr/bin/env bash
# .colo/metrics and metrics_file, read by a real OpenMetrics parser
# (python3-prometheus-client), with values checked against .colo/status
# after known I/O; the file is replaced atomically (no temp file left,
# never a partial one) and written again at shutdown.
. "$(dirname "$0")/lib.sh"

"$PY3" -c 'import prometheus_client.openmetrics.parser' 2>/dev/null ||
	skip "python3-prometheus-client is not installed (make deps)"

make_image "$T/vda.img" 8M
EXTRA_CONFIG="metrics_file = $T/prom/colofs.prom" write_config
mkdir -p "$T/prom"
start_colofs
wait_for 10 test -s "$T/prom/colofs.prom" || fail "metrics_file not written"

# check_metrics FILE: parses FILE and compares it with .colo/status.
check_metrics() {
	cp "$MNT/.colo/status" "$T/status.txt"
	"$PY3" - "$1" "$T/status.txt" <<'EOPY'
import sys
from prometheus_client.openmetrics.parser import text_string_to_metric_families as om
from prometheus_client.parser import text_string_to_metric_families as classic
text = open(sys.argv[1]).read()
st = dict(l.split("=", 1) for l in open(sys.argv[2]).read().splitlines())
fams = {f.name: f for f in om(text)}     # raises on any syntax error
# node_exporter's textfile collector reads the classic format: it parses.
assert len(list(classic(text))) > 20

def val(name, **labels):
    got = [s.value for f in fams.values() for s in f.samples
           if s.name == name and all(s.labels.get(k) == v
                                     for k, v in labels.items())]
    assert len(got) == 1, (name, labels, got)
    return got[0]

def eq(name, key, **labels):
    assert val(name, **labels) == float(st[key]), (name, labels, val(name, **labels), st[key])

assert fams["colofs_checkpoints"].type == "counter"
assert fams["colofs_disk_written_bytes"].unit == "bytes"
assert fams["colofs_checkpoint_duration_seconds"].type == "histogram"
state = st["state"]
for s in fams["colofs_state"].samples:
    assert s.value == (1 if s.labels["state"] == state else 0), s
eq("colofs_checkpoints_total", "checkpoints")
eq("colofs_errors_total", "errors")
eq("colofs_buffered_bytes", "buffer_bytes")
eq("colofs_disks", "disks")
assert abs(val("colofs_last_checkpoint_duration_seconds") -
           int(st["last_checkpoint_us"]) / 1e6) < 1e-9
for b in ("hidden", "active"):
    eq("colofs_disk_buffered_bytes", f"vda.{b}_bytes", disk="vda", buffer=b)
    eq("colofs_disk_buffer_extents", f"vda.{b}_extents", disk="vda", buffer=b)
eq("colofs_disk_size_bytes", "vda.size", disk="vda")
eq("colofs_disk_written_bytes_total", "vda.primary_write_bytes", disk="vda", source="primary")
eq("colofs_disk_written_bytes_total", "vda.view_write_bytes", disk="vda", source="view")
eq("colofs_disk_view_read_bytes_total", "vda.view_read_bytes", disk="vda")
eq("colofs_disk_view_requests_total", "vda.view_reads", disk="vda", op="read")
eq("colofs_disk_view_requests_total", "vda.view_writes", disk="vda", op="write")
assert float(st["vda.view_writes"]) >= 3, "the view writes were counted"
eq("colofs_disk_commit_remaining_bytes", "vda.commit_remaining_bytes", disk="vda")
eq("colofs_nbd_connections_total", "nbd.connections_total")
eq("colofs_nbd_open_connections", "nbd.connections")
eq("colofs_nbd_refused_connections_total", "nbd.refused")
eq("colofs_nbd_requests_total", "nbd.requests")
eq("colofs_nbd_op_requests_total", "nbd.writes", op="write")
eq("colofs_nbd_written_bytes_total", "nbd.bytes_written")
eq("colofs_nbd_request_errors_total", "nbd.request_errors")
# The listener's bounds, its TLS counters and the stop rule.
eq("colofs_nbd_max_connections", "nbd.max_connections")
eq("colofs_nbd_memory_limit_bytes", "nbd.memory_limit")
eq("colofs_nbd_memory_used_bytes", "nbd.memory_used")
eq("colofs_nbd_memory_peak_bytes", "nbd.memory_peak")
eq("colofs_nbd_evicted_handshakes_total", "nbd.evicted")
eq("colofs_nbd_tls_sessions_total", "nbd.tls_sessions")
eq("colofs_nbd_refusals_total", "nbd.allow_refused", reason="allow")
eq("colofs_nbd_refusals_total", "nbd.tls_plaintext_refused", reason="tls_required")
eq("colofs_nbd_tls_reloads_total", "nbd.tls_reloads", result="ok")
eq("colofs_disk_files_open", "disk_files_open")
eq("colofs_stop_pending", "stop_pending")
assert float(st["nbd.memory_peak"]) > 0, "the NBD writes used the budget"
# The histogram counts every checkpoint.
assert val("colofs_checkpoint_duration_seconds_count") == float(st["checkpoints"])
assert val("colofs_checkpoint_duration_seconds_bucket", le="+Inf") == float(st["checkpoints"])
bi = fams["colofs_build_info"].samples
assert len(bi) == 1 and bi[0].value == 1 and bi[0].labels["version"], bi
print(sys.argv[1], "matches the status:", len(fams), "families")
EOPY
}

ctl start
view_write 0 12288 01
view_write 65536 4096 02
nbd_write 1048576 8192 03
nbd_write 2097152 512 04
ctl checkpoint
ctl checkpoint
view_write 0 4096 05
ctl_try "bogus" >/dev/null
expect_status checkpoints 2
expect_status vda.view_write_bytes 20480
expect_status vda.primary_write_bytes 8704
check_metrics "$MNT/.colo/metrics" || fail ".colo/metrics"
cp "$MNT/.colo/metrics" "$T/m.txt"
grep -qx 'colofs_checkpoints_total 2' "$T/m.txt" || fail "checkpoints_total"
grep -qx 'colofs_errors_total 1' "$T/m.txt" || fail "errors_total"
grep -qx 'colofs_disk_written_bytes_total{disk="vda",source="view"} 20480' "$T/m.txt" ||
	fail "view bytes"
grep -qx 'colofs_build_info{version="[0-9.]*"} 1' "$T/m.txt" || fail "build_info"
tail -n 1 "$T/m.txt" | grep -qx '# EOF' || fail "no # EOF"
ok ".colo/metrics: parsed, every value as in the status"

# metrics_file catches up within its period (5 s) and holds the same.
wait_for 15 grep -qx 'colofs_checkpoints_total 2' "$T/prom/colofs.prom" ||
	fail "metrics_file did not catch up: $(grep checkpoints_total "$T/prom/colofs.prom")"
check_metrics "$T/prom/colofs.prom" || fail "metrics_file"
ls "$T/prom" | grep -v '^colofs.prom$' && fail "a temp file is left in $T/prom"
ok "metrics_file: rewritten, parsed, no temp file left"

# At shutdown the last counters are written.
ctl checkpoint
stop_colofs
grep -qx 'colofs_checkpoints_total 3' "$T/prom/colofs.prom" ||
	fail "metrics_file not written at shutdown"
ok "metrics_file written at shutdown"
