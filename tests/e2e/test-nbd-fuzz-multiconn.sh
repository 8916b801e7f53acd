#!/usr/bin/env bash
# A short sample of the listener's multi-connection fuzzer
# (tests/fuzz/nbd_multiconn.py; 120 s with 6 connections in check-long,
# long/test-nbd-fuzz-multiconn.sh): concurrent clients share a small byte
# budget; every probe is answered and the budget comes back.  Set
# NBD_FUZZ_SEED to replay a seed a failure printed.
. "$(dirname "$0")/lib.sh"
ROOT=$(cd "$(dirname "$0")/../.." && pwd)

make_image "$T/vda.img" 64M
EXTRA_CONFIG="nbd_memory_limit = 32M
nbd_conn_memory_limit = 32M
io_timeout = 5" write_config
start_colofs_fg
at_exit stop_colofs
timeout 600 "$PY3" "$ROOT/tests/fuzz/nbd_multiconn.py" "unix:$T/nbd.sock" vda \
	"$MNT/.colo/status" "${NBD_FUZZ_SECONDS:-8}" "${NBD_FUZZ_SEED:-}" \
	"${NBD_FUZZ_CONNS:-3}" || fail "the listener wedged or failed"
alive "$COLOFS_PID" || fail "colofs died"
! grep -q "ThreadSanitizer\|AddressSanitizer" "$T/colofs.log" ||
	fail "sanitizer report: $(grep -A20 Sanitizer "$T/colofs.log" | head -40)"
ok "multi-connection fuzz sample"
